"""Old clients as Kafka 3.9 serves them (issue 21): message formats v0/v1 on Produce, converted
to record batches v2 on append; Fetch v0-v3, answered with the stored batches converted down;
and every advertised version of every API answered. Real clients: kcat with
`api.version.request=false` and `broker.version.fallback` 0.9.0 / 0.8.2, the Go clients of
tests/clients (sarama's default Version, kafka-go 0.2.1), kafka-python's own legacy message
builder and reader as an independent codec.
"""

from __future__ import annotations

import subprocess

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka.record.legacy_records import LegacyRecordBatch, LegacyRecordBatchBuilder

from fastlog import legacy, protocol
from fastlog.handlers import HANDLERS
from fastlog.protocol import ErrorCode
from fastlog.records import Compression, Record, decode_batches, encode_batch
from tests.broker.wire import WireClient

TIMEOUT = 20
FALLBACKS = ["0.9.0", "0.8.2"]  # librdkafka: message format v0, Produce v1 / v0, Fetch v1 / v0
CODECS = ["none", "gzip", "snappy", "lz4"]


def kcat(broker, fallback: str | None, *args: str, stdin: str | None = None) -> str:
    old = ["-X", "api.version.request=false", "-X", f"broker.version.fallback={fallback}"] if fallback else []
    done = subprocess.run(
        ["kcat", "-b", broker.bootstrap, *old, *args], input=stdin, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def kcat_produce(broker, fallback, topic: str, lines: list[str], codec: str = "none") -> None:
    kcat(broker, fallback, "-P", "-t", topic, "-p", "0", "-K:", "-z", codec, stdin="".join(f"{x}\n" for x in lines))


def kcat_consume(broker, fallback, topic: str) -> list[str]:
    return kcat(broker, fallback, "-C", "-t", topic, "-p", "0", "-e", "-f", "%o %k %s\n").splitlines()


@pytest.mark.parametrize("fallback", FALLBACKS)
@pytest.mark.parametrize("codec", CODECS)
def test_kcat_with_an_old_broker_version_produces_and_consumes(broker, unique_topic, fallback, codec) -> None:
    lines = [f"key{i}:value {i}" for i in range(30)]
    kcat_produce(broker, fallback, unique_topic, lines, codec)
    assert kcat_consume(broker, fallback, unique_topic) == [f"{i} key{i} value {i}" for i in range(30)]
    assert "refused produce" not in broker.log_text()


def test_old_and_new_clients_read_what_the_other_wrote(broker, unique_topic) -> None:
    kcat_produce(broker, "0.8.2", unique_topic, ["old0:from 0.8.2"], "gzip")  # message format v0
    kcat_produce(broker, "0.9.0", unique_topic, ["old1:from 0.9.0"])
    producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "zstd"})
    producer.produce(unique_topic, key=b"new2", value=b"from 2.x", partition=0, headers=[("h", b"dropped")])
    assert producer.flush(TIMEOUT) == 0
    expected = ["0 old0 from 0.8.2", "1 old1 from 0.9.0", "2 new2 from 2.x"]
    for fallback in FALLBACKS:  # zstd and headers do not exist in v0/v1: sent uncompressed, headers left out
        assert kcat_consume(broker, fallback, unique_topic) == expected
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic, "enable.auto.commit": False})
    consumer.assign([TopicPartition(unique_topic, 0, 0)])
    got = []
    while len(got) < 3:
        message = consumer.poll(TIMEOUT)
        assert message is not None and message.error() is None
        got.append(f"{message.offset()} {message.key().decode()} {message.value().decode()}")
    consumer.close()
    assert got == expected


# -- the broker's conversions, checked with kafka-python's legacy codec ---------------------------


def kafka_python_message_set(magic: int, codec: int, items: list) -> bytes:
    builder = LegacyRecordBatchBuilder(magic=magic, compression_type=codec, batch_size=1 << 20)
    for offset, (key, value) in enumerate(items):
        builder.append(offset, timestamp=1_700_000_000_000 + offset, key=key, value=value)
    return bytes(builder.build())


def kafka_python_read(message_set: bytes) -> list:
    out, pos = [], 0
    while pos < len(message_set):
        size = int.from_bytes(message_set[pos + 8 : pos + 12], "big")
        batch = LegacyRecordBatch(message_set[pos : pos + 12 + size], message_set[pos + legacy.MAGIC_OFFSET])
        assert batch.validate_crc()
        out += [(r.offset, r.timestamp, r.key, r.value) for r in batch]
        pos += 12 + size
    return out


def produce_raw(wire: WireClient, topic: str, records: bytes, version: int) -> object:
    R = protocol.ProduceRequest
    request = R(acks=1, timeout_ms=5000, topic_data=[R.TopicProduceData(name=topic, partition_data=[R.PartitionProduceData(index=0, records=records)])])
    return wire.request(request, version).responses[0].partition_responses[0]


def fetch_raw(wire: WireClient, topic: str, offset: int, version: int, max_bytes: int = 1 << 20) -> object:
    F = protocol.FetchRequest
    partition = F.FetchPartition(partition=0, fetch_offset=offset, partition_max_bytes=max_bytes)
    request = F(replica_id=-1, max_wait_ms=0, min_bytes=0, topics=[F.FetchTopic(topic=topic, partitions=[partition])])
    return wire.request(request, version).responses[0].partitions[0]


def create(wire: WireClient, topic: str, **configs: str) -> None:
    C = protocol.CreateTopicsRequest
    entries = [C.CreatableTopicConfig(name=k, value=v) for k, v in configs.items()]
    topic_request = C.CreatableTopic(name=topic, num_partitions=1, replication_factor=1, configs=entries)
    assert wire.request(C(topics=[topic_request], timeout_ms=5000), 5).topics[0].error_code == 0


@pytest.mark.parametrize("magic", [0, 1])
@pytest.mark.parametrize("codec", [0, 1, 2, 3])  # none, gzip, snappy, lz4
def test_legacy_produce_is_stored_as_batch_v2_and_fetched_back_in_each_format(broker, unique_topic, magic, codec) -> None:
    items = [(b"k0", b"v0"), (None, b"no key"), (b"tomb", None)]
    with WireClient(broker.bootstrap) as wire:
        create(wire, unique_topic)
        answer = produce_raw(wire, unique_topic, kafka_python_message_set(magic, codec, items), 2)
        assert (answer.error_code, answer.base_offset) == (0, 0)
        stored = fetch_raw(wire, unique_topic, 0, 11)
        batches = decode_batches(bytes(stored.records))
        assert [b.magic for b in batches] == [2]
        assert [(r.key, r.value) for r in batches[0].records] == items
        for version, read_magic in ((0, 0), (1, 0), (2, 1), (3, 1)):
            old = fetch_raw(wire, unique_topic, 1, version)  # from the middle of the stored batch
            read = kafka_python_read(bytes(old.records))
            assert [(o, k, v) for o, _, k, v in read] == [(i + 1, k, v) for i, (k, v) in enumerate(items[1:])]
            timestamps = [t for _, t, _, _ in read]
            assert timestamps == ([1_700_000_000_001, 1_700_000_000_002] if read_magic == 1 and magic == 1 else timestamps)
            assert {legacy.magic_of(bytes(old.records))} == {read_magic}


def test_fetch_v3_is_cut_after_the_last_whole_message_within_the_limit(broker, unique_topic) -> None:
    with WireClient(broker.bootstrap) as wire:
        create(wire, unique_topic)
        records = [Record(i, 1000 + i, b"k", b"x" * 100) for i in range(10)]
        assert produce_raw(wire, unique_topic, encode_batch(records), 9).error_code == 0
        old = fetch_raw(wire, unique_topic, 0, 3, max_bytes=400)
        read = kafka_python_read(bytes(old.records))
        assert 1 <= len(read) < 10 and len(old.records) <= 400
        assert [o for o, *_ in read] == list(range(len(read)))


def test_down_conversion_disabled_answers_unsupported_version(broker, unique_topic) -> None:
    with WireClient(broker.bootstrap) as wire:
        create(wire, unique_topic, **{"message.downconversion.enable": "false"})
        assert produce_raw(wire, unique_topic, encode_batch([Record(0, 1, b"k", b"v")]), 9).error_code == 0
        assert fetch_raw(wire, unique_topic, 0, 2).error_code == ErrorCode.UNSUPPORTED_VERSION
        assert fetch_raw(wire, unique_topic, 0, 11).error_code == 0


def test_an_unreadable_legacy_message_set_is_refused_naming_its_format_and_client(broker, unique_topic) -> None:
    with WireClient(broker.bootstrap) as wire:
        create(wire, unique_topic)
        bad = bytearray(kafka_python_message_set(1, 0, [(b"k", b"v")]))
        bad[-1] ^= 0xFF
        assert produce_raw(wire, unique_topic, bytes(bad), 2).error_code == ErrorCode.CORRUPT_MESSAGE
        answer = produce_raw(wire, unique_topic, bytes(bad), 8)  # v8 carries the error message
        assert answer.error_code == ErrorCode.CORRUPT_MESSAGE
        assert "message format v1 (magic 1)" in answer.error_message and "wire-test" in answer.error_message
        assert fetch_raw(wire, unique_topic, 0, 11).high_watermark == 0
    assert "message format v1 (magic 1) from" in broker.log_text()


def test_compacted_gaps_keep_their_offsets_in_a_compressed_magic_1_wrapper() -> None:
    stored = encode_batch([Record(o, 1000 + o, b"k%d" % o, b"v") for o in (5, 7, 8)], base_offset=5, compression=Compression.GZIP)
    converted = legacy.down_convert(stored, 1, 0, 1 << 20)
    assert [o for o, *_ in kafka_python_read(converted)] == [5, 7, 8]
    assert [r.offset for b in decode_batches(converted) for r in b.records] == [5, 7, 8]


# -- every advertised version of every API ---------------------------------------------------------


def advertised() -> list[tuple[int, int]]:
    return [(key, version) for key, h in sorted(HANDLERS.items()) for version in range(h.min_version, h.max_version + 1)]


def test_every_advertised_version_of_every_api_is_answered(broker) -> None:
    # a request of each API at each version, with its schema's defaults (generated, so no
    # version is forgotten), must get a decodable answer on an open connection
    with WireClient(broker.bootstrap) as wire:
        for api_key, version in advertised():
            request = protocol.request_class(api_key)()
            if api_key == 0:
                request.acks = 1  # acks=0 is answered with silence
            answer = wire.request(request, version)
            assert type(answer) is protocol.response_class(api_key), (api_key, version)
            assert wire.last_correlation_id == wire.correlation_id, (api_key, version)


def test_a_stored_batch_that_cannot_be_converted_down_is_a_partition_error_not_a_closed_connection(broker, unique_topic) -> None:
    # 65 MiB of zeros (zstd makes it small) inflates past the 64 MiB bound of down-conversion
    with WireClient(broker.bootstrap, timeout=60) as wire:
        create(wire, unique_topic, **{"max.message.bytes": str(80 << 20)})
        bomb = encode_batch([Record(0, 1, None, bytes(65 << 20))], compression=Compression.ZSTD)
        R = protocol.ProduceRequest
        request = R(acks=1, timeout_ms=5000, topic_data=[R.TopicProduceData(name=unique_topic, partition_data=[R.PartitionProduceData(index=0, records=bomb)])])
        assert wire.request(request, 9).responses[0].partition_responses[0].error_code == 0
        assert fetch_raw(wire, unique_topic, 0, 11).error_code == 0  # v4+: sent as stored
        assert fetch_raw(wire, unique_topic, 0, 2).error_code == ErrorCode.MESSAGE_TOO_LARGE
        assert fetch_raw(wire, unique_topic, 0, 11).error_code == 0  # the connection is still open
    assert "cannot convert" in broker.log_text()
