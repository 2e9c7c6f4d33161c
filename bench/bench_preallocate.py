"""Appends to a partition while its unflushed 252 MiB are flushed, with `preallocate` off and on
in turn: the longest append, and how many went through during the flush.

Without reserved blocks, the flush's writeback allocates the delayed blocks holding ext4's
allocation lock of the inode, and an append that needs a block waits for it. With
`preallocate` the active segment's blocks are reserved ahead of the appends, so writeback only
converts them.

    python bench/bench_preallocate.py --rounds 3 [--dir PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from fastlog import _core
from fastlog.records import Record, encode_batch

UNFLUSHED_MIB = 252


def batch(value: bytes) -> bytes:
    return encode_batch([Record(0, 1000, b"k", value)], base_offset=0, partition_leader_epoch=0)


def one_flush(parent: Path, preallocate: bool) -> tuple[float, float, int]:
    """(flush ms, longest append ms, appends during the flush)."""
    directory = Path(tempfile.mkdtemp(dir=parent))
    try:
        log = _core.Log(directory / "t-0", {"segment.bytes": 1 << 30, "max.message.bytes": 64 << 20, "preallocate": preallocate})
        chunk = batch(os.urandom(1 << 20) * (UNFLUSHED_MIB // 4))
        for _ in range(4):
            log.append(chunk)
        flusher = threading.Thread(target=log.flush)
        small = batch(b"small")
        started = time.perf_counter()
        flusher.start()
        longest, appends = 0.0, 0
        while flusher.is_alive():
            before = time.perf_counter()
            log.append(small)
            longest = max(longest, time.perf_counter() - before)
            appends += 1
        flusher.join()
        took = time.perf_counter() - started
        log.close()
        return took * 1000, longest * 1000, appends
    finally:
        shutil.rmtree(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="flushes per setting, alternating")
    parser.add_argument("--dir", default=None, help="where the logs go (the disk measured)")
    args = parser.parse_args()
    parent = Path(args.dir or tempfile.gettempdir())
    results: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for preallocate in (False, True):
            results[preallocate].append(one_flush(parent, preallocate))
    print(f"| preallocate | flush of {UNFLUSHED_MIB} MiB, ms | longest append during it, ms | appends during it |")
    print("|---|---|---|---|")
    for preallocate, rows in results.items():
        flushes = ", ".join(f"{r[0]:.0f}" for r in rows)
        longest = ", ".join(f"{r[1]:.2f}" for r in rows)
        appends = ", ".join(str(r[2]) for r in rows)
        print(f"| {'on' if preallocate else 'off'} | {flushes} | {longest} | {appends} |")


if __name__ == "__main__":
    main()
