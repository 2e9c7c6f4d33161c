"""How long does an append to a compacted partition wait while a pass puts large cleaned
segments in place? (issue 15)

A partition with `--segment-mib` segments (two sealed ones) of 16-record batches of 1 KB
values whose keys are unique but for every tenth, so that a pass keeps ~90 % of each. The pass
runs on a thread (`Log.clean`, as the broker's cleaner calls it) while this thread appends one
small batch after another; prints the pass's time, what it did (segments, bytes read, bytes
written, records removed) and the appends' p99.9, count over 1 ms and longest, per round.
Each round writes its data to a temporary directory under `--dir`.

    python bench/bench_cleaner_large_segment.py [--segment-mib 256] [--rounds 3] [--dir .]
"""

from __future__ import annotations

import argparse
import bisect
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from fastlog import _core
from fastlog.records import Record, encode_batch


def one_round(directory: Path, segment_bytes: int) -> str:
    config = {"cleanup.policy": "compact", "segment.bytes": segment_bytes, "min.cleanable.dirty.ratio": 0.01,
              "max.message.bytes": 1 << 20}
    log = _core.Log(directory / "c-0", config)
    value = os.urandom(1000)
    written = 0
    while log.segment_count < 2:
        keys = [written + i if (written + i) % 10 else 0 for i in range(16)]
        log.append(encode_batch([Record(i, 1_000 + written + i, b"k%d" % key, value) for i, key in enumerate(keys)]))
        written += 16
    log.roll()
    log.high_watermark = log.log_end_offset
    log.flush()
    outcome: list = []
    cleaner = threading.Thread(target=lambda: outcome.append(log.clean(now_ms=10**13)))
    small = encode_batch([Record(0, 5, b"x", b"y")])
    started = time.perf_counter()
    cleaner.start()
    waits = []
    while cleaner.is_alive():
        before = time.perf_counter()
        log.append(small)
        waits.append(time.perf_counter() - before)
    cleaner.join()
    took = time.perf_counter() - started
    log.close()
    waits.sort()
    over_1ms = len(waits) - bisect.bisect_left(waits, 0.001)
    return (f"pass {took:.3f} s, (segments, read, written, removed) {outcome[0]}, {len(waits)} appends: "
            f"p99.9 {waits[int(len(waits) * 0.999)] * 1000:.2f} ms, {over_1ms} over 1 ms, longest {waits[-1] * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segment-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("."))
    args = parser.parse_args()
    for _ in range(args.rounds):
        directory = Path(tempfile.mkdtemp(dir=args.dir, prefix="bench-cleaner-"))
        try:
            print(one_round(directory, args.segment_mib << 20), flush=True)
        finally:
            shutil.rmtree(directory)


if __name__ == "__main__":
    main()
