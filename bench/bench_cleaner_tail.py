"""Does a compaction pass stop the loop that serves its partition? (issue 15)

One broker on one network loop (`log.cleaner.backoff.ms=4000`). A compacted topic (4 MB
segments, `min.cleanable.dirty.ratio=0.01`) gets `--records` values of 1 KB over 2,000 keys, so
a pass has most of them to drop. Then bench/loadgen.rs writes 100 B records at `--rate` to
another topic for `--seconds`, while a producer writes 200 records/s to the compacted topic
(`--no-producer`: none). When that producer's requests wait for a partition that a pass holds,
so does every request on the loop, and loadgen's tail shows it. Prints loadgen's percentiles
and the cleaner's log lines (a pass must fall inside the window: it does, within 4 s of the
start, once the records are in).

    python bench/bench_cleaner_tail.py [--records 300000] [--rate 2000] [--seconds 12] [--rounds 2] [--no-producer]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.perf import LOADGEN, find_loadgen, run_loadgen  # noqa: E402
from tests.conftest import BrokerProcess  # noqa: E402

VALUE = b"v" * 1000
KEYS = 2000


def fill(bootstrap: str, records: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20})
    for i in range(records):
        while True:
            try:
                producer.produce("compacted", key=b"k%d" % (i % KEYS), value=VALUE)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(120) == 0


def trickle(bootstrap: str, stop: threading.Event) -> None:
    """200 records/s to the compacted topic, one request each."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    sent = 0
    while not stop.is_set():
        producer.produce("compacted", key=b"k%d" % (sent % KEYS), value=VALUE)
        producer.poll(0)
        sent += 1
        time.sleep(0.005)
    producer.flush(30)


def one_round(loadgen: Path, args: argparse.Namespace) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    with tempfile.TemporaryDirectory(prefix="fastlog-cleaner-") as work:
        broker = BrokerProcess(Path(work) / "data", {"num.network.threads": "1", "log.cleaner.backoff.ms": "4000"}).start()
        try:
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            compacted = {"cleanup.policy": "compact", "segment.bytes": str(4 << 20), "min.cleanable.dirty.ratio": "0.01"}
            topics = [NewTopic("compacted", 1, 1, config=compacted), NewTopic("paced", 6, 1)]
            for future in admin.create_topics(topics).values():
                future.result(60)
            fill(broker.bootstrap, args.records)
            stop = threading.Event()
            producer = threading.Thread(target=trickle, args=(broker.bootstrap, stop))
            if not args.no_producer:
                producer.start()
            started = time.strftime("%H:%M:%S")
            try:
                run = run_loadgen(loadgen, broker.bootstrap, "paced", 6, args.rate, args.seconds, 100, None)
            finally:
                stop.set()
                if producer.is_alive():
                    producer.join(60)
            print(f"loadgen {started}-{time.strftime('%H:%M:%S')}, {args.rate:,}/s: p50 {run['p50_ms']:.2f} ms, "
                  f"p99 {run['p99_ms']:.2f} ms, p99.9 {run['p999_ms']:.2f} ms, max {run['max_ms']:.2f} ms")
        finally:
            broker.stop()
        for line in broker.log_text().splitlines():
            if "cleaned compacted-0" in line or "cleaning" in line:
                print("  broker:", line[11:23], line.split(": ", 1)[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000, help="1 KB values written to the compacted topic first")
    parser.add_argument("--rate", type=int, default=2000, help="loadgen's records/s to the other topic")
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-producer", action="store_true", help="nothing writes to the compacted topic during the window")
    args = parser.parse_args()
    notes: list[str] = []
    loadgen = find_loadgen("", notes) or sys.exit(f"{notes[0]} ({LOADGEN})")
    for _ in range(args.rounds):
        one_round(loadgen, args)


if __name__ == "__main__":
    main()
