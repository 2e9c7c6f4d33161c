"""Committed offsets and groups survive broker restarts (SIGTERM and SIGKILL), being
replayed from `__consumer_offsets`; lag is the log end minus the committed offset."""

from __future__ import annotations

import time

from confluent_kafka import Consumer
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KTP

from fastlog.group_coordinator import lag_rows
from tests.conftest import BrokerProcess
from tests.groups.helpers import GROUP_OVERRIDES, TIMEOUT, create_topic, produce


def consume_all(bootstrap: str, topic: str, group: str, expected: int) -> list[int]:
    """A fresh member of `group` consumes `expected` messages, commits them and leaves."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 3000})
    consumer.subscribe([topic])
    values = []
    deadline = time.monotonic() + TIMEOUT
    while len(values) < expected and time.monotonic() < deadline:
        for m in consumer.consume(100, 0.2):
            assert m.error() is None, m.error()
            values.append(int(m.value()))
    consumer.commit(asynchronous=False)
    time.sleep(0.5)
    # nothing beyond what was expected
    values += [int(m.value()) for m in consumer.consume(100, 0.5) if m.error() is None]
    consumer.close()
    return sorted(values)


def test_new_consumer_resumes_after_restart_and_after_sigkill(tmp_path, unique_topic) -> None:
    broker = BrokerProcess(tmp_path / "data", GROUP_OVERRIDES).start()
    try:
        group = "g-" + unique_topic
        create_topic(broker.bootstrap, unique_topic)
        produce(broker.bootstrap, unique_topic, 0, 120)
        assert consume_all(broker.bootstrap, unique_topic, group, 120) == list(range(120))
        produce(broker.bootstrap, unique_topic, 120, 60)
        broker.restart()
        assert consume_all(broker.bootstrap, unique_topic, group, 60) == list(range(120, 180))
        produce(broker.bootstrap, unique_topic, 180, 60)
        broker.kill()  # SIGKILL: only flushed, acknowledged commits count
        broker.start()
        assert consume_all(broker.bootstrap, unique_topic, group, 60) == list(range(180, 240))
        assert "loaded" in broker.log_text()
    finally:
        broker.stop()


def test_lag_from_offset_fetch_and_end_offsets(tmp_path, unique_topic) -> None:
    broker = BrokerProcess(tmp_path / "data", GROUP_OVERRIDES).start()
    try:
        create_topic(broker.bootstrap, unique_topic)
        produce(broker.bootstrap, unique_topic, 0, 60)  # ten per partition
        group = "lag-" + unique_topic
        committer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
        wanted = {KTP(unique_topic, p): OffsetAndMetadata(p, "", -1) for p in range(5)}  # partition 5: nothing
        committer.commit(wanted)
        ends = committer.end_offsets([KTP(unique_topic, p) for p in range(6)])
        committer.close()
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        committed = admin.list_group_offsets(group)[group]
        described = admin.describe_groups([group])
        admin.close()
        offsets = {(tp.topic, tp.partition): om.offset for tp, om in committed.items()}
        rows = lag_rows(offsets, {(tp.topic, tp.partition): end for tp, end in ends.items()})
        assert [(r.partition, r.committed, r.log_end, r.lag) for r in rows] == [
            (p, p, 10, 10 - p) for p in range(5)
        ] + [(5, -1, 10, None)]
        assert described[group]["group_state"] == "Empty"
    finally:
        broker.stop()
