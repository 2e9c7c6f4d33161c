"""Scale: one process with 10,000 partition logs and a small, capped set of open segment files.

`_core.set_open_file_limit(n)` caps how many segment files stay open across all logs (a global
LRU set, rust/src/files.rs); a `FileSlice` keeps its own reference to the file, so a fetch that
is being sent survives the set evicting (or the log deleting) that file.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from fastlog import _core
from fastlog.records import Record, encode_batch

PARTITIONS = 10_000
LIMIT = 256
DEFAULT_LIMIT = 1024  # the core's default, restored after each test
FD_CEILING = 600
SAMPLE_EVERY = 20  # read back 10,000 / 20 = 500 logs
REOPEN_EVERY = 5  # reopen 2,000 of them


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def records_in(i: int) -> int:
    return 1 + i % 3


def batch_for(i: int) -> bytes:
    """The batch appended to log `i`: 1-3 records whose contents name the log."""
    records = [Record(k, 1_000_000 + i, b"key-%d" % i, b"log %05d record %d " % (i, k) + b"x" * (i % 50)) for k in range(records_in(i))]
    return encode_batch(records, base_offset=0, partition_leader_epoch=0)


def stored_batch(i: int) -> bytes:
    """The bytes the log holds for `batch_for(i)`: offsets from 0, leader epoch 0."""
    return _core.assign_offsets(batch_for(i), 0, 0)


@pytest.fixture
def scale_dir(tmp_path: Path) -> Iterator[Path]:
    """Where the 10,000 logs go: tmpfs when there is one. Creating and closing a log costs about
    six fsyncs, which on a shared disk can take a minute for 10,000 logs; these tests are about
    descriptors and the file set, not durability (test_crash.py covers that)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        path = Path(tempfile.mkdtemp(prefix="fastlog-test-scale-", dir=shm))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path


@pytest.fixture
def file_limit() -> Iterator[int]:
    _core.set_open_file_limit(LIMIT)
    try:
        yield LIMIT
    finally:
        _core.set_open_file_limit(DEFAULT_LIMIT)


class FdWatch:
    """Asserts the process's open descriptors stay under a ceiling and the file set under its cap."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.peak = 0
        # Lowering the limit does not shrink a set that is already larger (see
        # test_lowering_the_limit_shrinks_the_open_file_set), so allow what earlier tests left.
        self.cap = max(LIMIT, _core.open_file_count())

    def check(self, where: str) -> None:
        n = open_fds()
        self.peak = max(self.peak, n)
        assert n < self.ceiling, (
            f"{n} file descriptors open {where} (ceiling {self.ceiling}, set_open_file_limit({LIMIT}), "
            f"open_file_count()={_core.open_file_count()})"
        )
        assert _core.open_file_count() <= self.cap, f"{_core.open_file_count()} files in the set {where}"


def check_log(i: int, log: _core.Log, read: bool) -> None:
    assert log.log_end_offset == records_in(i), f"log {i}"
    if read:
        log.high_watermark = log.log_end_offset
        slice_ = log.read(0, 1 << 20)
        assert slice_ is not None and slice_.base_offset == 0, f"log {i}"
        assert slice_.read() == stored_batch(i), f"log {i}"


def run_partitions(root: Path, hold: int, watch: FdWatch) -> None:
    """Creates PARTITIONS logs with one batch each, holding up to `hold` of them open at once;
    reads back a sample while they are held (after the file set has cycled many times), closes
    them, then reopens every REOPEN_EVERY-th log the same way and checks it again."""
    base_fds = open_fds()

    def in_waves(indices: list[int], open_log: Callable[[int], _core.Log], where: str) -> None:
        held: list[tuple[int, _core.Log]] = []
        for n, i in enumerate(indices):
            held.append((i, open_log(i)))
            if n % 250 == 0:
                watch.check(f"{where}, {n + 1} logs in")
            if len(held) == hold or n == len(indices) - 1:
                for j, log in held:
                    check_log(j, log, read=j % SAMPLE_EVERY == 0)
                watch.check(f"{where}, after reading back {len(held)} held logs")
                for _, log in held:
                    log.close()
                held.clear()

    def create(i: int) -> _core.Log:
        log = _core.Log(root / f"topic-{i}")
        assert log.append(batch_for(i)) == (0, records_in(i) - 1, -1, records_in(i))
        return log

    in_waves(list(range(PARTITIONS)), create, "creating")
    watch.check("after closing every log")
    assert open_fds() <= base_fds + 4, "closing the logs released their descriptors"
    in_waves(list(range(0, PARTITIONS, REOPEN_EVERY)),
             lambda i: _core.Log(root / f"topic-{i}", recovery_point=records_in(i)), "reopening")
    for i in range(0, PARTITIONS, REOPEN_EVERY):
        assert not (root / f"topic-{i}" / f"{0:020}.log.tmp").exists()
    assert open_fds() <= base_fds + 4


def test_ten_thousand_partitions_hold_a_bounded_number_of_fds(scale_dir: Path, file_limit: int) -> None:
    run_partitions(scale_dir, hold=PARTITIONS, watch=FdWatch(FD_CEILING))


def test_ten_thousand_partitions_through_a_small_file_set(scale_dir: Path, file_limit: int) -> None:
    """The same 10,000 logs, held 2,000 at a time (today each open log also costs two descriptors
    outside the cap, see the test above): every log correct, the set never above its cap, and
    every descriptor released on close."""
    hold = 2_000
    run_partitions(scale_dir, hold=hold, watch=FdWatch(FD_CEILING + 2 * hold))


def test_held_slice_reads_after_its_file_is_evicted_and_deleted(tmp_path: Path, file_limit: int) -> None:
    _core.set_open_file_limit(16)  # the smallest set the core allows
    target = _core.Log(tmp_path / "target")
    target.append(batch_for(7))
    target.high_watermark = target.log_end_offset
    held = target.read(0, 1 << 20)
    assert held is not None
    expected = stored_batch(7)
    # Touch more segment files than the set holds (it holds max(16, what is in it already)):
    # every file inserted before them, the target's included, is evicted.
    others = []
    for k in range(max(16, _core.open_file_count()) + 8):
        log = _core.Log(tmp_path / f"other-{k}")
        log.append(batch_for(k))
        log.high_watermark = log.log_end_offset
        assert log.read(0, 1 << 20) is not None
        others.append(log)
    assert _core.open_file_count() <= max(16, len(others))
    # The set no longer has the target's file: a new read opens it again, on another descriptor,
    # while the held slice still has its own.
    fresh = target.read(0, 1 << 20)
    assert fresh is not None and fresh.fileno() != held.fileno()
    assert fresh.read() == expected
    del fresh
    assert held.read() == expected
    r, w = os.pipe()
    try:
        assert os.sendfile(w, held.fileno(), held.position, len(held)) == len(held) == len(expected)
        assert os.read(r, len(expected) + 1) == expected
        # Deleting the whole log (topic deletion) under the slice does not break it either.
        target.delete()
        assert not (tmp_path / "target").exists()
        assert os.sendfile(w, held.fileno(), held.position, len(held)) == len(held)
        assert os.read(r, len(expected) + 1) == expected
        assert held.read() == expected
    finally:
        os.close(r)
        os.close(w)
        for log in others:
            log.close()


# Minimal reproductions of the core bugs found while writing the tests above.


def test_open_logs_stay_within_the_open_file_limit(tmp_path: Path, file_limit: int) -> None:
    _core.set_open_file_limit(16)
    before = open_fds()
    logs = [_core.Log(tmp_path / f"t-{i}") for i in range(100)]
    try:
        grown = open_fds() - before
        # Expected: at most 16 segment files (+ slack). Actual: 200 (an .index and a .timeindex
        # writer per log, Segment::index_writers opened by Segment::create / activate).
        assert grown <= 16 + 8, f"100 open logs with set_open_file_limit(16) hold {grown} more descriptors"
    finally:
        for log in logs:
            log.close()


def test_lowering_the_limit_shrinks_the_open_file_set(tmp_path: Path, file_limit: int) -> None:
    _core.set_open_file_limit(1024)
    logs = [_core.Log(tmp_path / f"t-{i}") for i in range(100)]
    try:
        for log in logs:
            log.append(batch_for(0))  # opens each .log through the set
        assert _core.open_file_count() >= 100
        _core.set_open_file_limit(16)
        extra = _core.Log(tmp_path / "extra")
        extra.append(batch_for(0))
        logs.append(extra)
        # Actual: still 100+: a full set evicts one file per insertion, never down to the new cap.
        assert _core.open_file_count() <= 16
    finally:
        for log in logs:
            log.close()


def test_dropping_a_log_releases_its_files(tmp_path: Path, file_limit: int) -> None:
    before = open_fds()
    for i in range(20):
        log = _core.Log(tmp_path / f"t-{i}")
        log.append(batch_for(i))
    del log
    gc.collect()
    # Actual: 20 descriptors stay open (PartitionLog has no Drop: only close() calls
    # files::forget), even after the directories are deleted, until the LRU evicts them.
    assert open_fds() <= before, f"{open_fds() - before} descriptors outlive 20 dropped logs"
