"""End-to-end broker benchmark with a real client (librdkafka through confluent-kafka).

Starts a broker on a free loopback port with a temp data dir, then in one run measures:
  * the machine's loopback TCP limit (two processes, 1 MiB writes, data discarded);
  * produce throughput (acks=1, 6 partitions) for 100 B and 1 KB records;
  * consume throughput of what was produced, read back from the broker;
  * produce latency p50/p99/p99.9 at a fixed rate.
Prints a table; bounded in time and count. Loopback only.

    python bench/bench_e2e.py [--seconds 5] [--records-100b 1000000] [--records-1kb 300000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sink(port_queue: "mp.Queue[int]", seconds: float) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port_queue.put(server.getsockname()[1])
    conn, _ = server.accept()
    buf = bytearray(1 << 20)
    while conn.recv_into(buf):
        pass


def loopback_limit(seconds: float) -> float:
    """MB/s one process can push to another over loopback TCP."""
    ctx = mp.get_context("spawn")
    ports: mp.Queue = ctx.Queue()
    receiver = ctx.Process(target=_sink, args=(ports, seconds))
    receiver.start()
    sock = socket.create_connection(("127.0.0.1", ports.get(timeout=10)))
    chunk = b"x" * (1 << 20)
    sent = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        sock.sendall(chunk)
        sent += len(chunk)
    sock.close()
    elapsed = time.perf_counter() - start
    receiver.join(10)
    return sent / elapsed / 1e6


def _produce(bootstrap: str, topic: str, count: int, size: int, result: "mp.Queue") -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "1",
            "linger.ms": 10,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "enable.idempotence": False,
        }
    )
    value = os.urandom(size)
    start = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value, partition=i % 6)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(120)
    result.put(time.perf_counter() - start)


def _consume(bootstrap: str, topic: str, count: int, result: "mp.Queue") -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False, "fetch.max.bytes": 52_428_800}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(6)])
    got = 0
    size = 0
    start = time.perf_counter()
    deadline = start + 120
    while got < count and time.perf_counter() < deadline:
        for msg in consumer.consume(10_000, 1.0):
            if msg.error() is None:
                got += 1
                size += len(msg.value())
    elapsed = time.perf_counter() - start
    consumer.close()
    result.put((got, size, elapsed))


def _latency(bootstrap: str, topic: str, rate: int, seconds: float, result: "mp.Queue") -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 0, "enable.idempotence": False})
    latencies: list[float] = []

    def delivered(err, msg, sent_at):
        if err is None:
            latencies.append(time.perf_counter() - sent_at)

    value = b"x" * 100
    interval = 1 / rate
    start = time.perf_counter()
    next_at = start
    while time.perf_counter() - start < seconds:
        now = time.perf_counter()
        if now < next_at:
            producer.poll(max(0.0, min(next_at - now, 0.001)))
            continue
        producer.produce(topic, value, on_delivery=lambda e, m, t=now: delivered(e, m, t))
        next_at += interval
        producer.poll(0)
    producer.flush(30)
    result.put(sorted(latencies))


def run_in_child(target, *args):
    ctx = mp.get_context("spawn")
    result: mp.Queue = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, result))
    process.start()
    value = result.get(timeout=300)
    process.join(30)
    return value


def create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 6, 1)]).values():
        future.result(30)


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--records-100b", type=int, default=1_000_000)
    parser.add_argument("--records-1kb", type=int, default=300_000)
    parser.add_argument("--latency-rate", type=int, default=2000)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="fastlog-bench-", dir=args.dir))
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = subprocess.Popen(
        [sys.executable, "-m", "fastlog", "serve", "--override", f"listeners=PLAINTEXT://{bootstrap}",
         "--override", f"log.dirs={data_dir}", "--log-level", "WARNING"],
    )
    rows = []
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        loopback = loopback_limit(args.seconds)
        rows.append(("loopback TCP, 1 MiB writes", "", f"{loopback:,.0f}", "1.00"))
        for size, count in ((100, args.records_100b), (1000, args.records_1kb)):
            topic = f"bench-{size}"
            create_topic(bootstrap, topic)
            elapsed = run_in_child(_produce, bootstrap, topic, count, size)
            mbps = count * size / elapsed / 1e6
            rows.append((f"produce {size} B, acks=1, 6 partitions", f"{count / elapsed:,.0f}", f"{mbps:,.1f}", f"{mbps / loopback:.3f}"))
            got, total, elapsed = run_in_child(_consume, bootstrap, topic, count)
            mbps = total / elapsed / 1e6
            rows.append((f"consume {size} B ({got:,} records)", f"{got / elapsed:,.0f}", f"{mbps:,.1f}", f"{mbps / loopback:.3f}"))
        create_topic(bootstrap, "bench-latency")
        latencies = run_in_child(_latency, bootstrap, "bench-latency", args.latency_rate, args.seconds)
        lat = ", ".join(f"p{p} {percentile(latencies, p) * 1000:.2f} ms" for p in (50, 99, 99.9))
        rows.append((f"produce latency at {args.latency_rate}/s, 100 B", f"{len(latencies):,} samples", lat, ""))
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(60)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"\nfastlog end-to-end, {os.cpu_count()} cores, client librdkafka (confluent-kafka) in its own process\n")
    print(f"| {'scenario':<42} | {'records/s':>14} | {'MB/s':>30} | {'of loopback':>11} |")
    print(f"|{'-' * 44}|{'-' * 16}:|{'-' * 32}:|{'-' * 13}:|")
    for name, rps, mbps, ratio in rows:
        print(f"| {name:<42} | {rps:>14} | {mbps:>30} | {ratio:>11} |")


if __name__ == "__main__":
    main()
