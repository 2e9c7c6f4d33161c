"""Compressed batches from real clients, the topic's compression.type, and bounded inflation."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fastlog import protocol
from fastlog.protocol import ErrorCode
from fastlog.records import Compression, Record, decode_batches, encode_batch
from tests.broker.wire import WireClient

P = protocol
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def create(bootstrap: str, topic: str, configs: dict) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1, config=configs)]).values():
        future.result(20)


def raw_batches(bootstrap: str, topic: str) -> list:
    with WireClient(bootstrap) as client:
        fetch = P.FetchRequest(
            max_wait_ms=0,
            min_bytes=0,
            topics=[P.FetchRequest.FetchTopic(topic=topic, partitions=[P.FetchRequest.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 22)])],
        )
        records = client.request(fetch, 11).responses[0].partitions[0].records
    return decode_batches(bytes(records))


def consume_all(bootstrap: str, topic: str, count: int) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "x", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.close()
    return got


@pytest.mark.parametrize("producer_codec", CODECS)
@pytest.mark.parametrize("topic_codec", ["producer", "uncompressed", "zstd", "snappy"])
def test_topic_compression_type(broker, unique_topic, producer_codec, topic_codec) -> None:
    create(broker.bootstrap, unique_topic, {"compression.type": topic_codec})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": producer_codec, "linger.ms": 20})
    values = [b"value %d " % i * 20 for i in range(300)]
    for value in values:
        producer.produce(unique_topic, value, partition=0)
    assert producer.flush(20) == 0
    stored = {b.compression for b in raw_batches(broker.bootstrap, unique_topic)}
    if topic_codec == "producer":
        expected = Compression.NONE if producer_codec == "none" else Compression[producer_codec.upper()]
    elif topic_codec == "uncompressed":
        expected = Compression.NONE
    else:
        expected = Compression[topic_codec.upper()]
    assert stored == {expected}
    assert consume_all(broker.bootstrap, unique_topic, 300) == values


def test_bombs_and_lying_counts_are_refused(broker, unique_topic) -> None:
    create(broker.bootstrap, unique_topic, {"max.message.bytes": "100000"})
    bomb = encode_batch([Record(0, 1, None, bytes(5_000_000))], compression=Compression.ZSTD)
    assert len(bomb) < 100_000
    records = [Record(i, 1, None, b"x") for i in range(3)]
    liar = bytearray(encode_batch(records, compression=Compression.GZIP))
    liar[57:61] = (5).to_bytes(4, "big")
    from fastlog._core import crc32c

    liar[17:21] = crc32c(bytes(liar[21:])).to_bytes(4, "big")
    with WireClient(broker.bootstrap) as client:
        for data in (bomb, bytes(liar)):
            body = P.ProduceRequest(
                acks=1,
                timeout_ms=5000,
                topic_data=[P.ProduceRequest.TopicProduceData(name=unique_topic, partition_data=[P.ProduceRequest.PartitionProduceData(index=0, records=data)])],
            )
            response = client.request(body, 9).responses[0].partition_responses[0]
            assert response.error_code == ErrorCode.CORRUPT_MESSAGE, response
        assert client.request(P.ApiVersionsRequest(), 3).error_code == 0
    assert raw_batches(broker.bootstrap, unique_topic) == []


def produce_batch(bootstrap: str, topic: str, batch: bytes) -> None:
    with WireClient(bootstrap) as client:
        body = P.ProduceRequest(
            acks=1,
            timeout_ms=5000,
            topic_data=[P.ProduceRequest.TopicProduceData(name=topic, partition_data=[P.ProduceRequest.PartitionProduceData(index=0, records=batch)])],
        )
        assert client.request(body, 9).responses[0].partition_responses[0].error_code == 0


# zstd's -1 is its first fast level (Kafka passes it on), not the default as gzip's -1 is.
@pytest.mark.parametrize("codec, fast, small", [("gzip", 1, 9), ("zstd", -1, 19)])
def test_the_topic_compression_level_sets_how_hard_the_broker_compresses(broker, unique_topic, codec, fast, small) -> None:
    values = [b'{"order":%d,"item":"sku-%d","state":"%s"}' % (i, i % 97, [b"new", b"paid", b"sent"][i % 3]) for i in range(2000)]
    batch = encode_batch([Record(i, 1_700_000_000_000, None, v) for i, v in enumerate(values)])
    sizes = {}
    for level in (fast, "default", small):
        topic = f"{unique_topic}-{level}"
        configs = {"compression.type": codec}
        if level != "default":
            configs[f"compression.{codec}.level"] = str(level)
        create(broker.bootstrap, topic, configs)
        produce_batch(broker.bootstrap, topic, batch)
        [stored] = raw_batches(broker.bootstrap, topic)
        assert stored.compression == Compression[codec.upper()]
        sizes[level] = stored.size_in_bytes
        assert consume_all(broker.bootstrap, topic, len(values)) == values
    assert sizes[fast] > sizes["default"] > sizes[small], sizes


def test_a_compression_level_altered_applies_to_the_next_batches(broker, unique_topic) -> None:
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    values = [b'{"order":%d,"item":"sku-%d"}' % (i, i % 97) for i in range(2000)]
    create(broker.bootstrap, unique_topic, {"compression.type": "gzip", "compression.gzip.level": "9"})
    produce_batch(broker.bootstrap, unique_topic, encode_batch([Record(i, 1, None, v) for i, v in enumerate(values)]))
    change = ConfigEntry("compression.gzip.level", "1", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, unique_topic, incremental_configs=[change])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.incremental_alter_configs([resource])[resource].result(20)
    produce_batch(broker.bootstrap, unique_topic, encode_batch([Record(i, 1, None, v) for i, v in enumerate(values)]))
    level_9, level_1 = raw_batches(broker.bootstrap, unique_topic)
    assert level_1.size_in_bytes > level_9.size_in_bytes, (level_9.size_in_bytes, level_1.size_in_bytes)


@pytest.mark.parametrize("key, value", [("compression.gzip.level", "0"), ("compression.gzip.level", "10"), ("compression.zstd.level", "23")])
def test_a_compression_level_out_of_the_codecs_range_is_refused(broker, unique_topic, key, value) -> None:
    from confluent_kafka import KafkaError, KafkaException

    with pytest.raises(KafkaException) as refused:
        create(broker.bootstrap, unique_topic, {"compression.type": "gzip", key: value})
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG
