"""`fastlog mirror` between brokers in separate processes: a growing topic mirrored while the
mirror is SIGKILLed several times arrives whole (every record, in order per partition, key,
value, headers and timestamp kept; at-least-once: copies of a round may repeat; exactly-once
with `exactly.once.source.support=enabled`, also when a kill cuts a round short); the source's
aborted transactions are not copied; new partitions and changed configs follow; active-active
a<->b makes no loop; bad settings are refused."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest
from confluent_kafka import Producer

from fastlog.client import RESOURCE_TOPIC, Client
from tests.conftest import BrokerProcess, free_port
from tests.delivery.proxy import ChaosProxy

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


def start_mirror(config: Path, log: Path, *extra: str) -> subprocess.Popen:
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "fastlog", "mirror", "--config", str(config), "--report-seconds", "1", *extra],
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


def read_all(bootstrap: str, topic: str, isolation_level: int = 0) -> dict[int, list[tuple]]:
    """Every record of every partition: (key, value, headers, timestamp); with isolation level
    1 (read_committed), those of committed transactions only."""
    with Client(bootstrap) as client:
        out: dict[int, list[tuple]] = {}
        for partition, (start, end) in client.offsets_of(topic).items():
            records, offset = [], start
            while offset < end:
                fetched = client.fetch({(topic, partition): offset}, isolation_level=isolation_level)[(topic, partition)]
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


def caught_up(source: str, target: str, topic: str, alias: str = "a") -> bool:
    """Whether the mirror recorded progress up to the source's end of every partition (a count
    on the target could be reached by repeated copies before the last records arrive)."""
    remote = f"{alias}.{topic}"
    with Client(source) as s, Client(target) as t:
        ends = {p: end for p, (_, end) in s.offsets_of(topic).items()}
        recorded = {c.partition: c.offset for c in t.committed_offsets(f"mm2-offsets.{alias}.internal", [(remote, p) for p in ends])}
    return all(recorded.get(p, -1) >= end for p, end in ends.items())


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
    mirror = start_mirror(config, log, "--worker-id", "w1")  # restarted, it takes its partitions back at once
    try:
        for started in range(1, 4):  # SIGKILL mid-stream, once copying, and start again
            wait_for(lambda: log.read_text().count("mirroring a->b") == started, "the mirror runs")
            time.sleep(1.0)
            assert producing.is_alive(), "the records were all produced before the kill"
            mirror.send_signal(signal.SIGKILL)
            mirror.wait(10)
            mirror = start_mirror(config, log, "--worker-id", "w1")
        producing.join(60)
        wait_for(lambda: log.read_text().count("mirroring a->b") == 4, "the mirror runs")
        wait_for(lambda: caught_up(a.bootstrap, b.bootstrap, "orders"), "every record on the target")
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


def test_exactly_once_a_mirror_killed_mid_stream_copies_each_record_once(two_brokers, tmp_path: Path) -> None:
    """exactly.once.source.support=enabled: each round's copies and progress in one transaction
    of the target; a read_committed reader of the target sees every source record exactly once,
    in order, across SIGKILLs (the rounds a kill cut short are aborted)."""
    a, b = two_brokers
    with Client(a.bootstrap) as client:
        client.create_topic("orders", 3)
    total = 4000
    producer = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 5})

    def produce(start: int, end: int) -> None:
        for i in range(start, end):
            producer.produce("orders", key=f"k{i % 17}".encode(), value=f"order-{i}".encode())
        assert producer.flush(30) == 0

    produce(0, total // 2)
    config = mirror_config(tmp_path, a, b, **{"exactly.once.source.support": "enabled"})
    log = tmp_path / "mirror.log"
    mirror = start_mirror(config, log, "--worker-id", "w1")
    try:
        for started in range(1, 4):
            wait_for(lambda: log.read_text().count("mirroring a->b") == started, "the mirror runs")
            wait_for(lambda: count(b.bootstrap, "a.orders") > 0, "copies on the target")
            produce(total // 2 + (started - 1) * 500, total // 2 + started * 500)
            time.sleep(0.3)
            mirror.send_signal(signal.SIGKILL)
            mirror.wait(10)
            mirror = start_mirror(config, log, "--worker-id", "w1")
        produce(total // 2 + 1500, total)
        wait_for(lambda: caught_up(a.bootstrap, b.bootstrap, "orders"), "every record on the target")
        source, target = read_all(a.bootstrap, "orders"), read_all(b.bootstrap, "a.orders", isolation_level=1)
        assert sum(len(r) for r in source.values()) == total
        for partition, records in source.items():
            assert target[partition] == records, f"partition {partition}: {len(target[partition])} copies of {len(records)}"
        everything = read_all(b.bootstrap, "a.orders")
        print(f"{sum(len(r) for r in everything.values()) - total} records in aborted rounds across 3 kills")
    finally:
        mirror.send_signal(signal.SIGTERM)
        assert mirror.wait(20) == 0, log.read_text()[-2000:]


def test_exactly_once_a_round_cut_short_is_aborted_not_repeated(tmp_path: Path) -> None:
    """A kill in the middle of a round, for sure: the target's answers are held back (the
    mirror's batches are appended inside its transaction, the mirror waits), the mirror is
    SIGKILLed, and the next one aborts what it left: the target holds those records twice, but a
    read_committed reader sees each once."""
    a = BrokerProcess(tmp_path / "a").start()
    b = BrokerProcess(tmp_path / "b")
    proxy = ChaosProxy(b.port).start()
    b.overrides["advertised.listeners"] = f"PLAINTEXT://127.0.0.1:{proxy.port}"
    b.start()
    mirror = None
    try:
        with Client(a.bootstrap) as client:
            client.create_topic("orders", 2)
        producer = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 5})
        for i in range(1000):
            producer.produce("orders", value=f"order-{i}".encode(), partition=i % 2)
        assert producer.flush(30) == 0
        # No heartbeats or checkpoints: they are Produces to the target on the round's thread, and
        # one whose answer the hold keeps would stop the mirror before its round appends.
        config = mirror_config(tmp_path, a, b, **{"exactly.once.source.support": "enabled", "b.bootstrap.servers": proxy.bootstrap,
                                                  "emit.heartbeats.enabled": "false", "emit.checkpoints.enabled": "false"})
        log = tmp_path / "mirror.log"
        mirror = start_mirror(config, log, "--worker-id", "w1")
        wait_for(lambda: caught_up(a.bootstrap, proxy.bootstrap, "orders"), "the first records on the target")
        before = count(b.bootstrap, "a.orders")
        proxy.hold(True)
        for i in range(1000, 1500):
            producer.produce("orders", value=f"order-{i}".encode(), partition=i % 2)
        assert producer.flush(30) == 0
        wait_for(lambda: count(b.bootstrap, "a.orders") > before, "a round appended, unanswered")
        mirror.send_signal(signal.SIGKILL)
        mirror.wait(10)
        proxy.hold(False)
        proxy.cut()
        mirror = start_mirror(config, log, "--worker-id", "w1")
        wait_for(lambda: caught_up(a.bootstrap, proxy.bootstrap, "orders"), "every record on the target")
        source, target = read_all(a.bootstrap, "orders"), read_all(proxy.bootstrap, "a.orders", isolation_level=1)
        for partition, records in source.items():
            assert target[partition] == records, f"partition {partition}: {len(target[partition])} for {len(records)}"
        everything = read_all(proxy.bootstrap, "a.orders")
        assert sum(len(r) for r in everything.values()) > 1500, "the cut-short round's copies are there, aborted"
    finally:
        if mirror is not None:
            mirror.send_signal(signal.SIGKILL)
            mirror.wait(10)
        proxy.close()
        a.stop()
        b.stop()


def test_aborted_transactions_of_the_source_are_not_copied(two_brokers, tmp_path: Path) -> None:
    a, b = two_brokers
    with Client(a.bootstrap) as client:
        client.create_topic("payments", 1)
    producer = Producer({"bootstrap.servers": a.bootstrap, "transactional.id": "payments-app"})
    producer.init_transactions(30)
    for value, commit in ((b"kept-1", True), (b"dropped", False), (b"kept-2", True)):
        producer.begin_transaction()
        producer.produce("payments", value, partition=0)
        producer.flush(30)
        producer.commit_transaction(30) if commit else producer.abort_transaction(30)
    mirror = start_mirror(mirror_config(tmp_path, a, b), tmp_path / "mirror.log")
    try:
        wait_for(lambda: caught_up(a.bootstrap, b.bootstrap, "payments"), "the mirror reached the source's end")
        assert [r[1] for r in read_all(b.bootstrap, "a.payments")[0]] == [b"kept-1", b"kept-2"]
    finally:
        mirror.send_signal(signal.SIGTERM)
        assert mirror.wait(20) == 0


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
            def data_topics(client: Client) -> list[str]:  # less the mirror's own (`.internal`) and the groups'
                return sorted(t for t in client.metadata().topics if not t.startswith("__") and not t.endswith(".internal"))

            # Each flow's heartbeats go to its target and are mirrored on once, never back.
            assert data_topics(source) == ["b.events", "b.heartbeats", "heartbeats", "orders"]
            assert data_topics(target) == ["a.heartbeats", "a.orders", "events", "heartbeats"]
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
    ("clusters = a, b\na.bootstrap.servers = x:1\nb.bootstrap.servers = y:1\na->b.enabled = true\nexactly.once.source.support = maybe\n",
     "exactly.once.source.support"),
])
def test_bad_settings_are_refused(tmp_path: Path, settings: str, message: str) -> None:
    path = tmp_path / "mirror.properties"
    path.write_text(settings)
    done = subprocess.run([sys.executable, "-m", "fastlog", "mirror", "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert message in done.stderr, done.stderr


def test_a_group_fails_over_to_the_target_without_a_gap(two_brokers, tmp_path: Path) -> None:
    """The group's offsets on the source are checkpointed (MM2's layout, in
    a.checkpoints.internal on the target) and, with sync.group.offsets.enabled, written into the
    target's idle group: a consumer of the same group on the target's a.orders goes on where
    the group stopped on the source, missing nothing."""
    from confluent_kafka import Consumer

    from fastlog.mirror.records import Checkpoint
    from fastlog.mirror.replicator import read_partition

    a, b = two_brokers
    with Client(a.bootstrap) as client:
        client.create_topic("orders", 2)
    producer = Producer({"bootstrap.servers": a.bootstrap})
    for i in range(1000):
        producer.produce("orders", key=f"k{i % 7}".encode(), value=f"o-{i}".encode())
    assert producer.flush(30) == 0

    def consume(bootstrap: str, topic: str, wanted: int) -> list[bytes]:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "billing", "auto.offset.reset": "earliest",
                             "enable.auto.commit": False})
        consumer.subscribe([topic])
        values: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT
        try:
            while len(values) < wanted and time.monotonic() < deadline:
                for message in consumer.consume(wanted - len(values), 0.5):
                    if message.error() is None:
                        values.append(message.value())
            consumer.commit(asynchronous=False)
        finally:
            consumer.close()
        return values

    on_source = consume(a.bootstrap, "orders", 400)
    config = mirror_config(tmp_path, a, b, **{"sync.group.offsets.enabled": "true", "sync.group.offsets.interval.seconds": "0.5",
                                               "emit.checkpoints.interval.seconds": "0.5"})
    metrics_port = free_port()
    mirror = start_mirror(config, tmp_path / "mirror.log", "--metrics-port", str(metrics_port))
    try:
        with Client(a.bootstrap) as source, Client(b.bootstrap) as target:
            committed = {(c.topic, c.partition): c.offset for c in source.committed_offsets("billing")}

            def synced() -> bool:
                on_target = {(c.topic, c.partition): c.offset for c in target.committed_offsets("billing")}
                return all(on_target.get((f"a.{t}", p)) == o for (t, p), o in committed.items())

            wait_for(lambda: count(b.bootstrap, "a.orders") == 1000 and synced(), "the group's offsets synced to the target")
            checkpoints = [Checkpoint.read(r.key, r.value) for r in read_partition(target, "a.checkpoints.internal", 0)]
            latest = {(c.group, c.topic, c.partition): (c.upstream, c.downstream) for c in checkpoints}
            assert {("billing", f"a.{t}", p): (o, o) for (t, p), o in committed.items()}.items() <= latest.items()

            def metric(name: str) -> float:
                text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
                return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

            assert metric('fastlog_mirror_records_total{flow="a->b"}') >= 1000
            wait_for(lambda: metric("fastlog_mirror_lag_records{") == 0 and metric("fastlog_mirror_checkpoints_total") > 0, "lag 0 in the metrics")
        mirror.send_signal(signal.SIGTERM)
        mirror.wait(20)
        on_target = consume(b.bootstrap, "a.orders", 1000 - len(on_source))
        assert sorted(on_source + on_target) == sorted(f"o-{i}".encode() for i in range(1000))  # no gap, nothing twice
    finally:
        if mirror.poll() is None:
            mirror.send_signal(signal.SIGTERM)
            mirror.wait(20)


def test_a_mirror_from_librdkafka_s_mock_cluster(tmp_path: Path) -> None:
    """Another Kafka implementation as the source: librdkafka's mock cluster (it has no
    DescribeConfigs: the topic is made on the target without the source's configs)."""
    b = BrokerProcess(tmp_path / "b").start()
    producer = Producer({"bootstrap.servers": "", "test.mock.num.brokers": 1})
    try:
        metadata = producer.list_topics("mock-orders", timeout=30)  # the mock makes it
        broker = next(iter(metadata.brokers.values()))
        partitions = len(metadata.topics["mock-orders"].partitions)
        for i in range(500):
            producer.produce("mock-orders", key=f"k{i}".encode(), value=f"m-{i}".encode(), partition=i % partitions)
        assert producer.flush(30) == 0
        settings = {"clusters": "m, b", "m.bootstrap.servers": f"{broker.host}:{broker.port}", "b.bootstrap.servers": b.bootstrap,
                    "m->b.enabled": "true", "m->b.topics": "mock-orders", "refresh.topics.interval.seconds": "0.5"}
        config = tmp_path / "mirror.properties"
        config.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        mirror = start_mirror(config, tmp_path / "mirror.log")
        try:
            wait_for(lambda: count(b.bootstrap, "m.mock-orders") == 500, "the mock's records on fastlog")
            copied = read_all(b.bootstrap, "m.mock-orders")
            assert sorted(v for records in copied.values() for _, v, _, _ in records) == sorted(f"m-{i}".encode() for i in range(500))
        finally:
            mirror.send_signal(signal.SIGTERM)
            mirror.wait(20)
    finally:
        b.stop()


def test_the_source_going_away_and_coming_back(two_brokers, tmp_path: Path) -> None:
    a, b = two_brokers
    with Client(a.bootstrap) as client:
        client.create_topic("orders", 1)

    def produce(first: int, n: int) -> None:
        producer = Producer({"bootstrap.servers": a.bootstrap})
        for i in range(first, first + n):
            producer.produce("orders", f"o-{i}".encode())
        assert producer.flush(30) == 0

    produce(0, 100)
    mirror = start_mirror(mirror_config(tmp_path, a, b), tmp_path / "mirror.log")
    try:
        wait_for(lambda: count(b.bootstrap, "a.orders") == 100, "the first records copied")
        a.stop()
        time.sleep(3)  # the mirror keeps trying
        assert mirror.poll() is None, "the mirror gave up"
        a.start()
        produce(100, 100)
        wait_for(lambda: caught_up(a.bootstrap, b.bootstrap, "orders"), "the records produced after the source came back")
        values = [v for _, v, _, _ in read_all(b.bootstrap, "a.orders")[0]]
        assert first_copies([(v,) for v in values]) == [(f"o-{i}".encode(),) for i in range(200)]
    finally:
        mirror.send_signal(signal.SIGTERM)
        mirror.wait(20)


def test_two_mirrors_share_a_flow_and_one_takes_over_when_the_other_dies(two_brokers, tmp_path: Path) -> None:
    """Mirrors of the same flow split its partitions through a group on the target; one is
    SIGKILLed while records keep coming: the other copies them all once the dead one's session
    ends, every record arrives, in order per partition."""
    a, b = two_brokers
    with Client(a.bootstrap) as client:
        client.create_topic("orders", 6)

    def produce(first: int, n: int, pause: float = 0.0) -> None:
        producer = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 5})
        for i in range(first, first + n):
            producer.produce("orders", key=f"k{i}".encode(), value=f"o-{i}".encode())
            if pause and i % 50 == 0:
                producer.poll(0)
                time.sleep(pause)
        assert producer.flush(30) == 0

    produce(0, 600)
    config = mirror_config(tmp_path, a, b)
    logs = [tmp_path / "mirror-1.log", tmp_path / "mirror-2.log"]
    mirrors = [start_mirror(config, logs[0], "--worker-id", "w1"), start_mirror(config, logs[1], "--worker-id", "w2")]
    try:
        wait_for(lambda: all("3 partitions here" in log.read_text() for log in logs), "each mirror copies 3 of the 6 partitions")
        producing = threading.Thread(target=produce, args=(600, 1200, 0.1))  # ~2.4 s of records
        producing.start()
        time.sleep(1.0)
        mirrors[1].send_signal(signal.SIGKILL)  # mid-stream
        mirrors[1].wait(10)
        producing.join(60)
        wait_for(lambda: "6 partitions here" in logs[0].read_text(), "the mirror left takes all 6 (after the session timeout)")
        wait_for(lambda: caught_up(a.bootstrap, b.bootstrap, "orders"), "every record copied")
        source, target = read_all(a.bootstrap, "orders"), read_all(b.bootstrap, "a.orders")
        assert sum(len(r) for r in source.values()) == 1800
        for partition, records in source.items():
            assert first_copies(target[partition]) == records, f"partition {partition}"
    finally:
        for mirror in mirrors:
            if mirror.poll() is None:
                mirror.send_signal(signal.SIGTERM)
                mirror.wait(20)


def test_a_chain_of_three_brokers(tmp_path: Path) -> None:
    """a->b and b->c in one mirror: a's orders reach c as b.a.orders, whole and in order."""
    brokers = {name: BrokerProcess(tmp_path / name).start() for name in "abc"}
    try:
        with Client(brokers["a"].bootstrap) as client:
            client.create_topic("orders", 2)
        producer = Producer({"bootstrap.servers": brokers["a"].bootstrap})
        for i in range(300):
            producer.produce("orders", key=f"k{i % 5}".encode(), value=f"o-{i}".encode())
        assert producer.flush(30) == 0
        settings = {"clusters": "a, b, c", **{f"{n}.bootstrap.servers": p.bootstrap for n, p in brokers.items()},
                    "a->b.enabled": "true", "b->c.enabled": "true", "refresh.topics.interval.seconds": "0.5"}
        config = tmp_path / "mirror.properties"
        config.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        mirror = start_mirror(config, tmp_path / "mirror.log")
        try:
            wait_for(lambda: caught_up(brokers["a"].bootstrap, brokers["b"].bootstrap, "orders")
                     and caught_up(brokers["b"].bootstrap, brokers["c"].bootstrap, "a.orders", alias="b"), "a's records at c")
            source, end = read_all(brokers["a"].bootstrap, "orders"), read_all(brokers["c"].bootstrap, "b.a.orders")
            assert {p: first_copies(r) for p, r in end.items()} == source
        finally:
            mirror.send_signal(signal.SIGTERM)
            mirror.wait(20)
    finally:
        for broker in brokers.values():
            broker.stop()


def test_a_partition_the_target_refuses_holds_back_only_itself(two_brokers, tmp_path: Path) -> None:
    """The target refuses every batch of a.small (its max.message.bytes is below the records):
    a.orders is still copied, once (no re-copies of the partitions that were appended), and a
    topic deleted at the source stops being mirrored without stopping the flow."""
    a, b = two_brokers
    with Client(a.bootstrap) as client:
        for topic in ("orders", "small", "temp"):
            client.create_topic(topic, 1)
    with Client(b.bootstrap) as client:
        client.create_topic("a.small", 1, configs={"max.message.bytes": "200"})
    producer = Producer({"bootstrap.servers": a.bootstrap})
    for i in range(100):
        producer.produce("orders", f"o-{i}".encode())
        producer.produce("small", b"x" * 1000)
        producer.produce("temp", b"t")
    assert producer.flush(30) == 0
    log = tmp_path / "mirror.log"
    mirror = start_mirror(mirror_config(tmp_path, a, b), log)
    try:
        wait_for(lambda: caught_up(a.bootstrap, b.bootstrap, "orders") and caught_up(a.bootstrap, b.bootstrap, "temp"), "orders and temp copied")
        time.sleep(2.0)  # rounds go on refusing a.small
        assert count(b.bootstrap, "a.orders") == 100 and count(b.bootstrap, "a.small") == 0
        assert "MESSAGE_TOO_LARGE" in log.read_text()
        with Client(a.bootstrap) as client:
            client.delete_topics(["temp"])
        for i in range(100, 150):
            producer.produce("orders", f"o-{i}".encode())
        assert producer.flush(30) == 0
        wait_for(lambda: caught_up(a.bootstrap, b.bootstrap, "orders"), "orders still copied after temp was deleted")
        wait_for(lambda: "temp is gone from the source" in log.read_text(), "the deleted topic dropped")
        assert count(b.bootstrap, "a.orders") == 150
    finally:
        mirror.send_signal(signal.SIGTERM)
        mirror.wait(20)
