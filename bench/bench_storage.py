"""Storage-engine throughput and scale, side by side with plain OS calls on the same disk.

    python bench/bench_storage.py [--dir /tmp] [--quick]

One run, bounded in time (about 2 minutes on 2 cores), loopback/disk only; prints Markdown
tables (see bench/README.md, "Storage engine"):

1. Append MB/s through ``Log.append`` for 1 KB, 16 KB and 1 MB batches (prebuilt bytes), against
   ``os.write()`` of the same bytes to a plain file in the same directory.  Each case is timed
   twice: without any fsync (page cache only), and including a final fsync (``Log.flush()``:
   fdatasync of the segment and its two index files + fsync of the directory; plain file:
   ``os.fdatasync`` + fsync of the directory).  Best of ``--reps`` runs per side, the two sides
   alternating order.
2. Read MB/s through the zero-copy path (``Log.read`` 1 MiB at a time + ``os.sendfile`` to
   /dev/null) against ``cat segment > /dev/null`` and a bare ``os.sendfile`` loop over the same
   segment file; warm (page cache) and cold (pages dropped with posix_fadvise(DONTNEED), and a
   try of ``echo 3 > /proc/sys/vm/drop_caches`` reported as such).
3. ``_core.crc32c`` GB/s on a 64 MB buffer.
4. ``Log.read(offset, 1)`` latency with 10,000 segments in one log: p50/p99 in µs, with the default
   open-file set (1024), with a set big enough to hold every segment, and after reopening with
   ``recovery_point=<end>`` (sealed segments trusted).
5. Reopening 10,000 partition logs (a few batches each) with ``set_open_file_limit(1024)``:
   seconds, ``open_file_count()``, the process's open fds, memory maps and VmRSS.

No assertions on timings: the figures go in bench/README.md.
"""

from __future__ import annotations

import argparse
import errno
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

from fastlog import _core
from fastlog.records import Record, encode_batch

MB = 1 << 20
LIMIT_DEFAULT = 1024


# ----------------------------------------------------------------------------- helpers


def build_batch(size: int, value_size: int = 1000, timestamp: int = 1_700_000_000_000) -> bytes:
    """One uncompressed magic-2 batch of exactly `size` bytes, records of ~`value_size` bytes."""
    count = max(1, size // (value_size + 30))

    def encode(last_value: int) -> bytes:
        records = [Record(i, timestamp, b"key-%06d" % i, b"v" * value_size) for i in range(count - 1)]
        records.append(Record(count - 1, timestamp, b"key-%06d" % (count - 1), b"v" * max(0, last_value)))
        return encode_batch(records, base_offset=0, partition_leader_epoch=0)

    last = value_size
    for _ in range(8):  # varint widths shift by a byte or two: converge
        data = encode(last)
        if len(data) == size:
            return data
        last += size - len(data)
    return data


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def maps() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cached_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Cached:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def table(headers: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def say(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def timed_loop(write: Callable[[], None], count: int, seconds: float, check_every: int) -> int:
    """Calls `write` up to `count` times or until `seconds` have passed; returns how many."""
    deadline = time.perf_counter() + seconds
    n = 0
    while n < count:
        write()
        n += 1
        if n % check_every == 0 and time.perf_counter() > deadline:
            break
    return n


# ----------------------------------------------------------------------------- 1. append


def append_log(root: str, batch: bytes, total: int, seconds: float, fsync: bool) -> tuple[float, int]:
    path = tempfile.mkdtemp(prefix="append-log-", dir=root)
    log = _core.Log(path, {"max.message.bytes": 2 * len(batch)})
    append = log.append
    check = max(1, (4 * MB) // len(batch))
    t0 = time.perf_counter()
    n = timed_loop(lambda: append(batch), total // len(batch), seconds, check)
    if fsync:
        log.flush()
    elapsed = time.perf_counter() - t0
    log.close()
    shutil.rmtree(path)
    return elapsed, n * len(batch)


def append_plain(root: str, batch: bytes, total: int, seconds: float, fsync: bool) -> tuple[float, int]:
    path = tempfile.mkdtemp(prefix="append-plain-", dir=root)
    fd = os.open(os.path.join(path, "plain.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    check = max(1, (4 * MB) // len(batch))

    def write() -> None:
        if os.write(fd, batch) != len(batch):
            raise OSError("short write")

    t0 = time.perf_counter()
    n = timed_loop(write, total // len(batch), seconds, check)
    if fsync:
        os.fdatasync(fd)
        fsync_dir(path)
    elapsed = time.perf_counter() - t0
    os.close(fd)
    shutil.rmtree(path)
    return elapsed, n * len(batch)


def bench_append(root: str, total: int, seconds: float, reps: int) -> tuple[str, list[str]]:
    rows, notes = [], []
    for label, size in [("1 KB", 1024), ("16 KB", 16 * 1024), ("1 MB", MB)]:
        batch = build_batch(size)
        assert len(batch) == size, (label, len(batch))
        for fsync in (False, True):
            best = {"log": 0.0, "plain": 0.0}
            per_call = {"log": 0.0, "plain": 0.0}
            volume = {"log": 0, "plain": 0}
            for rep in range(reps):
                order = ["plain", "log"] if rep % 2 == 0 else ["log", "plain"]
                for side in order:
                    fn = append_log if side == "log" else append_plain
                    elapsed, written = fn(root, batch, total, seconds, fsync)
                    rate = written / MB / elapsed
                    if rate > best[side]:
                        best[side] = rate
                        per_call[side] = elapsed / (written // size) * 1e6
                        volume[side] = written
            ratio = best["log"] / best["plain"]
            rows.append([
                label,
                "yes" if fsync else "no",
                f"{volume['log'] // MB} MB",
                f"{best['log']:.0f}",
                f"{best['plain']:.0f}",
                f"**{ratio:.2f}**",
                f"{per_call['log']:.1f} / {per_call['plain']:.1f}",
            ])
            say(f"  append {label} fsync={fsync}: log {best['log']:.0f} MB/s, os.write {best['plain']:.0f} MB/s, ratio {ratio:.2f}")
    headers = ["batch", "final fsync timed", "bytes/run", "Log.append MB/s", "os.write MB/s", "ratio", "µs per call (log / os.write)"]
    return table(headers, rows), notes


# ----------------------------------------------------------------------------- 2. read


def try_drop_caches() -> str:
    before = cached_mb()
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as e:
        return f"`echo 3 > /proc/sys/vm/drop_caches` failed: {e.strerror}"
    after = cached_mb()
    worked = after < before * 0.8 or before - after > 64
    return (f"`echo 3 > /proc/sys/vm/drop_caches` {'worked' if worked else 'was accepted but freed little'}"
            f" (page cache {before:.0f} MB -> {after:.0f} MB)")


def evict(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_fraction(path: str) -> Optional[float]:
    """Fraction of the file in the page cache (util-linux fincore), or None if unavailable."""
    try:
        out = subprocess.run(["fincore", "-b", "-n", "-o", "RES,SIZE", path], capture_output=True, text=True, check=True).stdout.split()
        return int(out[0]) / max(1, int(out[1]))
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return None


def read_zero_copy(log: _core.Log, out_fd: int, batch_size: int, records_per_batch: int, fetch_bytes: int) -> int:
    offset, sent_total, end = 0, 0, log.log_end_offset
    while offset < end:
        s = log.read(offset, fetch_bytes)
        if s is None:
            break
        fd, position, remaining = s.fileno(), s.position, len(s)
        while remaining:
            sent = os.sendfile(out_fd, fd, position, remaining)
            if sent <= 0:
                raise OSError("sendfile sent nothing")
            position += sent
            remaining -= sent
        sent_total += len(s)
        offset = s.base_offset + (len(s) // batch_size) * records_per_batch
    return sent_total


def read_sendfile_plain(path: str, out_fd: int, chunk: int) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        size, position = os.fstat(fd).st_size, 0
        while position < size:
            sent = os.sendfile(out_fd, fd, position, min(chunk, size - position))
            if sent <= 0:
                break
            position += sent
        return position
    finally:
        os.close(fd)


def bench_read(root: str, size: int, reps: int) -> tuple[str, list[str]]:
    notes = []
    batch = build_batch(16 * 1024)
    records_per_batch = _core.validate_batches(batch)[0]
    path = tempfile.mkdtemp(prefix="read-", dir=root)
    log = _core.Log(path)
    for _ in range(size // len(batch)):
        log.append(batch)
    log.flush()
    log.high_watermark = log.log_end_offset
    segment = os.path.join(path, f"{0:020}.log")
    seg_size = os.path.getsize(segment)
    devnull = os.open(os.devnull, os.O_WRONLY)
    # Does sendfile accept /dev/null as the destination? (It does on Linux >= 2.6.33.)
    probe = log.read(0, 1)
    assert probe is not None
    accepted = os.sendfile(devnull, probe.fileno(), probe.position, len(probe)) == len(probe)
    notes.append(f"os.sendfile(/dev/null, segment) {'is accepted' if accepted else 'is refused'} on kernel {platform.release()}.")

    cases: dict[str, Callable[[], int]] = {
        "Log.read(1 MiB) + os.sendfile -> /dev/null": lambda: read_zero_copy(log, devnull, len(batch), records_per_batch, MB),
        "os.sendfile(8 MiB chunks) -> /dev/null, no Log": lambda: read_sendfile_plain(segment, devnull, 8 * MB),
        "`cat segment > /dev/null` (subprocess)": lambda: (subprocess.run(["cat", segment], stdout=devnull, check=True), seg_size)[1],
    }
    drop = try_drop_caches()
    notes.append(drop + ".")
    rows = []
    for name, fn in cases.items():
        fn()  # warm up: whole file in the page cache
        warm = max(seg_size / MB / _time(fn, seg_size) for _ in range(reps))
        cold_rates, residents = [], []
        for _ in range(reps):
            evict(segment)
            residents.append(resident_fraction(segment))
            cold_rates.append(seg_size / MB / _time(fn, seg_size))
        cold = max(cold_rates)
        res = residents[0]
        rows.append([name, f"{warm:.0f}", f"{cold:.0f}", "n/a" if res is None else f"{100 * res:.0f} %"])
        say(f"  read {name}: warm {warm:.0f} MB/s, cold {cold:.0f} MB/s")
    os.close(devnull)
    log.close()
    shutil.rmtree(path)
    notes.append(f"Segment: {seg_size // MB} MB of 16 KB batches; \"cold\" = pages dropped with fdatasync + "
                 "posix_fadvise(POSIX_FADV_DONTNEED) before each run (residency checked with fincore).")
    return table(["read path", "warm MB/s", "cold MB/s", "cached before cold run"], rows), notes


def _time(fn: Callable[[], int], expected: int) -> float:
    t0 = time.perf_counter()
    n = fn()
    elapsed = time.perf_counter() - t0
    if n != expected:
        raise AssertionError(f"read {n} bytes, expected {expected}")
    return elapsed


# ----------------------------------------------------------------------------- 3. crc32c


def bench_crc(seconds: float) -> str:
    buf = os.urandom(64 * MB)
    _core.crc32c(buf)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _core.crc32c(buf)
        n += 1
    elapsed = time.perf_counter() - t0
    gbps = n * len(buf) / elapsed / 1e9
    say(f"  crc32c: {gbps:.2f} GB/s")
    return table(["function", "buffer", "GB/s (10^9 B/s)"], [["_core.crc32c", "64 MiB", f"{gbps:.2f}"]])


# ----------------------------------------------------------------------------- 4. lookups


def sample_reads(log: _core.Log, end: int, count: int, seed: int) -> tuple[list[float], list[tuple[int, float]]]:
    rng = random.Random(seed)
    offsets = [rng.randrange(end) for _ in range(count)]
    read = log.read
    clock = time.perf_counter_ns
    lat: list[tuple[int, float]] = []
    for o in offsets:
        t0 = clock()
        s = read(o, 1)
        t1 = clock()
        if s is None or s.base_offset > o:
            raise AssertionError(f"read({o}) returned {s!r}")
        lat.append((o, (t1 - t0) / 1000))
    return sorted(v for _, v in lat), lat


def lookup_row(name: str, sorted_us: list[float], lat: list[tuple[int, float]], end: int) -> list[object]:
    old = sorted(v for o, v in lat if o < end // 10)
    new = sorted(v for o, v in lat if o >= end - end // 10)
    return [name, len(sorted_us), f"{pct(sorted_us, 50):.1f}", f"{pct(sorted_us, 99):.1f}",
            f"{pct(old, 50):.1f} / {pct(new, 50):.1f}", _core.open_file_count(), fds(), maps()]


def bench_lookups(root: str, segments: int, lookups: int) -> tuple[str, list[str]]:
    notes = []
    batch = build_batch(128, value_size=40)
    per_segment = 4
    config = {"segment.bytes": per_segment * len(batch)}
    path = tempfile.mkdtemp(prefix="lookup-", dir=root)
    _core.set_open_file_limit(LIMIT_DEFAULT)
    t0 = time.perf_counter()
    log = _core.Log(path, config)
    append = log.append
    for _ in range(segments * per_segment):
        append(batch)
    log.flush()
    build_s = time.perf_counter() - t0
    end = log.log_end_offset
    log.high_watermark = end
    count = log.segment_count
    notes.append(f"{count} segments of {per_segment} batches ({len(batch)} B each, 1 record), {end} offsets; "
                 f"building them took {build_s:.1f} s ({build_s / count * 1e6:.0f} µs per segment roll incl. 4 appends).")
    say(f"  lookups: built {count} segments in {build_s:.1f} s")
    rows = []
    s, lat = sample_reads(log, end, lookups, 1)
    fit = "mostly misses: open() per read" if count > LIMIT_DEFAULT else "every segment fits"
    rows.append(lookup_row(f"open-file set {LIMIT_DEFAULT} ({fit})", s, lat, end))
    _core.set_open_file_limit(count + 64)
    sample_reads(log, end, lookups, 2)  # warm the set
    for base in range(0, end, per_segment):
        log.read(base, 1)
    s, lat = sample_reads(log, end, lookups, 3)
    rows.append(lookup_row(f"open-file set {count + 64} (every segment open)", s, lat, end))
    log.close()
    _core.set_open_file_limit(LIMIT_DEFAULT)  # (only caps future opens; see the notes)
    maps_before = maps()
    t0 = time.perf_counter()
    log = _core.Log(path, config, recovery_point=end)
    reopen_s = time.perf_counter() - t0
    log.high_watermark = end
    notes.append(f"Reopen with recovery_point={end} (sealed segments trusted): {reopen_s:.2f} s, "
                 f"{maps() - maps_before} new memory maps right after open, repairs: {len(log.repairs)}.")
    s, lat = sample_reads(log, end, lookups, 4)
    rows.append(lookup_row(f"after reopen, open-file set {LIMIT_DEFAULT}", s, lat, end))
    for r in rows:
        say(f"  lookups {r[0]}: p50 {r[2]} µs p99 {r[3]} µs")
    log.close()
    shutil.rmtree(path)
    headers = ["case", "reads", "p50 µs", "p99 µs", "p50 oldest 10% / newest 10% of offsets",
               "open_file_count()", "process fds", "memory maps"]
    return table(headers, rows), notes


# ----------------------------------------------------------------------------- 5. partitions


def bench_partitions(root: str, partitions: int) -> tuple[str, list[str]]:
    notes = []
    _core.set_open_file_limit(LIMIT_DEFAULT)
    batch = build_batch(512, value_size=100)
    per_log = 3
    path = tempfile.mkdtemp(prefix="partitions-", dir=root)
    dirs = [os.path.join(path, f"topic-{i}") for i in range(partitions)]
    t0 = time.perf_counter()
    for d in dirs:  # one at a time: holding them all is what is measured below
        log = _core.Log(d)
        for _ in range(per_log):
            log.append(batch)
        log.close()
    create_s = time.perf_counter() - t0
    end = per_log * _core.validate_batches(batch)[0]
    say(f"  partitions: created {partitions} in {create_s:.1f} s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    base = (fds(), rss_mb(), maps())
    held: list[_core.Log] = []
    failure = None
    t0 = time.perf_counter()
    for i, d in enumerate(dirs):
        try:
            held.append(_core.Log(d, recovery_point=end))
        except _core.LogIOError as e:
            failure = (i, str(e))
            break
    open_s = time.perf_counter() - t0
    if failure is not None:
        for log in held[-32:]:  # free a few descriptors so that /proc/self/fd can be listed
            log.close()
        del held[-32:]
    n = len(held)
    wrong = sum(1 for log in held if log.log_end_offset != end)
    row = [f"{n} of {partitions}", f"{open_s:.2f}", f"{open_s / max(1, n) * 1e6:.0f}", _core.open_file_count(),
           f"{fds()} (+{fds() - base[0]})", f"{maps() - base[2]:+d}", f"{rss_mb():.0f} (+{rss_mb() - base[1]:.0f})"]
    say(f"  partitions: reopened {n} in {open_s:.2f} s; fds {fds()} rss {rss_mb():.0f} MB")
    t0 = time.perf_counter()
    for log in held:
        log.close()
    close_s = time.perf_counter() - t0
    held.clear()
    notes.append(f"Creating the {partitions} logs ({per_log} batches of {len(batch)} B each, then close, one at a "
                 f"time) took {create_s:.1f} s; closing the reopened ones took {close_s:.1f} s "
                 f"(close() flushes: fdatasync x3 per log even when nothing changed). {wrong} logs had a wrong end offset.")
    notes.append(f"RLIMIT_NOFILE is {soft} (hard {hard}).")
    if failure is not None:
        i, message = failure
        notes.append(f"**Holding all {partitions} open failed at log #{i}:** `{message}` — every open log keeps its "
                     "active segment's `.index` and `.timeindex` writers open (2 fds per log, outside the open-file "
                     "set's cap), so 10,000 logs need ~20,000 + 1024 descriptors.")
    shutil.rmtree(path)
    headers = ["logs held open", "reopen s", "µs per log", "open_file_count()", "process fds", "memory maps", "VmRSS MB"]
    return table(headers, [row]), notes


# ----------------------------------------------------------------------------- main


def machine(root: str) -> str:
    df = subprocess.run(["df", "-h", "--output=source,fstype,size,avail,target", root], capture_output=True, text=True).stdout.strip()
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    with open("/proc/meminfo") as f:
        mem = f"{int(f.readline().split()[1]) // 1024} MB"
    lines = [f"nproc: {os.cpu_count()} ({cpu}), RAM {mem}, kernel {platform.release()}, Python {platform.python_version()}",
             f"dir: {root}", "```", df, "```"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="parent of the temp dir (default: %(default)s)")
    ap.add_argument("--append-mb", type=int, default=256, help="bytes per append run, MB (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=1.5, help="time cap per append run (default: %(default)s)")
    ap.add_argument("--reps", type=int, default=3, help="runs per side, best kept (default: %(default)s)")
    ap.add_argument("--read-mb", type=int, default=256, help="segment size for the read test (default: %(default)s)")
    ap.add_argument("--segments", type=int, default=10_000)
    ap.add_argument("--lookups", type=int, default=20_000)
    ap.add_argument("--partitions", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.append_mb, args.seconds, args.reps, args.read_mb = 16, 0.3, 1, 32
        args.segments, args.lookups, args.partitions = 500, 2000, 500
    root = tempfile.mkdtemp(prefix="fastlog-bench-storage-", dir=args.dir)
    started = time.perf_counter()
    try:
        say("append ...")
        append_table, _ = bench_append(root, args.append_mb * MB, args.seconds, args.reps)
        say("read ...")
        read_table, read_notes = bench_read(root, args.read_mb * MB, args.reps)
        say("crc32c ...")
        crc_table = bench_crc(1.0)
        say("lookups ...")
        lookup_table, lookup_notes = bench_lookups(root, args.segments, args.lookups)
        say("partitions ...")
        part_table, part_notes = bench_partitions(root, args.partitions)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        _core.set_open_file_limit(LIMIT_DEFAULT)
    total = time.perf_counter() - started
    cmd = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    print(f"Command: `{cmd}` ({total:.0f} s)\n")
    print(machine(args.dir) + "\n")
    print(f"### Append (best of {args.reps}; each run up to {args.append_mb} MB or {args.seconds} s; "
          "\"final fsync timed\" = the clock stops after Log.flush() / os.fdatasync + dir fsync)\n")
    print(append_table + "\n")
    print("### Read (zero-copy path vs cat)\n")
    print(read_table + "\n")
    print("\n".join(f"- {n}" for n in read_notes) + "\n")
    print("### CRC32C\n")
    print(crc_table + "\n")
    print(f"### Offset lookup, {args.segments} segments in one log (`Log.read(random offset, 1)`)\n")
    print(lookup_table + "\n")
    print("\n".join(f"- {n}" for n in lookup_notes) + "\n")
    print(f"### Reopening {args.partitions} partition logs (`set_open_file_limit({LIMIT_DEFAULT})`)\n")
    print(part_table + "\n")
    print("\n".join(f"- {n}" for n in part_notes))


if __name__ == "__main__":
    main()
