"""Clients other than confluent-kafka against a three-node cluster (issue 14 asks that
confluent-kafka, kafka-python, aiokafka and kcat work unchanged): each sees the brokers and the
topics' leaders, produces to topics that live on different brokers, and reads back in a group
with a commit. Real processes, bounded waits."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer

from tests.cluster.helpers import Cluster, agreed, wait_for

TIMEOUT = 20
TOPICS = ["east", "west", "north"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = Cluster(tmp_path_factory.mktemp("cluster")).start()
    wait_for(lambda: agreed(started, [1, 2, 3], {1, 2, 3}), "the cluster settles")
    admin = AdminClient({"bootstrap.servers": started.bootstrap})
    for future in admin.create_topics([NewTopic(t, 2, 3) for t in TOPICS]).values():
        future.result(timeout=TIMEOUT)
    yield started
    started.stop()


def test_kcat_lists_the_brokers_and_each_topics_leader(cluster) -> None:
    out = subprocess.run(["kcat", "-b", cluster.nodes[3].bootstrap, "-L", "-J"], capture_output=True, text=True, timeout=TIMEOUT, check=True)
    metadata = json.loads(out.stdout)
    assert sorted(b["id"] for b in metadata["brokers"]) == [1, 2, 3]
    leaders = {t["topic"]: {p["leader"] for p in t["partitions"]} for t in metadata["topics"] if t["topic"] in TOPICS}
    assert set(leaders) == set(TOPICS) and all(l <= {1, 2, 3} for l in leaders.values())
    assert set().union(*leaders.values()) == {1, 2, 3}, "the partitions are led by all three brokers"
    for topic in (t for t in metadata["topics"] if t["topic"] in TOPICS):
        for partition in topic["partitions"]:
            assert sorted(r["id"] for r in partition["replicas"]) == [1, 2, 3], partition
            assert sorted(r["id"] for r in partition["isrs"]) == [1, 2, 3], partition
    for topic in TOPICS:
        subprocess.run(["kcat", "-b", cluster.bootstrap, "-P", "-t", topic, "-K:"], input="k:kcat\n", text=True, timeout=TIMEOUT, check=True)
        got = subprocess.run(["kcat", "-b", cluster.bootstrap, "-C", "-t", topic, "-e", "-f", "%k %s\n"], capture_output=True, text=True, timeout=TIMEOUT, check=True)
        assert "k kcat" in got.stdout.splitlines()


def test_kafka_python_produces_across_brokers_and_a_group_resumes(cluster) -> None:
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", request_timeout_ms=TIMEOUT * 1000)
    for topic in TOPICS:
        for i in range(5):
            producer.send(topic, key=b"kp", value=b"%s-%d" % (topic.encode(), i)).get(timeout=TIMEOUT)
    producer.close(TIMEOUT)

    def read(count: int) -> list[bytes]:
        consumer = KafkaConsumer(*TOPICS, bootstrap_servers=cluster.bootstrap, group_id="kafka-python", auto_offset_reset="earliest",
                                 enable_auto_commit=False, consumer_timeout_ms=3000)
        got: list[bytes] = []
        deadline = time.monotonic() + 40
        while len(got) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got += [r.value for r in records if r.key == b"kp"]
        consumer.commit()
        consumer.close()
        return got

    first = read(15)
    assert sorted(first) == sorted(b"%s-%d" % (t.encode(), i) for t in TOPICS for i in range(5))
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap)
    producer.send(TOPICS[1], key=b"kp", value=b"after").get(timeout=TIMEOUT)
    producer.close(TIMEOUT)
    assert read(1) == [b"after"]


def test_aiokafka_produces_and_consumes_across_brokers(cluster) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def main() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap)
        await producer.start()
        try:
            for topic in TOPICS:
                await producer.send_and_wait(topic, b"aio-" + topic.encode(), key=b"aio")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(*TOPICS, bootstrap_servers=cluster.bootstrap, group_id="aiokafka", auto_offset_reset="earliest")
        await consumer.start()
        got: list[bytes] = []
        try:
            deadline = time.monotonic() + 40
            while len(got) < 3 and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                got += [r.value for records in batches.values() for r in records if r.key == b"aio"]
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(asyncio.wait_for(main(), 90))
    assert sorted(got) == sorted(b"aio-" + t.encode() for t in TOPICS)
