"""How long the broker's refreezes take as topics come and go (issue 15, `broker.Refreezer`).

Starts `fastlog serve` on free ports with a temp data dir, then over the wire: creates
`--topics` topics of `--partitions` partitions (10,000 partitions by default), adds a tenth as
many topics again, then deletes a fifth of them, waiting `--settle` seconds after each step (the
broker checks every 30 s whether the partition count moved enough to freeze its long-lived
objects again). Prints the refreezes the broker logged: the count before and after, how long
each took, and whether it was a full walk (every object unfrozen and collected).

    python bench/bench_refreeze.py [--topics 100] [--partitions 100] [--settle 35]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.perf import free_port  # noqa: E402

REFREEZE_LINE = re.compile(r"(\d+) partitions open \((\d+) at the last freeze\): long-lived objects frozen again in ([\d.]+) ms( \(a full walk\))?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=100, help="partitions per topic")
    parser.add_argument("--settle", type=float, default=35, help="seconds after each step (the broker checks every 30 s)")
    args = parser.parse_args()
    from confluent_kafka.admin import AdminClient, NewTopic

    data = Path(tempfile.mkdtemp(prefix="fastlog-refreeze-"))
    port = free_port()
    log_path = data.parent / f"{data.name}-broker.log"
    with open(log_path, "w") as log_file:
        broker = subprocess.Popen(
            [sys.executable, "-m", "fastlog", "serve", "--override", f"listeners=PLAINTEXT://127.0.0.1:{port}",
             "--override", f"log.dirs={data}", "--override", "metrics.port=-1", "--override", "schema.registry.listeners=-1"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(3)
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        first = [f"many-{i}" for i in range(args.topics)]
        more = [f"more-{i}" for i in range(max(1, args.topics // 10))]
        steps = [("create", first), ("create", more), ("delete", first[: max(1, len(first + more) // 5)])]
        for action, names in steps:
            if action == "create":
                futures = admin.create_topics([NewTopic(name, args.partitions, 1) for name in names])
            else:
                futures = admin.delete_topics(names)
            for future in futures.values():
                future.result(300)
            print(f"{action}d {len(names)} topics of {args.partitions} partitions", flush=True)
            time.sleep(args.settle)
        del admin, futures  # its connections close before the broker stops
    finally:
        broker.terminate()
        broker.wait(60)
        shutil.rmtree(data, ignore_errors=True)
    found = [REFREEZE_LINE.search(line) for line in log_path.read_text().splitlines()]
    for match in filter(None, found):
        now, before, ms, full = match.groups()
        print(f"refreeze {int(before):,} -> {int(now):,} partitions: {float(ms):.1f} ms{' (a full walk)' if full else ''}")
    print(f"broker log: {log_path}")


if __name__ == "__main__":
    main()
