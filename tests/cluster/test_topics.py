"""Topics in a cluster (issue 14): created, altered and deleted through the controller from
any node, their partitions' replicas spread round robin over the live brokers, with every
node giving clients the same metadata; data, consumer groups and idempotent
producers across the brokers; a dead broker's topics offline while the others go on; topics
still created after the controller dies. Real processes, real clients, bounded waits."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from fastlog import protocol
from fastlog.protocol import ErrorCode
from fastlog.records import Record, encode_batch
from tests.broker.wire import WireClient
from tests.cluster.helpers import Cluster, agreed, running_cluster, wait_for

TIMEOUT = 20
TOPICS = [f"orders-{i}" for i in range(4)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path) as started:
        yield started


def create(bootstrap: str, names: list[str], partitions: int = 3, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, partitions, 1, config=configs) for n in names], request_timeout=TIMEOUT).values():
        future.result(timeout=TIMEOUT)


def leaders(bootstrap: str) -> dict[str, list[int]]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {name: [p.leader for _, p in sorted(t.partitions.items())] for name, t in metadata.topics.items() if not name.startswith("__")}


def produce(bootstrap: str, values: dict[str, list[bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    failures: list = []
    for topic, items in values.items():
        for value in items:
            producer.produce(topic, value=value, on_delivery=lambda err, _: err and failures.append(err))
    assert producer.flush(TIMEOUT) == 0 and not failures, failures


def consume_group(bootstrap: str, group: str, topics: list[str], count: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(topics)
    got: list[bytes] = []
    deadline = time.monotonic() + 40
    while len(got) < count and time.monotonic() < deadline:
        message = consumer.poll(1)
        if message is not None and message.error() is None:
            got.append(message.value())
    consumer.commit(asynchronous=False)
    consumer.close()
    return got


def test_topics_are_spread_over_the_brokers_and_every_node_tells_the_same(cluster) -> None:
    create(cluster.nodes[1].bootstrap, TOPICS)
    create(cluster.nodes[2].bootstrap, ["single"], 1)
    views = [leaders(cluster.nodes[n].bootstrap) for n in (1, 2, 3)]
    assert views[0] == views[1] == views[2]
    assert all(set(views[0][t]) == {1, 2, 3} for t in TOPICS), views[0]  # three partitions, three brokers
    owner = views[0]["single"][0]
    wait_for(lambda: (cluster.nodes[owner].data_dir / "single-0").is_dir(), "the replica's log is opened")
    assert not any((cluster.nodes[n].data_dir / "single-0").exists() for n in (1, 2, 3) if n != owner), "only where a replica is"


def test_data_a_group_and_an_idempotent_producer_across_the_cluster(cluster) -> None:
    create(cluster.bootstrap, TOPICS)
    produce(cluster.bootstrap, {t: [b"%s-%d" % (t.encode(), i) for i in range(10)] for t in TOPICS})
    first = consume_group(cluster.bootstrap, "g", TOPICS, 40)
    assert sorted(first) == sorted(b"%s-%d" % (t.encode(), i) for t in TOPICS for i in range(10))
    produce(cluster.bootstrap, {t: [b"later"] for t in TOPICS})
    assert consume_group(cluster.bootstrap, "g", TOPICS, 4) == [b"later"] * 4  # resumed at the commits


def test_a_broker_that_does_not_host_a_partition_sends_the_client_elsewhere(cluster) -> None:
    create(cluster.bootstrap, TOPICS[:1])
    owner = leaders(cluster.bootstrap)[TOPICS[0]][0]
    other = next(n for n in (1, 2, 3) if n != owner)
    F, L = protocol.FetchRequest, protocol.ListOffsetsRequest
    fetch = F(replica_id=-1, max_wait_ms=0, topics=[F.FetchTopic(topic=TOPICS[0], partitions=[F.FetchPartition(partition=0, partition_max_bytes=1024)])])
    offsets = L(replica_id=-1, topics=[L.ListOffsetsTopic(name=TOPICS[0], partitions=[L.ListOffsetsPartition(partition_index=0, timestamp=-1)])])
    P = protocol.ProduceRequest
    batch = encode_batch([Record(0, 1, None, b"v")])
    produce_request = P(acks=1, timeout_ms=5000, topic_data=[P.TopicProduceData(name=TOPICS[0], partition_data=[P.PartitionProduceData(index=0, records=batch)])])
    with WireClient(cluster.nodes[other].bootstrap) as wire:
        assert wire.request(produce_request, 9).responses[0].partition_responses[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert wire.request(fetch, 11).responses[0].partitions[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert wire.request(offsets, 7).topics[0].partitions[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_configs_partitions_and_deletes_go_through_any_node(cluster) -> None:
    create(cluster.nodes[2].bootstrap, TOPICS[:2], 2)
    admin = AdminClient({"bootstrap.servers": cluster.nodes[3].bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, TOPICS[0], incremental_configs=[ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT)
    for node in (1, 2, 3):
        client = AdminClient({"bootstrap.servers": cluster.nodes[node].bootstrap})
        described = ConfigResource(ResourceType.TOPIC, TOPICS[0])
        assert client.describe_configs([described])[described].result(timeout=TIMEOUT)["retention.ms"].value == "60000"
    from confluent_kafka.admin import NewPartitions

    admin.create_partitions([NewPartitions(TOPICS[0], 5)])[TOPICS[0]].result(timeout=TIMEOUT)
    owner = leaders(cluster.bootstrap)[TOPICS[0]][0]
    wait_for(lambda: (cluster.nodes[owner].data_dir / f"{TOPICS[0]}-4").is_dir(), "the owner opens the new partitions")
    admin.delete_topics([TOPICS[0]], operation_timeout=TIMEOUT)[TOPICS[0]].result(timeout=TIMEOUT)
    for node in (1, 2, 3):
        assert TOPICS[0] not in leaders(cluster.nodes[node].bootstrap)
    wait_for(lambda: not (cluster.nodes[owner].data_dir / f"{TOPICS[0]}-0").exists(), "the owner deletes the logs")
    with pytest.raises(Exception) as refused:
        admin.create_topics([NewTopic("replicated", 1, 4)])["replicated"].result(timeout=TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR


def test_a_dead_brokers_topics_go_offline_and_the_rest_go_on(cluster) -> None:
    create(cluster.bootstrap, TOPICS[:3], 1)  # one partition each: one topic on each broker
    placed = leaders(cluster.bootstrap)
    produce(cluster.bootstrap, {t: [b"before"] for t in TOPICS[:3]})
    victim_topic = TOPICS[0]
    victim = placed[victim_topic][0]
    survivors = [n for n in (1, 2, 3) if n != victim]
    cluster.nodes[victim].kill()
    survivor_bootstrap = ",".join(cluster.nodes[n].bootstrap for n in survivors)
    wait_for(lambda: leaders(survivor_bootstrap)[victim_topic] == [-1], "the dead broker's topic is offline")
    alive = [t for t in TOPICS[:3] if placed[t][0] != victim]
    produce(survivor_bootstrap, {t: [b"during"] for t in alive})
    cluster.nodes[victim].start()
    wait_for(lambda: leaders(cluster.bootstrap)[victim_topic] == placed[victim_topic], "the topic is back with its broker")
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "check", "enable.auto.commit": False})
    consumer.assign([TopicPartition(victim_topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        message = consumer.poll(1)
        if message is not None and message.error() is None:
            got.append(message.value())
    consumer.close()
    assert got == [b"before"], "what the broker had before it died is there after"


def test_topics_are_still_created_after_the_controller_dies(cluster) -> None:
    _, controller = cluster.view(1)
    cluster.nodes[controller].kill()
    survivors = [n for n in (1, 2, 3) if n != controller]
    wait_for(lambda: agreed(cluster, survivors, set(survivors)), "a new controller, the dead one fenced")
    bootstrap = ",".join(cluster.nodes[n].bootstrap for n in survivors)
    create(bootstrap, ["after-failover"], 2)
    assert set(leaders(bootstrap)["after-failover"]) <= set(survivors)


def test_manual_replica_assignments_are_kept(cluster) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    placed = NewTopic("manual", 2, replica_assignment=[[3, 1], [2, 3]])  # confluent-kafka wants the count too
    admin.create_topics([placed])["manual"].result(timeout=TIMEOUT)
    metadata = admin.list_topics("manual", timeout=10).topics["manual"].partitions
    assert [(metadata[p].leader, metadata[p].replicas) for p in (0, 1)] == [(3, [3, 1]), (2, [2, 3])]
    from confluent_kafka.admin import NewPartitions

    admin.create_partitions([NewPartitions("manual", 3, replica_assignment=[[1, 2]])])["manual"].result(timeout=TIMEOUT)
    wait_for(lambda: admin.list_topics("manual", timeout=10).topics["manual"].partitions[2].replicas == [1, 2], "the new partition is where it was asked")
    for bad, why in (([[1, 1]], "duplicate"), ([[1, 9]], "not registered"), ([[1], [1, 2]], "same number")):
        with pytest.raises(Exception) as refused:
            admin.create_topics([NewTopic("bad-manual", len(bad), replica_assignment=bad)])["bad-manual"].result(timeout=TIMEOUT)
        assert refused.value.args[0].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT, why


def test_producer_ids_are_unique_across_brokers_and_restarts(cluster) -> None:
    """Each broker hands out ids from blocks the controller gives it through the metadata log
    (Kafka's AllocateProducerIds): no two brokers, and no broker before and after a restart
    (its block on disk gone or not), give the same id."""
    I = protocol.InitProducerIdRequest

    def ids_from(node: int, count: int = 3) -> list[int]:
        with WireClient(cluster.nodes[node].bootstrap) as wire:
            answers = [wire.request(I(transactional_id=None, transaction_timeout_ms=60_000), 4) for _ in range(count)]
        assert all(a.error_code == 0 and a.producer_epoch == 0 for a in answers)
        return [a.producer_id for a in answers]

    given = [pid for node in (1, 2, 3) for pid in ids_from(node)]
    cluster.nodes[2].stop()
    for leftover in cluster.nodes[2].data_dir.glob("producer-id-block"):
        leftover.unlink()
    cluster.nodes[2].start()
    given += ids_from(2)
    assert len(set(given)) == len(given) == 12, given
