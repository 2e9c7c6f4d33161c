"""kafka-python's transaction admin (what `kafka-transactions.sh` does: list, describe,
describe-producers, abort) against a real broker. A hanging transaction is made the way Kafka's
tool exists for: a transactional write the coordinator never heard of (partition verification
off, as on brokers before KIP-890), which holds back read_committed consumers until an operator
aborts it with WriteTxnMarkers."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.admin._transactions import AbortTransactionSpec, TransactionState

from fastlog.records import Record, encode_batch
from tests.broker.wire import WireClient
from tests.conftest import BrokerProcess
from tests.transactions.test_wire import add_partitions, begin, end, produce, txn_batch

TIMEOUT_S = 20


@pytest.fixture(scope="module")
def unverified_broker(tmp_path_factory):
    overrides = {"transaction.state.log.num.partitions": "4", "offsets.topic.num.partitions": "4",
                 "transaction.partition.verification.enable": "false"}
    process = BrokerProcess(tmp_path_factory.mktemp("admin-tools") / "data", overrides).start()
    yield process
    process.stop()


@pytest.fixture
def admin(unverified_broker):
    client = KafkaAdminClient(bootstrap_servers=unverified_broker.bootstrap, request_timeout_ms=TIMEOUT_S * 1000)
    yield client
    client.close()


def committed_end(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    tp = TopicPartition(topic, 0)
    try:
        return consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


def test_list_describe_and_describe_producers(unverified_broker, admin) -> None:
    admin.create_topics([NewTopic("tools-listed", 1, 1)])
    with WireClient(unverified_broker.bootstrap) as wire:
        pid, epoch = begin(wire, "tools-open")
        assert add_partitions(wire, "tools-open", pid, epoch, {"tools-listed": [0]}) == {("tools-listed", 0): "NONE"}
        assert produce(wire, "tools-open", "tools-listed", txn_batch(pid, epoch, 0, b"a", b"b")).error_code == 0
        listed = [t for txns in admin.list_transactions().values() for t in txns]
        assert ("tools-open", pid, TransactionState.ONGOING) in [(t.transactional_id, t.producer_id, t.state) for t in listed]
        assert [t.transactional_id for txns in admin.list_transactions(state_filters=["CompleteCommit"]).values() for t in txns
                if t.transactional_id == "tools-open"] == []
        described = admin.describe_transactions(["tools-open"])["tools-open"]
        assert (described.state, described.producer_id, described.producer_epoch) == (TransactionState.ONGOING, pid, epoch)
        assert described.topic_partitions == {TopicPartition("tools-listed", 0)}
        assert described.transaction_start_time_ms > 0
        producers = admin.describe_producers([TopicPartition("tools-listed", 0)])[TopicPartition("tools-listed", 0)].active_producers
        assert [(p.producer_id, p.producer_epoch, p.last_sequence, p.current_transaction_start_offset) for p in producers] == [(pid, epoch, 1, 0)]
        assert end(wire, "tools-open", pid, epoch, commit=True) == "NONE"
    described = admin.describe_transactions(["tools-open"])["tools-open"]
    assert described.state == TransactionState.COMPLETE_COMMIT and described.topic_partitions == set()
    producers = admin.describe_producers([TopicPartition("tools-listed", 0)])[TopicPartition("tools-listed", 0)].active_producers
    assert [p.current_transaction_start_offset for p in producers] == [-1]


def test_an_operator_aborts_a_hanging_transaction(unverified_broker, admin) -> None:
    admin.create_topics([NewTopic("tools-hanging", 1, 1)])
    with WireClient(unverified_broker.bootstrap) as wire:
        pid, epoch = begin(wire, "tools-zombie")
        # Written without AddPartitionsToTxn: the coordinator does not know this partition is in a
        # transaction, so no timeout will ever abort it (what verification prevents).
        assert produce(wire, "tools-zombie", "tools-hanging", txn_batch(pid, epoch, 0, b"hanging")).error_code == 0
        plain = encode_batch([Record(0, int(time.time() * 1000), None, b"after")])
        assert produce(wire, None, "tools-hanging", plain).error_code == 0
    assert committed_end(unverified_broker.bootstrap, "tools-hanging") == 0, "read_committed is held back"
    tp = TopicPartition("tools-hanging", 0)
    [hanging] = admin.describe_producers([tp])[tp].active_producers
    assert (hanging.producer_id, hanging.current_transaction_start_offset) == (pid, 0)
    assert admin.describe_transactions(["tools-zombie"])["tools-zombie"].state == TransactionState.EMPTY
    admin.abort_transaction(AbortTransactionSpec(tp, hanging.producer_id, hanging.producer_epoch))
    deadline = time.monotonic() + TIMEOUT_S
    while committed_end(unverified_broker.bootstrap, "tools-hanging") != 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert committed_end(unverified_broker.bootstrap, "tools-hanging") == 3, "the ABORT marker released the LSO"
    consumer = KafkaConsumer(bootstrap_servers=unverified_broker.bootstrap, isolation_level="read_committed",
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    consumer.assign([tp])
    assert [m.value for m in consumer] == [b"after"], "the aborted record is not delivered"
    consumer.close()
    [after] = admin.describe_producers([tp])[tp].active_producers
    assert after.current_transaction_start_offset == -1
