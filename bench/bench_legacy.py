"""What message formats v0/v1 cost, each legacy client next to the same client speaking the
current format, on one topic, in one run:

* kcat (librdkafka) as a current client (record batches v2) and as a client of Kafka 0.9
  (`api.version.request=false`, `broker.version.fallback=0.9.0`: message format v0, Produce v1,
  Fetch v1);
* kafka-python as a current client and with `api_version=(0, 10, 1)` (message format v1,
  Produce v2, Fetch v3).

Legacy produces are converted up to batches v2 in Python (`legacy.to_record_batch`) instead of
taking the Rust path; legacy fetches are converted down (`legacy.down_convert`) instead of
going out with sendfile. Each client produces N records of S bytes to its own partition, then
reads its partition back from the beginning.

    python bench/bench_legacy.py [--records 200000] [--size 100]

Loopback only; every client run is bounded by a timeout.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KCAT = {
    "kcat, batches v2": [],
    "kcat, format v0": ["-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0"],
}
KAFKA_PYTHON = {"kafka-python, batches v2": None, "kafka-python, format v1": (0, 10, 1)}
TIMEOUT = 300
KAFKA_PYTHON_RUN = """
import sys, time
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
bootstrap, topic, partition, records, size, api = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), eval(sys.argv[6])
value = b"x" * size
started = time.perf_counter()
producer = KafkaProducer(bootstrap_servers=bootstrap, api_version=api, linger_ms=5, batch_size=1 << 20)
for _ in range(records):
    producer.send(topic, value, partition=partition)
producer.flush()
produced = time.perf_counter() - started
producer.close()
started = time.perf_counter()
consumer = KafkaConsumer(bootstrap_servers=bootstrap, api_version=api, consumer_timeout_ms=5000, max_partition_fetch_bytes=1 << 20)
consumer.assign([TopicPartition(topic, partition)])
consumer.seek_to_beginning()
read = 0
for _ in consumer:
    read += 1
    if read == records:
        break
consumed = time.perf_counter() - started
assert read == records, read
print(records / produced, records / consumed)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(data: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [sys.executable, "-m", "fastlog", "serve", "--override", f"listeners=PLAINTEXT://127.0.0.1:{port}",
            "--override", f"log.dirs={data}", "--override", "metrics.port=-1", "--override", "num.partitions=4"]
    broker = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return broker, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("broker did not start")


def timed(args: list[str], stdin_path: Path | None = None) -> float:
    started = time.perf_counter()
    with open(stdin_path or "/dev/null", "rb") as stdin:
        subprocess.run(args, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=TIMEOUT)
    return time.perf_counter() - started


def run_kcat(records: int, bootstrap: str, topic: str, partition: int, options: list[str], lines: Path) -> tuple[float, float]:
    produce = timed(["kcat", "-b", bootstrap, *options, "-P", "-t", topic, "-p", str(partition), "-X", "linger.ms=5"], lines)
    consume = timed(["kcat", "-b", bootstrap, *options, "-C", "-t", topic, "-p", str(partition), "-o", "beginning", "-e"])
    return records / produce, records / consume


def run_kafka_python(records: int, size: int, bootstrap: str, topic: str, partition: int, api) -> tuple[float, float]:
    args = [sys.executable, "-c", KAFKA_PYTHON_RUN, bootstrap, topic, str(partition), str(records), str(size), repr(api)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100)
    options = parser.parse_args()
    if not shutil.which("kcat"):
        sys.exit("kcat is needed (apt-get install kcat)")
    work = Path(tempfile.mkdtemp(prefix="bench-legacy-"))
    lines = work / "lines"
    lines.write_text("".join(f"{i:0{options.size}d}\n" for i in range(options.records)))
    broker, bootstrap = start_broker(work / "data")
    try:
        print(f"{options.records} records of {options.size} B per client, uncompressed, one broker, loopback")
        print(f"{'client':<26} {'produce rec/s':>14} {'consume rec/s':>14}")
        topic = f"legacy-{time.monotonic_ns()}"
        rows = [(name, run_kcat(options.records, bootstrap, topic, i, flags, lines)) for i, (name, flags) in enumerate(KCAT.items())]
        rows += [
            (name, run_kafka_python(options.records // 4, options.size, bootstrap, topic, 2 + i, api))
            for i, (name, api) in enumerate(KAFKA_PYTHON.items())
        ]
        for name, (produce, consume) in rows:
            print(f"{name:<26} {produce:>14,.0f} {consume:>14,.0f}")
        print(f"(kafka-python rows: {options.records // 4} records each; it is the slower client)")
    finally:
        broker.terminate()
        broker.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
