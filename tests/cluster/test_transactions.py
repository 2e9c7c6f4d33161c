"""Transactions in a three-node cluster: the coordinator (the leader of `__transaction_state`
partition 0) writes markers to partitions other brokers lead through WriteTxnMarkers, so a
transaction across partitions led by all three brokers commits or aborts as a whole, its group
offsets included; and the coordinator's state survives the loss of its broker."""

from __future__ import annotations

import time
from typing import Iterator

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.cluster.helpers import Cluster, agreed, wait_for

TIMEOUT = 30
PARTITIONS = 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = Cluster(tmp_path_factory.mktemp("txn-cluster"))
    for node in started.nodes.values():
        node.overrides.update({"transaction.state.log.num.partitions": "3", "offsets.topic.num.partitions": "3"})
    started.start()
    try:
        wait_for(lambda: agreed(started, [1, 2, 3], {1, 2, 3}), "the cluster settles")
        admin = AdminClient({"bootstrap.servers": started.bootstrap})
        for future in admin.create_topics([NewTopic("spread", PARTITIONS, 3)]).values():
            future.result(timeout=TIMEOUT)
        yield started
    finally:
        started.stop()


def leaders(cluster: Cluster, topic: str) -> set[int]:
    metadata = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(topic, timeout=10)
    return {p.leader for p in metadata.topics[topic].partitions.values()}


def read(cluster: Cluster, isolation: str) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"reader-{isolation}-{time.monotonic_ns()}",
                         "isolation.level": isolation, "enable.partition.eof": True, "enable.auto.commit": False})
    consumer.assign([TopicPartition("spread", p, 0) for p in range(PARTITIONS)])
    values, ends = [], set()
    deadline = time.monotonic() + TIMEOUT
    while len(ends) < PARTITIONS and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            ends.add(message.partition())
            continue
        values.append(message.value())
    consumer.close()
    assert len(ends) == PARTITIONS, "every partition was read to its end"
    return sorted(values)


def test_a_transaction_over_every_broker_commits_or_aborts_as_a_whole(cluster) -> None:
    assert leaders(cluster, "spread") == {1, 2, 3}, "the partitions are led by all three brokers"
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": "spread-txn"})
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    for p in range(PARTITIONS):
        producer.produce("spread", b"committed-%d" % p, partition=p)
    producer.commit_transaction(TIMEOUT)
    producer.begin_transaction()
    for p in range(PARTITIONS):
        producer.produce("spread", b"aborted-%d" % p, partition=p)
    producer.flush(TIMEOUT)
    producer.abort_transaction(TIMEOUT)
    committed = sorted(b"committed-%d" % p for p in range(PARTITIONS))
    assert read(cluster, "read_committed") == committed
    assert read(cluster, "read_uncommitted") == sorted(committed + [b"aborted-%d" % p for p in range(PARTITIONS)])


def test_offsets_sent_in_a_transaction_take_effect_on_commit(cluster) -> None:
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "txn-group", "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": "offsets-txn"})
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    producer.produce("spread", b"with-offsets", partition=0)
    producer.send_offsets_to_transaction([TopicPartition("spread", 1, 42)], consumer.consumer_group_metadata(), TIMEOUT)
    producer.commit_transaction(TIMEOUT)
    [committed] = consumer.committed([TopicPartition("spread", 1)], timeout=TIMEOUT)
    assert committed.offset == 42
    consumer.close()


def test_the_coordinator_state_survives_its_broker(cluster) -> None:
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": "survivor"})
    producer.init_transactions(TIMEOUT)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    coordinator = admin.list_topics("__transaction_state", timeout=10).topics["__transaction_state"].partitions[0].leader
    cluster.nodes[coordinator].stop()
    try:
        wait_for(lambda: AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics("__transaction_state", timeout=5)
                 .topics["__transaction_state"].partitions[0].leader not in (coordinator, -1), "another broker leads __transaction_state")
        producer.begin_transaction()
        for p in range(PARTITIONS):
            producer.produce("spread", b"after-failover-%d" % p, partition=p)
        try:
            producer.commit_transaction(TIMEOUT)
        except KafkaException as e:  # partitions led by the stopped broker move first; retry once
            if not e.args[0].retriable():
                raise
            producer.commit_transaction(TIMEOUT)
    finally:
        cluster.nodes[coordinator].start()
    wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the broker is back")
    assert [v for v in read(cluster, "read_committed") if v.startswith(b"after-failover")] == sorted(b"after-failover-%d" % p for p in range(PARTITIONS))


def test_a_leader_asks_the_coordinator_elsewhere_before_a_transactions_first_write(cluster) -> None:
    """KIP-890 on a partition led by a broker that is not the coordinator: the leader asks the
    coordinator (AddPartitionsToTxn v4, verify_only) before the producer's first write there."""
    from fastlog import protocol as P
    from fastlog.protocol import ErrorCode as E
    from tests.broker.wire import WireClient
    from tests.transactions.test_wire import add_partitions, produce, txn_batch

    # The coordinators' topic is created by the first transactional producer: the other tests
    # make one, but this test may be the first of the module on its pytest-xdist worker.
    Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": "verified-first"}).init_transactions(TIMEOUT)
    metadata = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(timeout=10)
    coordinator = metadata.topics["__transaction_state"].partitions[0].leader
    partition, leader = next((p.id, p.leader) for p in metadata.topics["spread"].partitions.values() if p.leader != coordinator)
    with WireClient(cluster.nodes[coordinator].bootstrap) as at_coordinator, WireClient(cluster.nodes[leader].bootstrap) as at_leader:
        answer = at_coordinator.request(P.InitProducerIdRequest(transactional_id="verified", transaction_timeout_ms=30_000), 4)
        pid, epoch = answer.producer_id, answer.producer_epoch
        refused = produce(at_leader, "verified", "spread", txn_batch(pid, epoch, 0, b"too early"), partition)
        assert refused.error_code == E.INVALID_TXN_STATE, E(refused.error_code).name
        assert add_partitions(at_coordinator, "verified", pid, epoch, {"spread": [partition]}) == {("spread", partition): "NONE"}
        for sequence, value in enumerate([b"first", b"second"]):  # the second needs no question: the transaction is open there
            accepted = produce(at_leader, "verified", "spread", txn_batch(pid, epoch, sequence, value), partition)
            assert accepted.error_code == 0, E(accepted.error_code).name
        end = at_coordinator.request(P.EndTxnRequest(transactional_id="verified", producer_id=pid, producer_epoch=epoch, committed=True), 3)
        assert end.error_code == 0
    assert {b"first", b"second"} <= set(read(cluster, "read_committed"))
    assert b"too early" not in read(cluster, "read_uncommitted")
