"""The Rust core's own codec work: what a broker spends to decompress and to compress batches.

A broker decompresses every compressed batch a producer sends (to check its records), and
compresses when a topic's `compression.type` differs from the producer's, or when the cleaner
rewrites a batch. This times the core on those two paths, in one process, for each codec:

- "inflate": `_core.validate_batches` over batches of 64 records compressed by fastlog's own
  encoder (the produce path's check).
- "deflate": `Log.append` of the same records uncompressed into a log whose `compression.type`
  is the codec (the broker re-encodes each batch), minus nothing: the append's own write to
  the page cache is in it (`uncompressed` gives that part alone). `gzip:1` sets the log's
  `compression.gzip.level` (`zstd:-5`: `compression.zstd.level`).

Records are 1 KB JSON-like events from small vocabularies (zlib gets about 4x, like typical
event data). MB/s are of uncompressed record bytes. Best of `--rounds`. No assertions.

    python bench/bench_compression.py [--mb 32] [--rounds 3] [--codecs gzip,gzip:1,zstd]
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

from fastlog import _core
from fastlog.records import Compression, Record, encode_batch

RECORDS_PER_BATCH = 64
CODECS = {"uncompressed": Compression.NONE, "gzip": Compression.GZIP, "snappy": Compression.SNAPPY,
          "lz4": Compression.LZ4, "zstd": Compression.ZSTD}
WORDS = "account order payment refund cart checkout session login logout search view click item".split()


def event(rng: random.Random, i: int) -> bytes:
    fields = [f'"id":"{rng.getrandbits(64):016x}"', f'"ts":{1_700_000_000_000 + i}']
    while sum(len(f) for f in fields) < 960:
        fields.append(f'"{rng.choice(WORDS)}":"{rng.choice(WORDS)}-{rng.randrange(1000)}"')
    return ("{" + ",".join(fields) + "}").encode()[:1000]


def batches(mb: int, codec: Compression) -> tuple[list[bytes], int]:
    """Batches of `mb` MB of records, and their uncompressed record bytes."""
    rng = random.Random(7)
    out, raw, offset = [], 0, 0
    while raw < mb << 20:
        records = [Record(offset + i, 1_700_000_000_000, None, event(rng, offset + i)) for i in range(RECORDS_PER_BATCH)]
        raw += sum(len(r.value) for r in records)
        out.append(encode_batch(records, base_offset=offset, compression=codec))
        offset += RECORDS_PER_BATCH
    return out, raw


def inflate_seconds(data: list[bytes]) -> float:
    started = time.perf_counter()
    for batch in data:
        _core.validate_batches(batch)
    return time.perf_counter() - started


def deflate(plain: list[bytes], codec_name: str, level: str, directory: Path) -> tuple[float, int]:
    """(seconds the appends took, bytes the log then holds)."""
    path = directory / f"deflate-{codec_name}-0"
    config: dict[str, int | str] = {"compression.type": codec_name, "segment.bytes": 1 << 30}
    if level:
        config[f"compression.{codec_name}.level"] = int(level)
    log = _core.Log(path, config)
    try:
        started = time.perf_counter()
        for batch in plain:
            log.append(batch)
        return time.perf_counter() - started, log.size_bytes
    finally:
        log.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--codecs", default=",".join(CODECS))
    args = parser.parse_args()
    plain, raw = batches(args.mb, Compression.NONE)
    directory = Path(tempfile.mkdtemp(prefix="bench-compression-"))
    print(f"{len(plain)} batches of {RECORDS_PER_BATCH} records, {raw / 1e6:.1f} MB uncompressed")
    print("| codec | inflate MB/s | deflate (append) MB/s | stored by the core / plain |")
    print("|---|---:|---:|---:|")
    try:
        for spec in args.codecs.split(","):
            name, _, level = spec.partition(":")
            packed, _ = batches(args.mb, CODECS[name])
            inflate = min(inflate_seconds(packed) for _ in range(args.rounds))
            runs = [deflate(plain, name, level, directory) for _ in range(args.rounds)]
            seconds, stored = min(runs)
            ratio = stored / sum(map(len, plain))
            print(f"| {spec} | {raw / inflate / 1e6:,.0f} | {raw / seconds / 1e6:,.0f} | {ratio:.3f} |", flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
