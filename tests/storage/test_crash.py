"""SIGKILL a writing process at random moments; what it flushed must survive byte for byte."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from fastlog import _core
from fastlog.records import Record, encode_batch

CONFIG = {"segment.bytes": 256 * 1024, "index.interval.bytes": 1024}

# The writer appends batches whose content is a function of their offset, flushes every few
# batches, and only then reports the flushed log end offset on stdout.
WRITER = """
import sys
from fastlog import _core
from tests.storage.test_crash import CONFIG, expected_batch
log = _core.Log(sys.argv[1], CONFIG, recovery_point=int(sys.argv[2]))
print("ready", flush=True)
while True:
    offset = log.log_end_offset
    log.append(expected_batch(offset))
    if offset % 5 == 0:
        log.flush()
        print(log.log_end_offset, flush=True)
"""


def expected_batch(offset: int) -> bytes:
    """The batch the writer puts at `offset`: three records, sizes varying with the offset."""
    size = 200 + (offset * 7919) % 9000
    records = [Record(offset + i, 1_000_000 + offset, b"key-%d" % (offset + i), bytes([offset % 251]) * size) for i in range(3)]
    return encode_batch(records, base_offset=offset, partition_leader_epoch=0)


def check_log(path: Path, flushed: int, recovery_point: int) -> int:
    log = _core.Log(path, CONFIG, recovery_point=recovery_point)
    end = log.log_end_offset
    assert end >= flushed, f"flushed up to {flushed} but the log ends at {end}; repairs: {log.repairs}"
    log.high_watermark = end
    offset = 0
    while offset < end:
        slice_ = log.read(offset, 1 << 16)
        assert slice_ is not None and slice_.base_offset == offset, f"gap at offset {offset}"
        data = slice_.read()
        position = 0
        while position < len(data):
            want = expected_batch(offset)
            assert data[position : position + len(want)] == want, f"batch at {offset} differs"
            position += len(want)
            offset += 3
    assert offset == end
    # The recovered log accepts new appends where it ends.
    assert log.append(expected_batch(end))[0] == end
    log.close()
    return end + 3


def test_sigkill_at_random_moments_keeps_flushed_batches(tmp_path: Path) -> None:
    rng = random.Random(2024)
    path = tmp_path / "crash-0"
    root = Path(__file__).resolve().parents[2]
    flushed = 0
    recovery_point = 0
    kills = 0
    deadline = time.monotonic() + 120
    while kills < 50 and time.monotonic() < deadline:
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(recovery_point)],
            stdout=subprocess.PIPE,
            cwd=root,
            text=True,
        )
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.15))
        writer.send_signal(signal.SIGKILL)
        out, _ = writer.communicate(timeout=30)
        reports = [int(line) for line in out.split() if line.isdigit()]
        if reports:
            flushed = max(flushed, reports[-1])
        # Half the time, reopen as if the recovery point checkpoint had been written.
        recovery_point = flushed if rng.random() < 0.5 else 0
        flushed = check_log(path, flushed, recovery_point)
        kills += 1
    assert kills >= 50, f"only {kills} kills before the deadline"
    assert flushed > 100
