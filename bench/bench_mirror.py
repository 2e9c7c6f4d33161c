"""What `fastlog mirror` moves: mirrored MB/s and end-to-end replication latency between two
fastlog brokers on one machine, next to the first broker's own produce + consume rate, in one run.

    python bench/bench_mirror.py [--records 200000] [--size 1000] [--rate 2000] [--seconds 10] [--exactly-once]

1. Baseline: confluent-kafka produces `--records` records of `--size` bytes to broker A and
   consumes them back (the single broker's own rate).
2. Backlog: the same number of records on A (3 partitions), then `fastlog mirror` starts; the
   time until broker B holds them all gives the mirrored MB/s.
3. Latency: a producer paced at `--rate` records/s for `--seconds` to A while the mirror runs;
   a consumer of B's copy measures now - the record's timestamp (the mirror keeps it): p50/p99.

With `--exactly-once` the mirror runs with `exactly.once.source.support=enabled` (each round a
transaction of B), the backlog counts as copied once the progress committed in those
transactions covers it, and the latency consumer reads read_committed.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, Producer  # noqa: E402

from bench.bench_security import consume, produce  # noqa: E402
from fastlog.client import Client  # noqa: E402
from tests.conftest import BrokerProcess  # noqa: E402


def copied(bootstrap: str, topic: str) -> int:
    with Client(bootstrap) as client:
        try:
            return sum(end - start for start, end in client.offsets_of(topic).values())
        except Exception:
            return 0


def recorded(bootstrap: str, topic: str, partitions: int) -> int:
    """Source records the mirror's committed progress covers (exactly-once: what B's
    read_committed readers can see)."""
    with Client(bootstrap) as client:
        try:
            committed = client.committed_offsets("mm2-offsets.a.internal", [(topic, p) for p in range(partitions)])
        except Exception:
            return 0
    return sum(max(c.offset, 0) for c in committed)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def paced_latency(a: BrokerProcess, b: BrokerProcess, rate: int, seconds: float, isolation: str) -> list[float]:
    producer = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 1})
    consumer = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "bench-latency", "auto.offset.reset": "latest",
                         "fetch.wait.max.ms": 10, "isolation.level": isolation})
    consumer.subscribe(["a.paced"])
    deadline = time.monotonic() + 20
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.2)
    latencies: list[float] = []
    value = os.urandom(100)
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * rate)
        while sent < due:
            producer.produce("paced", value)
            sent += 1
        producer.poll(0)
        for message in consumer.consume(1000, 0.001):
            if message.error() is None:
                latencies.append(time.time() - message.timestamp()[1] / 1000)
    producer.flush(30)
    end = time.monotonic() + 10
    while len(latencies) < sent and time.monotonic() < end:
        for message in consumer.consume(1000, 0.1):
            if message.error() is None:
                latencies.append(time.time() - message.timestamp()[1] / 1000)
    consumer.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--exactly-once", action="store_true", help="exactly.once.source.support=enabled")
    args = parser.parse_args()
    progress = (lambda b: recorded(b.bootstrap, "a.orders", 3)) if args.exactly_once else (lambda b: copied(b.bootstrap, "a.orders"))
    megabytes = args.records * args.size / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        a, b = BrokerProcess(root / "a").start(), BrokerProcess(root / "b").start()
        mirror = None
        try:
            conf = {"bootstrap.servers": a.bootstrap}
            produced = produce(conf, "baseline", args.records, args.size)
            consumed = consume(conf, "baseline", args.records)
            with Client(a.bootstrap) as client:
                client.create_topic("orders", 3)
                client.create_topic("paced", 1)
            produce(conf, "orders", args.records, args.size)
            settings = {"clusters": "a, b", "a.bootstrap.servers": a.bootstrap, "b.bootstrap.servers": b.bootstrap, "a->b.enabled": "true",
                        "a->b.topics": "orders, paced", "refresh.topics.interval.seconds": "1"}
            if args.exactly_once:
                settings["exactly.once.source.support"] = "enabled"
            config = root / "mirror.properties"
            config.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
            launched = time.perf_counter()
            mirror = subprocess.Popen([sys.executable, "-m", "fastlog", "mirror", "--config", str(config)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # Timed from the first record on B: the start (imports, the work group's 3 s initial
            # rebalance delay) is left out, and reported apart.
            while (first := copied(b.bootstrap, "a.orders")) == 0 and time.perf_counter() - launched < 120:
                time.sleep(0.01)
            started = time.perf_counter()
            startup = started - launched
            while progress(b) < args.records:
                if time.perf_counter() - started > 600:
                    raise SystemExit("the mirror did not copy the backlog within 600 s")
                time.sleep(0.02)
            mirrored = (time.perf_counter() - started) * args.records / max(args.records - first, 1)
            latencies = paced_latency(a, b, args.rate, args.seconds, "read_committed" if args.exactly_once else "read_uncommitted")
        finally:
            if mirror is not None:
                mirror.send_signal(signal.SIGTERM)
                mirror.wait(30)
            a.stop()
            b.stop()
    mode = "exactly-once" if args.exactly_once else "at-least-once"
    print(f"records: {args.records:,} x {args.size} B ({megabytes:,.0f} MB); {os.cpu_count()} cores; mirror {mode}")
    print(f"broker A alone: produce {megabytes / produced:,.1f} MB/s, consume {megabytes / consumed:,.1f} MB/s")
    print(f"mirror A -> B, backlog: {megabytes / mirrored:,.1f} MB/s ({args.records / mirrored:,.0f} records/s; "
          f"{startup:.1f} s from launch to the first copied record); ratio to A's produce: {produced / mirrored:.2f}")
    if latencies:
        print(f"end-to-end latency at {args.rate:,} records/s ({len(latencies):,} records): p50 {percentile(latencies, 50) * 1000:.1f} ms, "
              f"p99 {percentile(latencies, 99) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
