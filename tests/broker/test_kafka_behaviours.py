"""Kafka broker behaviours that clients rely on, found by running librdkafka's own integration
tests against fastlog (issue 13), each checked with a real client:

- a request with bytes after its last field (librdkafka 2.x's Metadata for all topics) is read
  as Kafka reads it: answered, counted in a metric, never a closed connection;
- deleting a topic, or records of a partition, while fetches are parked on it answers both the
  admin request and the parked fetch (the wake-up happens on the event loop);
- a compacted topic refuses records without a key: INVALID_RECORD with per-record errors
  (KIP-467) and Kafka's messages, and nothing of that batch is written;
- topic configs Kafka 3.x accepts but that do nothing (`message.format.version`, ...) are
  accepted with a warning in the log, not refused with INVALID_CONFIG.
"""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType
from kafka import KafkaProducer
from kafka.errors import InvalidRecordError, KafkaError as KafkaPythonError

from fastlog import protocol
from fastlog.protocol import ErrorCode
from fastlog._core import crc32c as crc32c_of
from fastlog.records import Record, encode_batch
from tests.broker.wire import WireClient
from tests.conftest import BrokerProcess

TIMEOUT = 15  # seconds, for every client call
PARKED_WAIT_MS = 20_000  # far longer than any answer below may take
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_RECORD = 87


def admin(broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create_topic(broker: BrokerProcess, name: str, **configs: str) -> None:
    client = admin(broker)  # kept referenced until the result is in: a destroyed client cancels it
    futures = client.create_topics([NewTopic(name, 1, 1, config=configs)], request_timeout=TIMEOUT)
    futures[name].result(timeout=TIMEOUT)


def produce(broker: BrokerProcess, topic: str, values: list, key: bytes | None = b"k") -> list:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    reports: list = []
    for value in values:
        producer.produce(topic, key=key, value=value, on_delivery=lambda err, msg: reports.append((err, msg)))
    assert producer.flush(TIMEOUT) == 0
    return reports


def fetch_request(topic: str, offset: int, max_wait_ms: int) -> object:
    R = protocol.FetchRequest
    return R(
        replica_id=-1,
        max_wait_ms=max_wait_ms,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=[R.FetchTopic(topic=topic, partitions=[R.FetchPartition(partition=0, fetch_offset=offset, partition_max_bytes=1 << 20)])],
    )


class ParkedFetch:
    """A raw Fetch v11 sent on its own connection and answered in a background thread."""

    def __init__(self, broker: BrokerProcess, topic: str, offset: int) -> None:
        self.wire = WireClient(broker.bootstrap, timeout=PARKED_WAIT_MS / 1000 + 10)
        self.wire.send_frame(self.wire.encode(fetch_request(topic, offset, PARKED_WAIT_MS), 11))
        self.response = None
        self.answered_after: float | None = None
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        self.response = self.wire.read_response(1, 11)
        self.answered_after = time.monotonic() - self.started

    def result(self, timeout: float) -> object:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the parked fetch was not answered within {timeout}s"
        self.wire.close()
        return self.response


def settle_parked() -> None:
    """Gives the broker time to read and park a fetch before the test goes on."""
    time.sleep(0.5)


# -- bytes after the last field ------------------------------------------------------------------


def metric(broker: BrokerProcess, name: str, label: str) -> float:
    port = int(broker.log_text().split("metrics at http://127.0.0.1:")[1].split("/")[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=TIMEOUT) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_newest_librdkafka_lists_all_topics(broker, unique_topic) -> None:
    # librdkafka >= 2.10 leaves 3 bytes after Metadata v12's fields when it asks for all topics
    create_topic(broker, unique_topic)
    metadata = admin(broker).list_topics(timeout=TIMEOUT)
    assert unique_topic in metadata.topics
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic})
    try:
        assert unique_topic in consumer.list_topics(timeout=TIMEOUT).topics
    finally:
        consumer.close()
    assert "closing connection" not in broker.log_text()


def test_trailing_bytes_are_answered_counted_and_the_connection_stays_open(broker) -> None:
    before = metric(broker, "fastlog_requests_with_trailing_bytes_total", 'api="Metadata"')
    with WireClient(broker.bootstrap) as wire:
        for version in (1, 12):
            wire.send_frame(wire.encode(protocol.MetadataRequest(topics=None), version) + b"\0\0\0")
            response = wire.read_response(3, version)
            assert response.brokers and response.brokers[0].port == broker.port
    after = metric(broker, "fastlog_requests_with_trailing_bytes_total", 'api="Metadata"')
    assert after - before == 2


# -- deleting what a fetch waits on --------------------------------------------------------------


def test_deleting_a_topic_answers_the_delete_and_the_fetches_parked_on_it(broker, unique_topic) -> None:
    create_topic(broker, unique_topic)
    produce(broker, unique_topic, [b"one"])
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": unique_topic, "fetch.wait.max.ms": PARKED_WAIT_MS}
    )
    consumer.assign([TopicPartition(unique_topic, 0, 1)])  # long-polls at the end of the log
    consumer.poll(1)
    parked = ParkedFetch(broker, unique_topic, 1)
    settle_parked()
    started = time.monotonic()
    client = admin(broker)
    client.delete_topics([unique_topic], operation_timeout=TIMEOUT)[unique_topic].result(timeout=TIMEOUT)
    assert time.monotonic() - started < 5
    response = parked.result(timeout=5)
    assert parked.answered_after < PARKED_WAIT_MS / 1000 / 2
    assert response.responses[0].partitions[0].error_code == UNKNOWN_TOPIC_OR_PARTITION
    consumer.close()
    assert unique_topic not in admin(broker).list_topics(timeout=TIMEOUT).topics
    assert "must be called from async context" not in broker.log_text()


def test_delete_records_under_a_parked_fetch(broker, unique_topic) -> None:
    create_topic(broker, unique_topic)
    produce(broker, unique_topic, [b"a", b"b", b"c"])
    parked = ParkedFetch(broker, unique_topic, 3)
    settle_parked()
    client = admin(broker)
    deleted = client.delete_records([TopicPartition(unique_topic, 0, 3)], request_timeout=TIMEOUT)
    assert deleted[TopicPartition(unique_topic, 0, 3)].result(timeout=TIMEOUT).low_watermark == 3
    produce(broker, unique_topic, [b"d"])  # the fetch, still parked at 3, now gets it
    response = parked.result(timeout=10)
    partition = response.responses[0].partitions[0]
    assert partition.error_code == 0 and partition.log_start_offset == 3 and bytes(partition.records)


# -- compacted topics refuse records without a key -----------------------------------------------


def test_a_compacted_topic_refuses_keyless_records_and_writes_none_of_the_batch(broker, unique_topic) -> None:
    create_topic(broker, unique_topic, **{"cleanup.policy": "compact"})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 100, "retries": 0})
    reports: list = []
    for key in (b"k1", None, b"k2"):  # one batch: the keyless record refuses all three
        producer.produce(unique_topic, key=key, value=b"v", on_delivery=lambda err, msg: reports.append(err))
    assert producer.flush(TIMEOUT) == 0
    assert [e.code() if e else None for e in reports] == [KafkaError.INVALID_RECORD] * 3
    assert produce(broker, unique_topic, [b"kept"], key=b"k")[0][1].offset() == 0  # nothing was written
    assert "Compacted topic cannot accept message without key in topic partition" in broker.log_text()


def test_record_errors_on_the_wire_with_kafkas_messages(broker, unique_topic) -> None:
    create_topic(broker, unique_topic, **{"cleanup.policy": "compact"})
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, retries=0, linger_ms=50)
    futures = [producer.send(unique_topic, key=key, value=b"v", partition=0) for key in (None, b"k", None)]
    producer.flush(TIMEOUT)
    errors = []
    for future in futures:
        with pytest.raises(KafkaPythonError) as refused:
            future.get(timeout=TIMEOUT)
        errors.append(type(refused.value))
    producer.close(TIMEOUT)
    # KIP-467 in the client: the keyless records are named, the keyed one fails with its batch
    assert errors[0] is errors[2] is InvalidRecordError and errors[1] is not InvalidRecordError
    R = protocol.ProduceRequest
    batch = encode_batch([Record(offset, 1_700_000_000_000, key, b"v") for offset, key in enumerate((None, b"k", None))])
    request = R(acks=1, timeout_ms=5000, topic_data=[R.TopicProduceData(name=unique_topic, partition_data=[R.PartitionProduceData(index=0, records=batch)])])
    with WireClient(broker.bootstrap) as wire:
        answer = wire.request(request, 9).responses[0].partition_responses[0]
    why = f"Compacted topic cannot accept message without key in topic partition {unique_topic}-0"
    assert answer.error_code == INVALID_RECORD and answer.base_offset == -1
    assert [(e.batch_index, e.batch_index_error_message) for e in answer.record_errors] == [(0, why), (2, why)]
    assert answer.error_message == (
        "One or more records have been rejected due to 2 record errors in total, and only showing the first "
        f"three errors at most: [RecordError(batchIndex=0, message='{why}'), RecordError(batchIndex=2, message='{why}')]"
    )


# -- configs Kafka 3 accepts that do nothing -----------------------------------------------------


NO_EFFECT_CONFIGS = {
    "message.format.version": "2.8",
    "message.timestamp.difference.max.ms": "86400000",
    "remote.storage.enable": "false",
    "leader.replication.throttled.replicas": "",
}


def test_configs_kafka_3_accepts_without_effect_are_accepted_with_a_warning(broker, unique_topic) -> None:
    create_topic(broker, unique_topic, **NO_EFFECT_CONFIGS)
    client = admin(broker)
    resource = ConfigResource(ResourceType.TOPIC, unique_topic)
    described = client.describe_configs([resource], request_timeout=TIMEOUT)[resource].result(timeout=TIMEOUT)
    assert described["message.format.version"].value == "2.8"
    changed = ConfigResource(
        ResourceType.TOPIC,
        unique_topic,
        incremental_configs=[ConfigEntry("message.format.version", "3.0", incremental_operation=AlterConfigOpType.SET)],
    )
    client.incremental_alter_configs([changed], request_timeout=TIMEOUT)[changed].result(timeout=TIMEOUT)
    described = client.describe_configs([resource], request_timeout=TIMEOUT)[resource].result(timeout=TIMEOUT)
    assert described["message.format.version"].value == "3.0"
    assert "topic config message.format.version=2.8 is accepted" in broker.log_text()
    assert produce(broker, unique_topic, [b"x"])[0][0] is None


# -- every advertised version is answered --------------------------------------------------------


def test_list_offsets_v0_answers_in_old_style_offsets(broker, unique_topic) -> None:
    # sarama's default Version (0.8.2) asks with v0; v0 answers only in old_style_offsets
    create_topic(broker, unique_topic)
    produce(broker, unique_topic, [b"a", b"b"])
    R = protocol.ListOffsetsRequest
    wanted = {-2: [0], -1: [2]}
    with WireClient(broker.bootstrap) as wire:
        for timestamp, expected in wanted.items():
            partition = R.ListOffsetsPartition(partition_index=0, timestamp=timestamp, max_num_offsets=1)
            request = R(replica_id=-1, topics=[R.ListOffsetsTopic(name=unique_topic, partitions=[partition])])
            answer = wire.request(request, 0).topics[0].partitions[0]
            assert (answer.error_code, answer.old_style_offsets) == (0, expected)


def test_the_max_timestamp_a_producer_leaves_at_minus_one_is_recomputed(broker, unique_topic) -> None:
    # sarama 1.22 writes -1 as each batch's max timestamp; offsets by time must still work
    create_topic(broker, unique_topic)
    records = [Record(i, 1_700_000_000_000 + 1000 * i, b"k", b"v") for i in range(3)]
    batch = bytearray(encode_batch(records))
    batch[35:43] = (-1).to_bytes(8, "big", signed=True)  # max_timestamp
    batch[17:21] = crc32c_of(bytes(batch[21:])).to_bytes(4, "big")
    R = protocol.ProduceRequest
    request = R(acks=1, timeout_ms=5000, topic_data=[R.TopicProduceData(name=unique_topic, partition_data=[R.PartitionProduceData(index=0, records=bytes(batch))])])
    L = protocol.ListOffsetsRequest
    with WireClient(broker.bootstrap) as wire:
        assert wire.request(request, 3).responses[0].partition_responses[0].error_code == 0
        for timestamp, expected in ((1_700_000_000_500, 1), (-3, 2)):
            partition = L.ListOffsetsPartition(partition_index=0, timestamp=timestamp)
            answer = wire.request(L(replica_id=-1, topics=[L.ListOffsetsTopic(name=unique_topic, partitions=[partition])]), 7)
            assert answer.topics[0].partitions[0].offset == expected


def test_list_offsets_naming_a_partition_twice_answers_invalid_request(broker, unique_topic) -> None:
    create_topic(broker, unique_topic)
    L = protocol.ListOffsetsRequest
    twice = [L.ListOffsetsPartition(partition_index=0, timestamp=-1), L.ListOffsetsPartition(partition_index=0, timestamp=-2)]
    with WireClient(broker.bootstrap) as wire:
        answer = wire.request(L(replica_id=-1, topics=[L.ListOffsetsTopic(name=unique_topic, partitions=twice)]), 7)
    assert [p.error_code for p in answer.topics[0].partitions] == [ErrorCode.INVALID_REQUEST] * 2
