"""Log compaction: the last value of each key survives, tombstones go after their retention,
and a SIGKILL in the middle of cleaning loses nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from fastlog import _core
from fastlog.records import Compression, Record, decode_batches, encode_batch
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


def log_in_the_middle_of_a_pass(path: Path) -> tuple[_core.Log, threading.Thread, dict]:
    """A compacted log of six 4 MiB segments of gzip batches, each losing a record to a later
    one, whose compaction pass runs on a thread until it has written its first `.cleaned`
    file: five segments (a second or more of deflate) are still to be rewritten."""
    config = {**CONFIG, "segment.bytes": 4 << 20}
    log = _core.Log(path, config)
    rng = random.Random(5)
    offset = 0
    while log.size_bytes < 6 * (4 << 20) + 1:
        # Values that do not compress, so that the pass spends its time deflating.
        records = [Record(offset + i, 1000, b"hot" if i == 0 else b"k%d" % (offset + i), rng.randbytes(1000)) for i in range(100)]
        log.append(encode_batch(records, base_offset=offset, compression=Compression.GZIP))
        offset += 100
    outcome: dict = {}

    def clean() -> None:
        outcome["stats"] = log.clean(now_ms=10**13)

    thread = threading.Thread(target=clean)
    thread.start()
    deadline = time.monotonic() + 60
    while not any(name.endswith(".cleaned") for name in os.listdir(path)):
        assert thread.is_alive() and time.monotonic() < deadline, "the pass ended before it wrote a segment"
        time.sleep(0.001)
    return log, thread, outcome


def test_deleting_a_log_gives_up_its_compaction_pass(tmp_path: Path) -> None:
    path = tmp_path / "c-0"
    log, thread, outcome = log_in_the_middle_of_a_pass(path)
    log.delete()  # waits for the pass, which writes files in the directory
    thread.join(30)
    assert not thread.is_alive()
    assert outcome == {"stats": None}, "the pass stopped at its next batch, not after the last segment"
    assert not path.exists()


def test_closing_a_log_gives_up_its_compaction_pass_and_keeps_every_record(tmp_path: Path) -> None:
    path = tmp_path / "c-0"
    log, thread, outcome = log_in_the_middle_of_a_pass(path)
    end = log.log_end_offset
    log.close()
    thread.join(30)
    assert not thread.is_alive() and outcome == {"stats": None}
    assert log.clean(now_ms=10**13) is None, "a closed log is not cleaned"
    again = _core.Log(path, {**CONFIG, "segment.bytes": 4 << 20})
    assert again.repairs == [] and again.log_end_offset == end
    assert not [name for name in os.listdir(path) if name.endswith((".cleaned", ".swap"))]
    assert len(last_values(again)) == end - end // 100 + 1, "nothing was cleaned: every key's record is there"
    again.close()


def test_a_broker_that_stops_gives_up_its_compaction_pass(tmp_path: Path) -> None:
    """SIGTERM in the middle of a pass over 32 MiB: the broker does not wait for the pass (it
    would log "cleaned big-0"), stops cleanly, and comes back with every record."""
    data = tmp_path / "data"
    broker = BrokerProcess(data, {"log.cleaner.backoff.ms": "100"}).start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        segment = {"segment.bytes": str(4 << 20)}
        for future in admin.create_topics([NewTopic("big", 1, 1, config=segment)]).values():
            future.result(20)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "gzip", "linger.ms": 50})
        rng = random.Random(3)
        count = 8 * 4 * 1024
        for i in range(count):  # values that do not compress, so that the pass takes seconds
            producer.produce("big", rng.randbytes(1000), key=b"hot" if i % 100 == 0 else b"k%d" % i, partition=0)
            if i % 1000 == 0:
                producer.poll(0)
        assert producer.flush(60) == 0
        compact = [ConfigEntry(k, str(v), incremental_operation=AlterConfigOpType.SET) for k, v in CONFIG.items() if k != "segment.bytes"]
        for future in admin.incremental_alter_configs([ConfigResource("topic", "big", incremental_configs=compact)]).values():
            future.result(20)
        deadline = time.monotonic() + 60
        while not any(name.endswith(".cleaned") for name in os.listdir(data / "big-0")):
            assert time.monotonic() < deadline and "cleaned big-0" not in broker.log_text(), "no pass seen under way"
            time.sleep(0.002)
        assert broker.stop() == 0
        text = broker.log_text()
        assert "broker stopped" in text and "cleaned big-0" not in text and "cleaning big-0 failed" not in text
        broker.start()
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g"})
        assert consumer.get_watermark_offsets(TopicPartition("big", 0), timeout=20) == (0, count)
        consumer.close()
    finally:
        broker.stop()


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


@pytest.mark.parametrize("dedupe_buffer", [None, "240"], ids=["default", "key-map-of-9-keys"])
def test_compacted_topic_with_real_clients(tmp_path: Path, dedupe_buffer: str | None) -> None:
    """With a key map of 9 keys (240 bytes of `log.cleaner.dedupe.buffer.size`, 24 bytes a key,
    0.9 of it used), each pass cleans only part of the dirty records; passes go on until the
    topic is as compacted as with the default map."""
    overrides = {"log.cleaner.backoff.ms": "200"}
    if dedupe_buffer is not None:
        overrides["log.cleaner.dedupe.buffer.size"] = dedupe_buffer
    broker = BrokerProcess(tmp_path / "data", overrides).start()
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
