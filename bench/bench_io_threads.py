"""What `num.io.threads` does to producers of a topic that fsyncs every message (issue 15).

Starts `fastlog serve` (bench/perf.py's BrokerProcess) with each `num.io.threads` setting in turn,
`--rounds` times, and has `--producers` producer processes (confluent-kafka, acks=all, linger.ms=0, one record a batch, 1 KB)
write `--records` each to a fresh `flush.messages=1` topic of `--partitions` partitions. Prints
records/s and the broker's threads once the producers are done (Trio's idle worker threads
linger 10 s, so this is about how many the fsyncs started).

    python bench/bench_io_threads.py [--settings 1,8] [--producers 4] [--records 5000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.perf import BrokerProcess, _produce, create_topic, in_children  # noqa: E402


def one_run(work: Path, io_threads: int, args: argparse.Namespace) -> tuple[float, int]:
    broker = BrokerProcess(work / f"data-{io_threads}", [f"num.io.threads={io_threads}"])
    try:
        create_topic(broker.bootstrap, "durable", args.partitions, {"flush.messages": "1"})
        results = in_children(args.producers, _produce, {"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0, "batch.num.messages": 1},
                              "durable", args.partitions, args.records, 1000)
        rate = sum(r[0] for r in results) / max(r[1] for r in results)
        threads = len(os.listdir(f"/proc/{broker.process.pid}/task"))
        return rate, threads
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default="1,8", help="num.io.threads values, comma separated")
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--records", type=int, default=5000, help="records of 1 KB per producer")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    settings = [int(s) for s in args.settings.split(",")]
    work = Path(tempfile.mkdtemp(prefix="fastlog-io-threads-"))
    try:
        print(f"{os.cpu_count()} cores; {args.producers} producers x {args.records:,} records of 1 KB, acks=all, "
              f"flush.messages=1, {args.partitions} partitions; data in {work}")
        for round_ in range(1, args.rounds + 1):
            for io_threads in settings:
                rate, threads = one_run(work, io_threads, args)
                print(f"round {round_}: num.io.threads={io_threads}: {rate:,.0f} records/s, broker threads after: {threads}", flush=True)
                shutil.rmtree(work / f"data-{io_threads}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
