"""What a segment roll costs the append that rolls: appends 16-record batches of 1 KB values to
one partition log with small segments for a few seconds, and times each append, telling the ones
that rolled (the log's segment count grew) from the others.

    python bench/bench_roll.py [--seconds 5] [--segment-mb 16] [--rounds 3] [--preallocate] [--dir PATH]

A roll seals the active segment (writes its index files from memory, gives back a `preallocate`
reserve), creates the next segment's three files and writes the producer snapshot, with the log
held; its fsyncs are left to the flusher's thread (bench/README.md, "Fsyncs and unlinks").
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from fastlog import _core
from fastlog.records import Record, encode_batch

RECORDS_PER_BATCH = 16
VALUE_BYTES = 1024


def quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def one_round(parent: Path, seconds: float, segment_bytes: int, preallocate: bool) -> tuple[list[float], list[float]]:
    """(ms of each append that rolled, ms of each other append)."""
    directory = Path(tempfile.mkdtemp(dir=parent))
    try:
        config = {"segment.bytes": segment_bytes, "preallocate": preallocate}
        log = _core.Log(directory / "t-0", config)
        records = [Record(i, 1000, b"key-%d" % i, os.urandom(VALUE_BYTES)) for i in range(RECORDS_PER_BATCH)]
        batch = encode_batch(records, base_offset=0, partition_leader_epoch=0)
        rolled, others = [], []
        segments = log.segment_count
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            before = time.perf_counter()
            log.append(batch)
            took = (time.perf_counter() - before) * 1000
            count = log.segment_count
            (rolled if count > segments else others).append(took)
            segments = count
        log.close()
        return rolled, others
    finally:
        shutil.rmtree(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="appending per round")
    parser.add_argument("--segment-mb", type=float, default=16.0, help="segment.bytes, MiB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preallocate", action="store_true", help="the topic config preallocate=true")
    parser.add_argument("--dir", default=None, help="where the logs go (the disk measured)")
    args = parser.parse_args()
    parent = Path(args.dir or tempfile.gettempdir())
    print("| round | rolls | rolled: median / p90 / longest, ms | others: median / p99.9 / longest, ms | others over 1 ms / over 5 ms |")
    print("|---|---|---|---|---|")
    for round_number in range(1, args.rounds + 1):
        rolled, others = one_round(parent, args.seconds, int(args.segment_mb * (1 << 20)), args.preallocate)
        rolled.sort()
        others.sort()
        if not rolled:
            print(f"| {round_number} | 0 | - | - | - |")
            continue
        print(
            f"| {round_number} | {len(rolled)} | {statistics.median(rolled):.2f} / {quantile(rolled, 0.9):.2f} / {rolled[-1]:.2f} "
            f"| {statistics.median(others):.3f} / {quantile(others, 0.999):.2f} / {others[-1]:.2f} "
            f"| {sum(t > 1 for t in others)} / {sum(t > 5 for t in others)} |"
        )


if __name__ == "__main__":
    main()
