"""Real Kafka clients against a real broker process: produce, consume, offsets, restarts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition as KTopicPartition

TIMEOUT = 20


def kafka_python_roundtrip(bootstrap: str, topic: str, messages: list[tuple]) -> list:
    producer = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    futures = [
        producer.send(topic, key=k, value=v, headers=h, timestamp_ms=ts, partition=0) for k, v, h, ts in messages
    ]
    producer.flush(TIMEOUT)
    offsets = [f.get(timeout=TIMEOUT).offset for f in futures]
    producer.close(TIMEOUT)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, consumer_timeout_ms=3000)
    consumer.assign([KTopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    got = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < len(messages) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got += [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in records]
    consumer.close()
    return offsets, got


def test_kafka_python_keys_headers_timestamps_nulls(broker, unique_topic) -> None:
    messages = [
        (b"k1", b"v1", [("h1", b"x")], 1_700_000_000_000),
        (None, b"no key", [], 1_700_000_000_001),
        (b"tombstone", None, [("a", b"1"), ("b", b"")], 1_700_000_000_002),
        (b"", b"", [], 1_700_000_000_003),
    ]
    offsets, got = kafka_python_roundtrip(broker.bootstrap, unique_topic, messages)
    assert offsets == [0, 1, 2, 3]
    assert got == [(i, k, v, h, ts) for i, (k, v, h, ts) in enumerate(messages)]


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_confluent_kafka_roundtrip(broker, unique_topic, compression) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": compression, "linger.ms": 5})
    delivered = []
    for i in range(200):
        producer.produce(
            unique_topic,
            key=b"key-%d" % i,
            value=b"value-%d" % i * 10,
            headers=[("n", str(i).encode())],
            on_delivery=lambda err, msg: delivered.append((err, msg.offset())),
        )
    assert producer.flush(TIMEOUT) == 0
    assert [err for err, _ in delivered if err] == []
    assert sorted(o for _, o in delivered) == list(range(200))
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(unique_topic, 0, 0)])
    got = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < 200 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None:
            assert msg.error() is None, msg.error()
            got.append((msg.offset(), msg.key(), msg.value(), msg.headers()))
    consumer.close()
    assert got == [(i, b"key-%d" % i, b"value-%d" % i * 10, [("n", str(i).encode())]) for i in range(200)]


def test_aiokafka_roundtrip(broker, unique_topic) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition as ATopicPartition

    async def main() -> list:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, compression_type="gzip")
        await producer.start()
        try:
            for i in range(50):
                await producer.send_and_wait(unique_topic, b"aio-%d" % i, key=b"k", partition=0)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            tp = ATopicPartition(unique_topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            got = []
            while len(got) < 50:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), TIMEOUT)
                got += [(m.offset, m.value) for msgs in batch.values() for m in msgs]
            end = await consumer.end_offsets([tp])
            return got, end[tp]
        finally:
            await consumer.stop()

    got, end = asyncio.run(asyncio.wait_for(main(), 60))
    assert got == [(i, b"aio-%d" % i) for i in range(50)]
    assert end == 50


def test_kcat_produce_consume_and_metadata(broker, unique_topic) -> None:
    lines = "".join(f"key{i}:value{i}\n" for i in range(20))
    subprocess.run(
        ["kcat", "-b", broker.bootstrap, "-P", "-t", unique_topic, "-K:", "-p", "0"],
        input=lines.encode(),
        check=True,
        timeout=TIMEOUT,
    )
    out = subprocess.run(
        ["kcat", "-b", broker.bootstrap, "-C", "-t", unique_topic, "-e", "-f", "%o %k %s\n"],
        capture_output=True,
        check=True,
        timeout=TIMEOUT,
    ).stdout.decode()
    assert out.splitlines() == [f"{i} key{i} value{i}" for i in range(20)]
    meta = json.loads(
        subprocess.run(["kcat", "-b", broker.bootstrap, "-L", "-J"], capture_output=True, check=True, timeout=TIMEOUT).stdout
    )
    topics = {t["topic"]: t for t in meta["topics"]}
    assert unique_topic in topics
    assert topics[unique_topic]["partitions"][0]["leader"] == 0
    assert meta["brokers"] == [{"id": 0, "name": broker.bootstrap}]


def test_empty_topic_consumes_nothing_and_list_offsets(broker, unique_topic) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    # The producer's metadata request auto-creates the topic.
    assert producer.partitions_for(unique_topic) == {0}
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    assert consumer.partitions_for_topic(unique_topic) == {0}
    tp = KTopicPartition(unique_topic, 0)
    assert consumer.beginning_offsets([tp]) == {tp: 0}
    assert consumer.end_offsets([tp]) == {tp: 0}
    consumer.assign([tp])
    assert consumer.poll(timeout_ms=300) == {}
    for i, ts in enumerate([1000, 2000, 2000, 5000]):
        producer.send(unique_topic, b"v%d" % i, timestamp_ms=ts, partition=0)
    producer.flush(TIMEOUT)
    producer.close()
    assert consumer.end_offsets([tp]) == {tp: 4}
    found = consumer.offsets_for_times({tp: 1500})[tp]
    assert (found.offset, found.timestamp) == (1, 2000)
    assert consumer.offsets_for_times({tp: 5000})[tp].offset == 3
    assert consumer.offsets_for_times({tp: 5001})[tp] is None
    consumer.close()


def test_restart_keeps_topics_and_messages(fresh_broker, unique_topic) -> None:
    messages = [(b"k%d" % i, b"v%d" % i, [], 1_000 + i) for i in range(30)]
    kafka_python_roundtrip(fresh_broker.bootstrap, unique_topic, messages)
    fresh_broker.restart()
    consumer = KafkaConsumer(bootstrap_servers=fresh_broker.bootstrap, group_id=None, auto_offset_reset="earliest")
    tp = KTopicPartition(unique_topic, 0)
    consumer.assign([tp])
    got = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < 30 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got += [r.value for r in records]
    assert got == [v for _, v, _, _ in messages]
    assert consumer.end_offsets([tp]) == {tp: 30}
    consumer.close()
    assert "stopped; logs flushed and closed" in fresh_broker.log_text()


def test_sigkill_loses_nothing_acknowledged_with_flush_every_message(tmp_path, unique_topic) -> None:
    from tests.conftest import BrokerProcess

    broker = BrokerProcess(tmp_path / "data", {"log.flush.interval.messages": "1"}).start()
    try:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        futures = [producer.send(unique_topic, b"m%d" % i, partition=0) for i in range(100)]
        producer.flush(TIMEOUT)
        acked = [f.get(TIMEOUT).offset for f in futures]
        producer.close()
        broker.kill()
        broker.start()
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
        tp = KTopicPartition(unique_topic, 0)
        assert consumer.end_offsets([tp])[tp] >= max(acked) + 1
        consumer.close()
    finally:
        broker.stop()
