"""Produce throughput with each compression codec, through librdkafka (confluent-kafka).

Starts a broker on a free loopback port with a temp data dir; for each codec (none, gzip, snappy,
lz4, zstd) creates a 6-partition topic and produces the same 1 KB JSON-like records (random
fields over small vocabularies, so they compress like typical event data) from a producer in its
own process, acks=1; the topic's compression.type is `producer`, so the broker stores the
batches as sent. Reports records/s, MB/s of uncompressed record values, and the bytes the
partitions take on disk per record after the broker's clean stop (segment files, then everything
in the partition dirs; confluent-kafka's AdminClient has no DescribeLogDirs, so the dirs are
measured directly).
Also the CPU time per record of the producer process and of the broker process, to show which
side a codec costs. Bounded: each codec stops producing after --records or --max-seconds,
whichever comes first (then waits for delivery).

    python bench/bench_codecs.py [--records 500000] [--max-seconds 15] [--codecs none,zstd]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 6
RECORD_SIZE = 1000
POOL = 20_000  # distinct records, cycled: more than a batch holds, so no batch repeats one

WORDS = (
    "account order payment refund cart checkout session login logout search view click item price "
    "discount coupon shipping address invoice customer product category stock warehouse delivery "
    "status pending failed complete retry timeout error warning info debug user admin guest mobile "
    "desktop tablet browser android ios linux windows region europe america asia campaign email "
    "banner referral organic paid partner subscription trial renewal cancel upgrade downgrade"
).split()
EVENTS = ["page_view", "add_to_cart", "purchase", "login", "logout", "search", "refund", "signup"]
COUNTRIES = ["DE", "FR", "US", "GB", "NL", "ES", "IT", "PL", "SE", "JP", "BR", "IN"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_records(count: int, size: int, seed: int = 1) -> list[bytes]:
    """JSON events of exactly `size` bytes: ids, timestamps, numbers and words at random."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        event = {
            "id": "%032x" % rng.getrandbits(128),
            "ts": 1_764_000_000_000 + i * 37 + rng.randrange(1000),
            "event": rng.choice(EVENTS),
            "user": {"id": rng.randrange(10**6), "name": f"{rng.choice(WORDS)}_{rng.randrange(10**4)}", "country": rng.choice(COUNTRIES)},
            "ip": ".".join(str(rng.randrange(256)) for _ in range(4)),
            "amount": round(rng.uniform(0, 500), 2),
            "items": [{"sku": "SKU-%06d" % rng.randrange(10**6), "qty": rng.randrange(1, 5)} for _ in range(rng.randrange(1, 4))],
            "tags": rng.sample(WORDS, 4),
            "note": "",
        }
        text = json.dumps(event, separators=(",", ":"))
        room = size - len(text)
        note, length = [], 0
        while length < room:
            word = rng.choice(WORDS)
            note.append(word)
            length += len(word) + 1
        event["note"] = " ".join(note)[: max(0, room)]
        data = json.dumps(event, separators=(",", ":")).encode()
        out.append(data[:size] if len(data) >= size else data + b" " * (size - len(data)))
    return out


def _produce(bootstrap: str, topic: str, codec: str, count: int, max_seconds: float, result: "mp.Queue") -> None:
    from confluent_kafka import Producer

    records = make_records(POOL, RECORD_SIZE)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "1",
            "compression.type": codec,
            "linger.ms": 10,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 65_536,  # so produce() blocks and --max-seconds holds
            "enable.idempotence": False,
        }
    )
    errors = []

    def delivered(err, msg) -> None:
        if err is not None:
            errors.append(str(err))

    sent = 0
    cpu_start = time.process_time()
    start = time.perf_counter()
    deadline = start + max_seconds
    while sent < count and (sent % 1000 or time.perf_counter() < deadline):
        try:
            producer.produce(topic, records[sent % POOL], partition=sent % PARTITIONS, on_delivery=delivered)
            sent += 1
        except BufferError:
            producer.poll(0.01)
    left = producer.flush(120)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    result.put((sent - left, elapsed, cpu, errors[:3], len(errors)))


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
    new = NewTopic(topic, PARTITIONS, 1, config={"compression.type": "producer"})
    for future in admin.create_topics([new]).values():
        future.result(30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def disk_usage(data_dir: Path, topic: str) -> tuple[int, int]:
    """(bytes in .log segment files, bytes of every file) over the topic's partition dirs."""
    segments = total = 0
    for p in range(PARTITIONS):
        for f in (data_dir / f"{topic}-{p}").iterdir():
            size = f.stat().st_size
            total += size
            if f.suffix == ".log":
                segments += size
    return segments, total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--max-seconds", type=float, default=15)
    parser.add_argument("--codecs", default=",".join(CODECS))
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    sample = make_records(2000, RECORD_SIZE)
    data_dir = Path(tempfile.mkdtemp(prefix="fastlog-bench-codecs-", dir=args.dir))
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = subprocess.Popen(
        [sys.executable, "-m", "fastlog", "serve", "--override", f"listeners=PLAINTEXT://{bootstrap}",
         "--override", f"log.dirs={data_dir}", "--log-level", "WARNING"],
    )
    rows = []
    started = time.perf_counter()
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        for codec in args.codecs.split(","):
            topic = f"bench-codec-{codec}"
            create_topic(bootstrap, topic)
            broker_cpu = cpu_seconds(broker.pid)
            delivered, elapsed, cpu, errors, error_count = run_in_child(_produce, bootstrap, topic, codec, args.records, args.max_seconds)
            broker_cpu = cpu_seconds(broker.pid) - broker_cpu
            if error_count:
                print(f"{codec}: {error_count} delivery errors, e.g. {errors}", file=sys.stderr)
            rows.append((codec, delivered, elapsed, cpu, broker_cpu))
        broker.send_signal(signal.SIGTERM)
        broker.wait(60)  # a clean close writes the index files: measure the dirs after it
        sizes = {codec: disk_usage(data_dir, f"bench-codec-{codec}") for codec, *_ in rows}
    finally:
        if broker.poll() is None:
            broker.send_signal(signal.SIGTERM)
            broker.wait(60)
        shutil.rmtree(data_dir, ignore_errors=True)

    print(f"\nfastlog produce by codec: {os.cpu_count()} cores, librdkafka (confluent-kafka) in its own process, "
          f"acks=1, {PARTITIONS} partitions, linger.ms=10, batch.size=1000000, {RECORD_SIZE} B JSON records "
          f"(sample mean {sum(map(len, sample)) / len(sample):.0f} B); total {time.perf_counter() - started:.0f} s\n")
    print("| codec | records | seconds | records/s | MB/s (uncompressed) | on disk B/record (segments / all files) "
          "| ratio | producer CPU µs/record | broker CPU µs/record |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for codec, delivered, elapsed, cpu, broker_cpu in rows:
        segments, total = sizes[codec]
        print(f"| {codec} | {delivered:,} | {elapsed:.1f} | {delivered / elapsed:,.0f} | {delivered * RECORD_SIZE / elapsed / 1e6:,.1f} "
              f"| {segments / delivered:,.1f} / {total / delivered:,.1f} | {delivered * RECORD_SIZE / segments:.2f} "
              f"| {cpu / delivered * 1e6:.1f} | {broker_cpu / delivered * 1e6:.1f} |")


if __name__ == "__main__":
    main()
