"""Nodes with one role (issue 14): `process.roles=controller` votes in the metadata quorum and
serves no clients; `process.roles=broker` serves clients and follows the quorum as an observer,
found through `controller.quorum.voters` or `controller.quorum.bootstrap.servers`.

Four real processes on loopback: node 1 a controller only, nodes 2 and 3 combined, node 4 a
broker only that knows just the controllers' addresses. Every wait is bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.cluster.helpers import Cluster, wait_for
from tests.cluster.test_quorum import describe_quorum

TIMEOUT = 20


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    started = Cluster(tmp_path, size=4, roles={1: "controller", 4: "broker"}, bootstrap_only=frozenset({4})).start()
    yield started
    started.stop()


def brokers_seen(cluster: Cluster, node: int) -> set[int]:
    return set(AdminClient({"bootstrap.servers": cluster.nodes[node].bootstrap}).list_topics(timeout=5).brokers)


def every_broker_sees(cluster: Cluster, brokers: set[int], of: list[int]) -> bool:
    return all(brokers_seen(cluster, n) == brokers for n in of)


def quorum_leader(cluster: Cluster, asked: int) -> int:
    return describe_quorum(cluster.nodes[asked].bootstrap).topics[0].partitions[0].leader_id


def produce_and_read(bootstrap: str, topic: str, count: int) -> list[bytes]:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for n in range(count):
        producer.produce(topic, str(n).encode())
    assert producer.flush(TIMEOUT) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    values: list[bytes] = []
    wait_for(lambda: _poll_into(consumer, values, count), f"{count} records read back", TIMEOUT)
    consumer.close()
    return values


def created(admin: AdminClient, name: str) -> bool:
    """Creates a one-partition topic of factor 2; one an earlier try created counts."""
    try:
        admin.create_topics([NewTopic(name, 1, 2)])[name].result(timeout=5)
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    return True


def _poll_into(consumer: Consumer, values: list[bytes], count: int) -> bool:
    values += [m.value() for m in consumer.consume(1000, 0.5) if m.error() is None]
    return len(values) >= count


def test_a_controller_only_node_and_a_broker_only_node_join_a_cluster(cluster) -> None:
    wait_for(lambda: every_broker_sees(cluster, {2, 3, 4}, [2, 3, 4]), "brokers 2, 3, 4 listed everywhere; the controller-only node is not")
    cluster_ids = {AdminClient({"bootstrap.servers": cluster.nodes[n].bootstrap}).list_topics(timeout=5).cluster_id for n in (2, 4)}
    assert len(cluster_ids) == 1, "the broker-only node learned the cluster id from the controllers"
    metadata = AdminClient({"bootstrap.servers": cluster.nodes[4].bootstrap}).list_topics(timeout=5)
    assert metadata.controller_id in {2, 3, 4}, "clients are never sent to a node that does not serve them"

    # Topics created through the broker-only node: its proposal goes to the quorum leader.
    admin = AdminClient({"bootstrap.servers": cluster.nodes[4].bootstrap})
    admin.create_topics([NewTopic("roles", 3, 3)])["roles"].result(timeout=TIMEOUT)
    topic = admin.list_topics("roles", timeout=5).topics["roles"]
    assert all(sorted(p.replicas) == [2, 3, 4] for p in topic.partitions.values())
    assert sorted(produce_and_read(cluster.bootstrap, "roles", 300), key=int) == [str(n).encode() for n in range(300)]

    quorum = describe_quorum(cluster.nodes[4].bootstrap).topics[0].partitions[0]
    assert sorted(v.replica_id for v in quorum.current_voters) == [1, 2, 3]
    assert [o.replica_id for o in quorum.observers] == [4]

    # A killed broker-only node is fenced (its fetch connection closes) and comes back.
    cluster.nodes[4].kill()
    wait_for(lambda: every_broker_sees(cluster, {2, 3}, [2, 3]), "the killed broker-only node is fenced", 10)
    cluster.nodes[4].start()
    wait_for(lambda: every_broker_sees(cluster, {2, 3, 4}, [2, 3, 4]), "the restarted broker-only node is listed again")

    # The quorum leader dies: the other two voters elect one, the observer follows it.
    leader = quorum_leader(cluster, 2)
    assert leader in {1, 2, 3}
    cluster.nodes[leader].kill()
    survivors = [n for n in (2, 3, 4) if n != leader]
    wait_for(lambda: quorum_leader(cluster, 4) not in (-1, leader), "a new quorum leader, known to the observer")
    admin = AdminClient({"bootstrap.servers": cluster.nodes[4].bootstrap})
    wait_for(lambda: created(admin, "after"), "a topic created after the leader died")
    wait_for(lambda: all("after" in AdminClient({"bootstrap.servers": cluster.nodes[n].bootstrap}).list_topics(timeout=5).topics for n in survivors), "every broker sees it")
