"""Log compaction: the last value of each key survives, tombstones go after their retention,
and a SIGKILL in the middle of cleaning loses nothing."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fastlog import _core
from fastlog.records import Record, decode_batches, encode_batch
from tests.conftest import BrokerProcess

CONFIG = {"cleanup.policy": "compact", "segment.bytes": 4096, "min.cleanable.dirty.ratio": 0.01, "delete.retention.ms": 0}


def keyed(offset: int, key: bytes, value: bytes | None) -> bytes:
    return encode_batch([Record(offset, 1000 + offset, key, value)], base_offset=offset)


def last_values(log: _core.Log) -> dict:
    """key -> (offset, value) of its last record, reading the whole log."""
    latest: dict = {}
    offsets = []
    offset = log.log_start_offset
    while (slice_ := log.read(offset, 1 << 20, max_offset=log.log_end_offset)) is not None:
        for batch in decode_batches(slice_.read()):
            for record in batch.records:
                latest[record.key] = (record.offset, record.value)
                offsets.append(record.offset)
            offset = batch.base_offset + batch.last_offset_delta + 1
    assert offsets == sorted(set(offsets)), "offsets only increase"
    return latest


def test_compaction_in_the_core(tmp_path: Path) -> None:
    log = _core.Log(tmp_path / "c-0", CONFIG)
    expected = {}
    for i in range(400):
        key = b"k%d" % (i % 20)
        value = None if i in (390, 391) else b"v%d" % i
        log.append(keyed(i, key, value))
        expected[key] = (i, value)
    for i in range(400, 460):  # filler with unique keys, so every keyed record is sealed
        log.append(keyed(i, b"filler-%d" % i, b"x" * 100))
    size = log.size_bytes
    stats = log.clean(now_ms=10**13)
    assert stats is not None and stats[3] > 0
    assert log.size_bytes < size / 2
    latest = last_values(log)
    for key, (offset, value) in expected.items():
        if value is None:
            assert key not in latest, "tombstone removed after delete.retention.ms"
        else:
            assert latest[key] == (offset, value)
    log.close()
    again = _core.Log(tmp_path / "c-0", CONFIG)
    assert again.repairs == [] and last_values(again) == latest


CLEANER = """
import sys
from fastlog import _core
from tests.delivery.test_compaction import CONFIG, keyed
log = _core.Log(sys.argv[1], CONFIG, recovery_point=int(sys.argv[2]))
print("ready", flush=True)
while True:
    for _ in range(200):
        offset = log.log_end_offset
        log.append(keyed(offset, b"k%d" % (offset % 37), b"value-%d" % offset))
    log.flush()
    print(log.log_end_offset, flush=True)
    log.clean(now_ms=10**13)
"""


def test_sigkill_during_cleaning_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(11)
    path = tmp_path / "c-0"
    root = Path(__file__).resolve().parents[2]
    flushed = 0
    kills = 0
    deadline = time.monotonic() + 90
    while kills < 20 and time.monotonic() < deadline:
        process = subprocess.Popen([sys.executable, "-c", CLEANER, str(path), "0"], stdout=subprocess.PIPE, cwd=root, text=True)
        assert process.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.5))
        process.send_signal(signal.SIGKILL)
        out, _ = process.communicate(timeout=30)
        reports = [int(line) for line in out.split() if line.isdigit()]
        flushed = max([flushed, *reports])
        log = _core.Log(path, CONFIG)
        end = log.log_end_offset
        assert end >= flushed
        latest = last_values(log)
        # Each key's newest record before the log end is there, with its value.
        for k in range(37):
            newest = max((o for o in range(max(0, end - 37), end) if o % 37 == k), default=None)
            if newest is not None:
                assert latest[b"k%d" % k] == (newest, b"value-%d" % newest), (k, newest)
        assert log.append(keyed(end, b"k%d" % (end % 37), b"value-%d" % end))[0] == end
        log.close()
        kills += 1
    assert kills >= 20


def test_compacted_topic_with_real_clients(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", {"log.cleaner.backoff.ms": "200"}).start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        configs = {k: str(v) for k, v in CONFIG.items()}
        for future in admin.create_topics([NewTopic("table", 1, 1, config=configs)]).values():
            future.result(20)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        expected = {}
        for i in range(600):
            key = b"user-%d" % (i % 30)
            value = None if i >= 590 else b"profile-%d" % i
            producer.produce("table", value, key=key, partition=0)
            expected[key] = value
            if i % 50 == 0:
                producer.flush(10)
        # Filler in batches of its own, so every keyed record ends up in a sealed segment (the
        # active segment is never cleaned).
        for i in range(60):
            producer.produce("table", b"f" * 200, key=b"filler-%d" % i, partition=0)
            assert producer.flush(20) == 0
        # The cleaner runs every 200 ms; wait for a pass that saw everything.
        deadline = time.monotonic() + 30
        while True:
            seen, counts = consume_table(broker.bootstrap)
            compacted = all(
                (key not in seen) if value is None else (seen.get(key) == value and counts[key] == 1)
                for key, value in expected.items()
            )
            if compacted or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert "cleaned table-0" in broker.log_text()
        for key, value in expected.items():
            if value is None:
                assert key not in seen, key
            else:
                assert seen[key] == value and counts[key] == 1, key
    finally:
        broker.stop()


def consume_table(bootstrap: str) -> tuple[dict, dict]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "enable.auto.commit": False})
    consumer.assign([TopicPartition("table", 0, 0)])
    seen: dict = {}
    counts: dict = {}
    idle = time.monotonic()
    while time.monotonic() - idle < 1:
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None:
            seen[msg.key()] = msg.value()
            counts[msg.key()] = counts.get(msg.key(), 0) + 1
            idle = time.monotonic()
    consumer.close()
    return seen, counts
