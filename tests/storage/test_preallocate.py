"""`preallocate` (off by default, as in Kafka): the active segment's blocks are reserved ahead of
its appends, so that an append does not wait for the filesystem to allocate blocks while a
flush's writeback holds the inode's allocation lock (bench/README.md, "preallocate")."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from fastlog.client import Client
from fastlog.records import Record, decode_batches, encode_batch
from tests.conftest import BrokerProcess

FALLOC_FL_KEEP_SIZE = 1


def reserves_blocks(directory: Path) -> bool:
    """Whether this filesystem reserves blocks past a file's end (fallocate with KEEP_SIZE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    path = directory / "probe"
    with open(path, "wb") as f:
        supported = libc.fallocate(f.fileno(), FALLOC_FL_KEEP_SIZE, 0, 1 << 20) == 0
    path.unlink()
    return supported


def allocated_past_end(path: Path) -> int:
    stat = path.stat()
    return stat.st_blocks * 512 - stat.st_size


def test_a_topic_reserves_its_active_segments_blocks_when_told_to(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    if not reserves_blocks(tmp_path):
        pytest.skip("this filesystem cannot reserve blocks past a file's end")
    broker = BrokerProcess(tmp_path / "data").start()
    try:
        with Client(broker.bootstrap) as client:
            client.create_topic("reserved", 1, configs={"preallocate": "true"})
            client.create_topic("plain", 1)
            for topic in ("reserved", "plain"):
                client.produce({(topic, 0): [Record(i, 0, None, os.urandom(1000)) for i in range(1000)]})
        active = f"{0:020}.log"
        reserved = allocated_past_end(broker.data_dir / "reserved-0" / active)
        plain = allocated_past_end(broker.data_dir / "plain-0" / active)
        # (XFS reserves some past the end of a file being written by itself: compared, not zero.)
        assert reserved >= plain + 900_000, f"{reserved} bytes reserved past 1 MB of records (as much again), {plain} without"
        assert broker.stop() == 0
        assert allocated_past_end(broker.data_dir / "reserved-0" / active) < 8192, "a clean stop gives it back"
    finally:
        broker.stop()


def test_reserved_blocks_change_nothing_a_reader_or_a_recovery_sees(tmp_path: Path) -> None:
    """A log left without a clean stop (its reserve still past the end, as after a crash) opens
    with nothing to repair and every record there, gives the reserve back, and takes appends
    where it ended."""
    from fastlog import _core

    log = _core.Log(tmp_path / "t-0", {"preallocate": True})
    for i in range(100):
        log.append(encode_batch([Record(0, 0, None, b"v%d" % i)]))
    end = log.log_end_offset
    active = tmp_path / "t-0" / f"{0:020}.log"
    if reserves_blocks(tmp_path):
        assert allocated_past_end(active) > 0
    del log
    again = _core.Log(tmp_path / "t-0", {"preallocate": True})
    assert (again.log_end_offset, again.repairs) == (end, [])
    assert allocated_past_end(active) < 8192, "the open gave back what the crash left"
    again.high_watermark = end
    values = [r.value for b in decode_batches(again.read(0, 1 << 20).read()) for r in b.records]
    assert values == [b"v%d" % i for i in range(100)]
    assert again.append(encode_batch([Record(0, 0, None, b"after")]))[0] == end
