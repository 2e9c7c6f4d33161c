"""Log cleaner throughput: MB of log compacted per second by the Rust core.

Builds a compacted partition log of `--mb` MB of keyed 1 KB records (`--keys` distinct keys, so
most records are superseded), with each codec, then times one `Log.clean()` pass over it.

    python bench/bench_cleaner.py [--mb 64] [--keys 10000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from fastlog import _core
from fastlog.records import Compression, Record, encode_batch


def build(path: Path, mb: int, keys: int, codec: Compression) -> int:
    config = {"cleanup.policy": "compact", "segment.bytes": 64 << 20, "min.cleanable.dirty.ratio": 0.0}
    log = _core.Log(path, config)
    rng = random.Random(1)
    words = [os.urandom(8).hex().encode() for _ in range(512)]
    offset = 0
    while log.size_bytes < mb << 20:
        records = []
        for _ in range(64):
            value = b" ".join(rng.choice(words) for _ in range(60))[:1000]
            records.append(Record(offset, 1_700_000_000_000 + offset, b"key-%d" % rng.randrange(keys), value))
            offset += 1
        log.append(encode_batch(records, base_offset=records[0].offset, compression=codec))
    log.roll()
    log.append(encode_batch([Record(offset, 0, b"tail", b"x")], base_offset=offset))
    log.flush()
    log.close()
    return offset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    print(f"| codec | log MB | records | clean s | MB/s cleaned | records removed | MB after |")
    print(f"|---|---:|---:|---:|---:|---:|---:|")
    for codec in (Compression.NONE, Compression.LZ4, Compression.ZSTD, Compression.GZIP):
        root = Path(tempfile.mkdtemp(prefix="fastlog-cleaner-", dir=args.dir))
        try:
            records = build(root / "t-0", args.mb, args.keys, codec)
            log = _core.Log(root / "t-0", {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": 0.0}, recovery_point=records + 1)
            before = log.size_bytes
            started = time.perf_counter()
            stats = log.clean(now_ms=2_000_000_000_000)
            elapsed = time.perf_counter() - started
            assert stats is not None
            print(
                f"| {codec.name.lower()} | {before / 1e6:,.0f} | {records:,} | {elapsed:.2f} | "
                f"{before / 1e6 / elapsed:,.0f} | {stats[3]:,} | {log.size_bytes / 1e6:,.1f} |"
            )
            log.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
