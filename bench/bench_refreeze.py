"""How long the broker's refreezes take as topics come and go (issue 15, `broker.Refreezer`).

Starts `fastlog serve` on free ports with a temp data dir, then over the wire: creates
`--topics` topics of `--partitions` partitions (10,000 partitions by default), adds a tenth as
many topics again, then deletes a fifth of them, waiting `--settle` seconds after each step (the
broker checks every 30 s whether the partition count moved enough to freeze its long-lived
objects again). Prints the refreezes the broker logged, each with the step it followed: the
count before and after, how long it took, and whether it was a full walk (every object unfrozen
and collected). Stops with the broker's log if the broker exits early.

    python bench/bench_refreeze.py [--topics 100] [--partitions 100] [--settle 35]
"""

from __future__ import annotations

import argparse
import datetime
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.perf import free_port  # noqa: E402

LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S,%f"  # how a line of the broker's log begins (fastlog.logs)
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
        marks: list[tuple[float, str]] = []  # (when, what): each step as it was asked, and once answered
        for action, names in steps:
            check_running(broker, log_path)
            marks.append((time.time(), f"during {action} {len(names)} topics"))
            if action == "create":
                futures = admin.create_topics([NewTopic(name, args.partitions, 1) for name in names])
            else:
                futures = admin.delete_topics(names)
            try:
                for future in futures.values():
                    future.result(300)
            except Exception:
                check_running(broker, log_path)
                raise
            marks.append((time.time(), f"after {action} {len(names)} topics"))
            print(f"{action}d {len(names)} topics of {args.partitions} partitions", flush=True)
            time.sleep(args.settle)
        check_running(broker, log_path)
        del admin, futures  # its connections close before the broker stops
    finally:
        broker.terminate()
        broker.wait(60)
        shutil.rmtree(data, ignore_errors=True)
    for line in log_path.read_text().splitlines():
        match = REFREEZE_LINE.search(line)
        if match:
            now, before, ms, full = match.groups()
            step = step_before(marks, line)
            print(f"refreeze {int(before):,} -> {int(now):,} partitions ({step}): {float(ms):.1f} ms{' (a full walk)' if full else ''}")
    print(f"broker log: {log_path}")


def check_running(broker: subprocess.Popen, log_path: Path) -> None:
    if broker.poll() is not None:
        sys.exit(f"the broker exited with {broker.returncode}; its log: {log_path}")


def step_before(marks: list[tuple[float, str]], line: str) -> str:
    """Where the steps stood when the broker logged `line`: during one, or after one."""
    try:
        logged = datetime.datetime.strptime(line[:23], LOG_TIME_FORMAT).timestamp()
    except ValueError:
        return "?"
    before = [what for when, what in marks if when <= logged]
    return before[-1] if before else "after start-up"


if __name__ == "__main__":
    main()
