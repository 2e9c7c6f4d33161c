"""`fastlog mirror` between brokers in separate processes: a growing topic mirrored while the
mirror is SIGKILLed several times arrives whole (every record, in order per partition, key,
value, headers and timestamp kept; at-least-once: copies of a round may repeat); new partitions
and changed configs follow; active-active a<->b makes no loop; bad settings are refused."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from confluent_kafka import Producer

from fastlog.client import RESOURCE_TOPIC, Client
from tests.conftest import BrokerProcess

TIMEOUT = 60.0
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def two_brokers(tmp_path: Path) -> Iterator[tuple[BrokerProcess, BrokerProcess]]:
    a = BrokerProcess(tmp_path / "a").start()
    b = BrokerProcess(tmp_path / "b").start()
    yield a, b
    a.stop()
    b.stop()


def mirror_config(tmp_path: Path, a: BrokerProcess, b: BrokerProcess, **extra: str) -> Path:
    settings = {"clusters": "a, b", "a.bootstrap.servers": a.bootstrap, "b.bootstrap.servers": b.bootstrap, "a->b.enabled": "true",
                "refresh.topics.interval.seconds": "0.5", **extra}
    path = tmp_path / "mirror.properties"
    path.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    return path


def start_mirror(config: Path, log: Path) -> subprocess.Popen:
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "fastlog", "mirror", "--config", str(config), "--report-seconds", "1"],
                                stdout=out, stderr=subprocess.STDOUT)


def wait_for(condition: Callable[[], bool], what: str, seconds: float = TIMEOUT) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds:g}s: {what}")


def read_all(bootstrap: str, topic: str) -> dict[int, list[tuple]]:
    """Every record of every partition: (key, value, headers, timestamp)."""
    with Client(bootstrap) as client:
        out: dict[int, list[tuple]] = {}
        for partition, (start, end) in client.offsets_of(topic).items():
            records, offset = [], start
            while offset < end:
                fetched = client.fetch({(topic, partition): offset})[(topic, partition)]
                records += [(r.key, r.value, tuple(tuple(h) for h in r.headers), r.timestamp) for r in fetched.records]
                offset = max(fetched.next_offset, offset + 1) if fetched.records or fetched.next_offset > offset else end
            out[partition] = records
        return out


def first_copies(records: list[tuple]) -> list[tuple]:
    """The records in order with repeats (a round copied again after a kill) left out."""
    seen, out = set(), []
    for record in records:
        if record not in seen:
            seen.add(record)
            out.append(record)
    return out


def count(bootstrap: str, topic: str) -> int:
    with Client(bootstrap) as client:
        return sum(end - start for start, end in client.offsets_of(topic).values())


def test_a_mirror_killed_mid_stream_loses_nothing(two_brokers, tmp_path: Path) -> None:
    a, b = two_brokers
    with Client(a.bootstrap) as client:
        client.create_topic("orders", 3)
    total = 6000
    stop_producing = threading.Event()

    def produce() -> None:
        producer = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 5})
        for i in range(total):
            producer.produce("orders", key=f"k{i % 17}".encode(), value=f"order-{i}".encode(), headers=[("n", str(i).encode())])
            if i % 100 == 0:  # ~6 s in all: the kills land mid-stream
                producer.poll(0)
                time.sleep(0.1)
            if stop_producing.is_set():
                break
        assert producer.flush(30) == 0

    producing = threading.Thread(target=produce)
    producing.start()
    config = mirror_config(tmp_path, a, b)
    log = tmp_path / "mirror.log"
    mirror = start_mirror(config, log)
    try:
        for started in range(1, 4):  # SIGKILL mid-stream, once copying, and start again
            wait_for(lambda: log.read_text().count("mirroring a->b") == started, "the mirror runs")
            time.sleep(1.0)
            assert producing.is_alive(), "the records were all produced before the kill"
            mirror.send_signal(signal.SIGKILL)
            mirror.wait(10)
            mirror = start_mirror(config, log)
        producing.join(60)
        wait_for(lambda: log.read_text().count("mirroring a->b") == 4, "the mirror runs")
        wait_for(lambda: count(b.bootstrap, "a.orders") >= total, "every record on the target")
        source, target = read_all(a.bootstrap, "orders"), read_all(b.bootstrap, "a.orders")
        assert sum(len(r) for r in source.values()) == total
        for partition, records in source.items():
            assert first_copies(target[partition]) == records, f"partition {partition}"
        duplicates = sum(len(target[p]) - len(source[p]) for p in source)
        print(f"{duplicates} records copied twice across 3 kills")
    finally:
        stop_producing.set()
        mirror.send_signal(signal.SIGTERM)
        assert mirror.wait(20) == 0, log.read_text()[-2000:]


def test_new_partitions_and_configs_follow(two_brokers, tmp_path: Path) -> None:
    a, b = two_brokers
    with Client(a.bootstrap) as client:
        client.create_topic("growing", 1, configs={"retention.ms": "3600000"})
        client.create_topic("skipped.internal", 1)
    mirror = start_mirror(mirror_config(tmp_path, a, b), tmp_path / "mirror.log")
    try:
        with Client(b.bootstrap) as target, Client(a.bootstrap) as source:
            def target_state() -> tuple[int, str]:
                entries = {e.name: e.value for e in target.describe_configs(RESOURCE_TOPIC, "a.growing")}
                return len(target.metadata(["a.growing"]).topics["a.growing"].partitions), entries["retention.ms"]

            wait_for(lambda: target_state() == (1, "3600000"), "a.growing made with the source's partitions and configs")
            source.create_partitions("growing", 3)
            source.alter_configs(RESOURCE_TOPIC, "growing", {"retention.ms": "7200000"})
            wait_for(lambda: target_state() == (3, "7200000"), "new partitions and the changed config on the target")
            assert "a.skipped.internal" not in target.metadata().topics  # topics.exclude's default
    finally:
        mirror.send_signal(signal.SIGTERM)
        mirror.wait(20)


def test_active_active_makes_no_loop(two_brokers, tmp_path: Path) -> None:
    a, b = two_brokers
    with Client(a.bootstrap) as client:
        client.create_topic("orders", 1)
    with Client(b.bootstrap) as client:
        client.create_topic("events", 1)
    for bootstrap, topic in ((a.bootstrap, "orders"), (b.bootstrap, "events")):
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(50):
            producer.produce(topic, f"{topic}-{i}".encode())
        assert producer.flush(30) == 0
    mirror = start_mirror(mirror_config(tmp_path, a, b, **{"b->a.enabled": "true"}), tmp_path / "mirror.log")
    try:
        wait_for(lambda: count(b.bootstrap, "a.orders") == 50 and count(a.bootstrap, "b.events") == 50, "both directions copied")
        time.sleep(2.0)  # several topic refreshes: a loop would show by now
        with Client(a.bootstrap) as source, Client(b.bootstrap) as target:
            assert sorted(t for t in source.metadata().topics if not t.startswith("__")) == ["b.events", "orders"]
            assert sorted(t for t in target.metadata().topics if not t.startswith("__")) == ["a.orders", "events"]
    finally:
        mirror.send_signal(signal.SIGTERM)
        mirror.wait(20)


@pytest.mark.parametrize("settings, message", [
    ("clusters = a\n", "two aliases"),
    ("clusters = a, b\na.bootstrap.servers = x:1\nb.bootstrap.servers = y:1\n", "no flow enabled"),
    ("clusters = a, b\na.bootstrap.servers = x:1\na->b.enabled = true\n", "b.bootstrap.servers"),
    ("clusters = a, b\na.bootstrap.servers = x:1\nb.bootstrap.servers = y:1\na->b.enabled = yes\n", "true or false"),
    ("clusters = a, b\na.bootstrap.servers = x:1\nb.bootstrap.servers = y:1\na->b.enabled = true\na->b.topics = (\n", "a->b.topics"),
    ("clusters = a, b\na.bootstrap.servers = x:1\nb.bootstrap.servers = y:1\na->b.enabled = true\nreplication.policy.class = Foo\n", "replication.policy.class"),
])
def test_bad_settings_are_refused(tmp_path: Path, settings: str, message: str) -> None:
    path = tmp_path / "mirror.properties"
    path.write_text(settings)
    done = subprocess.run([sys.executable, "-m", "fastlog", "mirror", "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert message in done.stderr, done.stderr
