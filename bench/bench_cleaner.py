"""Log cleaner throughput: MB of log compacted per second by the Rust core.

Builds a compacted partition log of `--mb` MB of keyed records of `--value-bytes` (`--keys`
distinct keys, so most records are superseded), with each codec (or `--codec`), then times one
`Log.clean()` pass over it, its key map bounded as the broker bounds it (`--dedupe-buffer-size`).
"peak RSS" is the process's: run one codec for the pass's own.

With `--delete-during-pass`, the log is deleted as soon as the pass has written its first
segment, and the table says how long the deletion waited for the pass.

    python bench/bench_cleaner.py [--mb 64] [--keys 10000] [--value-bytes 1000] [--segment-mb 64] [--codec gzip]
                                  [--delete-during-pass] [--dedupe-buffer-size BYTES] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

from fastlog import _core
from fastlog.records import Compression, Record, encode_batch


def build(path: Path, mb: int, keys: int, codec: Compression, value_bytes: int, segment_mb: int) -> int:
    config = {"cleanup.policy": "compact", "segment.bytes": segment_mb << 20, "min.cleanable.dirty.ratio": 0.0}
    log = _core.Log(path, config)
    rng = random.Random(1)
    words = [os.urandom(8).hex().encode() for _ in range(512)]
    offset = 0
    while log.size_bytes < mb << 20:
        records = []
        for _ in range(64):
            value = b" ".join(rng.choice(words) for _ in range(value_bytes // 16 + 1))[:value_bytes]
            records.append(Record(offset, 1_700_000_000_000 + offset, b"key-%d" % rng.randrange(keys), value))
            offset += 1
        log.append(encode_batch(records, base_offset=records[0].offset, compression=codec))
    log.roll()
    log.append(encode_batch([Record(offset, 0, b"tail", b"x")], base_offset=offset))
    log.flush()
    log.close()
    return offset


def clean_and_delete(log: _core.Log, path: Path) -> tuple[float, float]:
    """(seconds until the pass wrote its first segment, seconds `delete` then took)."""
    thread = threading.Thread(target=log.clean, kwargs={"now_ms": 2_000_000_000_000})
    started = time.perf_counter()
    thread.start()
    while not any(name.endswith(".cleaned") for name in os.listdir(path)) and thread.is_alive():
        time.sleep(0.001)
    first = time.perf_counter() - started
    started = time.perf_counter()
    log.delete()
    deleted = time.perf_counter() - started
    thread.join()
    return first, deleted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--value-bytes", type=int, default=1000)
    parser.add_argument("--segment-mb", type=int, default=64)
    parser.add_argument("--codec", choices=["none", "lz4", "zstd", "gzip"], default=None)
    parser.add_argument("--delete-during-pass", action="store_true")
    parser.add_argument("--dedupe-buffer-size", type=int, default=128 << 20, help="as the broker's log.cleaner.dedupe.buffer.size")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    codecs = [Compression[args.codec.upper()]] if args.codec else [Compression.NONE, Compression.LZ4, Compression.ZSTD, Compression.GZIP]
    if args.delete_during_pass:
        print("| codec | log MB | records | first segment written after s | delete took s |")
        print("|---|---:|---:|---:|---:|")
    else:
        print("| codec | log MB | records | clean s | MB/s cleaned | records removed | MB after | peak RSS MB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for codec in codecs:
        root = Path(tempfile.mkdtemp(prefix="fastlog-cleaner-", dir=args.dir))
        try:
            records = build(root / "t-0", args.mb, args.keys, codec, args.value_bytes, args.segment_mb)
            log = _core.Log(root / "t-0", {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": 0.0}, recovery_point=records + 1)
            before = log.size_bytes
            if args.delete_during_pass:
                first, deleted = clean_and_delete(log, root / "t-0")
                print(f"| {codec.name.lower()} | {before / 1e6:,.0f} | {records:,} | {first:.2f} | {deleted:.3f} |")
                continue
            started = time.perf_counter()
            stats = log.clean(now_ms=2_000_000_000_000, max_keys=int(args.dedupe_buffer_size // 24 * 0.9))
            elapsed = time.perf_counter() - started
            assert stats is not None
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"| {codec.name.lower()} | {before / 1e6:,.0f} | {records:,} | {elapsed:.2f} | "
                f"{before / 1e6 / elapsed:,.0f} | {stats[3]:,} | {log.size_bytes / 1e6:,.1f} | {peak:,.0f} |"
            )
            log.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
