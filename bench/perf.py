"""fastlog at the machine's limits, measured side by side (issue 7).

One command starts a broker on a free loopback port with a temp data dir, measures the machine
(loopback TCP between two processes, sequential disk writes with and without fsync, a cold
sequential read) and the load generator's own ceiling and latency (librdkafka's mock cluster,
`test.mock.num.brokers=1`), runs the scenarios against fastlog with confluent-kafka clients and
kcat in their own processes (and raw Fetch requests for the broker's own fetch rate), stops
everything and prints a Markdown table with fastlog's figures as ratios of those limits.

    python bench/perf.py                 # full run, ~3.5 minutes on the 2-core VM
    python bench/perf.py --quick         # small sizes, ~1.5 minutes (smoke test)
    python bench/perf.py --only produce  # a subset: machine,ceiling,produce,acks,consume,latency,scale,conns,security

Nothing here asserts on timings; the targets of issue 7 are printed next to the figures.
Loopback only. Needs root for `echo 3 > /proc/sys/vm/drop_caches` (skipped with a note otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

PARTITIONS = 6
CTX = mp.get_context("spawn")
REPO = Path(__file__).resolve().parents[1]
LOADGEN = REPO / "target" / "release" / "examples" / "loadgen"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- machine limits


def _sink(ports: "mp.Queue[int]") -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    ports.put(server.getsockname()[1])
    conn, _ = server.accept()
    buf = bytearray(1 << 20)
    while conn.recv_into(buf):
        pass


def loopback_limit(seconds: float) -> float:
    """MB/s one process pushes to another over loopback TCP (1 MiB writes, data discarded)."""
    ports: mp.Queue = CTX.Queue()
    receiver = CTX.Process(target=_sink, args=(ports,))
    receiver.start()
    sock = socket.create_connection(("127.0.0.1", ports.get(timeout=30)))
    chunk = b"x" * (1 << 20)
    sent = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        sock.sendall(chunk)
        sent += len(chunk)
    sock.close()
    elapsed = time.perf_counter() - start
    receiver.join(30)
    return sent / elapsed / 1e6


def disk_limit(directory: Path, total: int, fsync: bool) -> float:
    """MB/s of sequential 1 MiB os.write()s of `total` bytes to a new file (+ fdatasync at the end)."""
    path = directory / f"disk-probe-{fsync}"
    chunk = os.urandom(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        start = time.perf_counter()
        for _ in range(total // len(chunk)):
            os.write(fd, chunk)
        if fsync:
            os.fdatasync(fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink()
    return total / elapsed / 1e6


def disk_read_limit(directory: Path, total: int) -> float:
    """MB/s of sequential 1 MiB reads of a `total`-byte file from disk, the whole file advised
    WILLNEED first (page cache dropped first; from the page cache if it cannot be dropped)."""
    path = directory / "disk-read-probe"
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(total // len(chunk)):
            f.write(chunk)
    try:
        drop_caches()
        buf = bytearray(1 << 20)
        read = 0
        with open(path, "rb", buffering=0) as f:
            start = time.perf_counter()
            if hasattr(os, "posix_fadvise"):  # read ahead as the broker does for a fetch
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)
            while n := f.readinto(buf):
                read += n
            elapsed = time.perf_counter() - start
    finally:
        path.unlink()
    return read / elapsed / 1e6


def drop_caches() -> str:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "page cache dropped (echo 3 > /proc/sys/vm/drop_caches)"
    except OSError as e:
        return f"could not drop the page cache ({e}); the consume figure is from the page cache"


# ---------------------------------------------------------------- clients (each in its own process)

PRODUCER_BASE = {
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "queue.buffering.max.messages": 2_000_000,
    "queue.buffering.max.kbytes": 2_000_000,
    "enable.idempotence": False,
    "compression.type": "none",
}


def produce_flat_out(producer: Any, topic: str, partitions: int, count: int, size: int) -> int:
    """Queues `count` records of `size` bytes round-robin over `partitions` in runs of 10,000 per
    partition with `produce_batch` (one C call per run, so the Python side costs little per record),
    keeping at most ~1M records queued; returns how many were acknowledged without error."""
    value = os.urandom(size)
    run = 10_000
    acked = [0]

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            acked[0] += 1

    # One delivery callback per 1,000 records keeps the Python side cheap; the count is scaled.
    template = [{"value": value, "callback": on_delivery} if i % 1000 == 0 else {"value": value} for i in range(run)]
    queued = 0
    i = 0
    while queued < count:
        n = min(run, count - queued)
        messages = template if n == run else template[:n]
        while len(producer) > 1_000_000:
            producer.poll(0.001)
        done = producer.produce_batch(topic, messages, partition=i % partitions)
        if done != n:
            raise RuntimeError(f"produce_batch queued {done} of {n}: {[m.get('_error') for m in messages if '_error' in m][:1]}")
        queued += n
        i += 1
        producer.poll(0)
    producer.flush(300)
    return min(count, acked[0] * 1000)


def _produce(config: dict, topic: str, partitions: int, count: int, size: int, result: "mp.Queue") -> None:
    """Produces `count` records flat out; puts (records acked, seconds)."""
    from confluent_kafka import Producer

    producer = Producer({**PRODUCER_BASE, **config})
    producer.list_topics(topic, timeout=30)  # connect and learn metadata outside the clock
    start = time.perf_counter()
    acked = produce_flat_out(producer, topic, partitions, count, size)
    result.put((acked, time.perf_counter() - start))


def _mock_cluster(size: int, count: int, ready: "mp.Queue", result: "mp.Queue", stop: Any) -> None:
    """A producer against librdkafka's built-in mock broker: the generator's own ceiling. (The mock
    keeps only its newest segments, so it cannot serve a consumer ceiling of the same size.)"""
    from confluent_kafka import Producer

    producer = Producer({**PRODUCER_BASE, "bootstrap.servers": "", "test.mock.num.brokers": 1, "acks": "1"})
    metadata = producer.list_topics("mock", timeout=30)
    partitions = len(metadata.topics["mock"].partitions)
    broker = next(iter(metadata.brokers.values()))
    start = time.perf_counter()
    acked = produce_flat_out(producer, "mock", partitions, count, size)
    elapsed = time.perf_counter() - start
    result.put((acked, elapsed, f"{broker.host}:{broker.port}", partitions))
    stop.wait(600)


def _consume(bootstrap: str, topic: str, partitions: int, count: int, result: "mp.Queue") -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "perf",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 8_388_608,
            "fetch.wait.max.ms": 100,
            "queued.max.messages.kbytes": 1_000_000,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = size = 0
    start = last = time.perf_counter()
    deadline = start + 300
    # Until `count` records, or 3 s without one.
    while got < count and time.perf_counter() < min(deadline, last + 3):
        for msg in consumer.consume(100_000, 0.5):
            if msg.error() is None:
                got += 1
                size += len(msg)
                last = time.perf_counter()
    elapsed = last - start
    consumer.close()
    result.put((got, size, elapsed))


def kcat_consume(bootstrap: str, topic: str, partitions: Optional[list[int]] = None) -> tuple[int, float]:
    """kcat (librdkafka's C consumer) reads `topic` from the start to its end, printing only
    offsets; returns (records, seconds from exec to exit, metadata and connecting included)."""
    command = ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%o\n",
               "-X", "fetch.max.bytes=52428800", "-X", "max.partition.fetch.bytes=8388608",
               "-X", "queued.max.messages.kbytes=1000000", "-X", "fetch.wait.max.ms=100"]
    runs = [command + ["-p", str(p)] for p in partitions] if partitions else [command]
    start = time.perf_counter()
    processes = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for c in runs]
    records = sum(p.communicate(timeout=600)[0].count(b"\n") for p in processes)
    return records, time.perf_counter() - start


def _raw_fetch(bootstrap: str, topic: str, partitions: int, start_together: Any, result: "mp.Queue") -> None:
    """The broker's fetch path without a client library: Fetch v11 requests for every partition
    (8 MiB each, 50 MiB per response) from offset 0 to the high watermarks. Each response is
    received into one reused buffer and decoded with fastlog's codec (records stay a zero-copy
    view); only batch headers are read, to find the next offset. `start_together`, a barrier
    or None, lines several readers up before their clocks start. Puts (records, bytes, and the
    clock's start and end: perf_counter is the system's monotonic clock, one for every process)."""
    import struct

    from fastlog import protocol

    host, port = bootstrap.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    F = protocol.FetchRequest
    buffer = bytearray(64 << 20)
    view = memoryview(buffer)
    offsets = dict.fromkeys(range(partitions), 0)
    ends: dict[int, int] = {}
    batch_header = struct.Struct(">qi")
    total = 0

    def receive(size: int) -> memoryview:
        got = 0
        while got < size:
            n = sock.recv_into(view[got:size])
            if not n:
                raise ConnectionError("the broker closed the connection")
            got += n
        return view[:size]

    if start_together is not None:
        start_together.wait(120)
    start = time.perf_counter()
    for correlation_id in itertools.count():
        if ends and all(offsets[p] >= ends[p] for p in offsets):
            break
        request = F(replica_id=-1, max_wait_ms=100, min_bytes=1, max_bytes=52_428_800, isolation_level=0, session_id=0,
                    session_epoch=-1, topics=[F.FetchTopic(topic=topic, partitions=[
                        F.FetchPartition(partition=p, fetch_offset=o, partition_max_bytes=8_388_608) for p, o in offsets.items()])])
        header = protocol.RequestHeader(request_api_key=F.API_KEY, request_api_version=11, correlation_id=correlation_id, client_id="perf")
        payload = protocol.encode_request(header, request).getvalue()
        sock.sendall(len(payload).to_bytes(4, "big") + payload)
        (size,) = struct.unpack(">i", receive(4))
        reader = protocol.Reader(receive(size))
        protocol.ResponseHeader.decode(reader, protocol.response_header_version(F.API_KEY, 11))
        for data in protocol.FetchResponse.decode(reader, 11).responses[0].partitions:
            ends[data.partition_index] = data.high_watermark
            records = data.records or b""
            position = 0
            while position + 27 <= len(records):
                base, length = batch_header.unpack_from(records, position)
                if position + 12 + length > len(records):
                    break  # a partial batch at the end of the fetch
                last_delta = int.from_bytes(records[position + 23 : position + 27], "big")
                offsets[data.partition_index] = base + last_delta + 1
                position += 12 + length
            total += position
    end = time.perf_counter()
    sock.close()
    result.put((sum(offsets.values()), total, start, end))


def warm_raw_fetch(bootstrap: str, topic: str, readers: int) -> tuple[int, int, float]:
    """`readers` processes of `_raw_fetch` at once, each reading all of `topic`: records and bytes
    summed over them, and the seconds from the first one's start to the last one's end."""
    results = in_children(readers, _raw_fetch, bootstrap, topic, PARTITIONS, CTX.Barrier(readers))
    return sum(r[0] for r in results), sum(r[1] for r in results), max(r[3] for r in results) - min(r[2] for r in results)


def _latency(bootstrap: str, topic: str, rate: int, seconds: float, size: int, linger_ms: int, partitions: int, result: "mp.Queue") -> None:
    """Produces at a fixed rate, paced every half millisecond: what is due goes out in one
    `produce_batch` to the next partition in turn. One record in 100 is timed with librdkafka's
    own produce()->delivery latency (Message.latency())."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "1",
            "linger.ms": linger_ms,
            "socket.nagle.disable": True,
            "enable.idempotence": False,
            "queue.buffering.max.messages": 2_000_000,
        }
    )
    producer.list_topics(topic, timeout=30)
    latencies: list[float] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            latencies.append(msg.latency())

    value = os.urandom(size)
    template = [{"value": value, "callback": on_delivery} if i % 100 == 0 else {"value": value} for i in range(100_000)]
    sent = 0
    tick = 0
    start = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now - start >= seconds:
            break
        due = min(int((now - start) * rate) - sent, len(template))
        if due > 0:
            producer.produce_batch(topic, template[:due], partition=tick % partitions)
            sent += due
            tick += 1
        producer.poll(0)
        time.sleep(0.0005)
    producer.flush(60)
    result.put((sent, time.perf_counter() - start, sorted(latencies)))


def _mock_latency(rate: int, seconds: float, size: int, linger_ms: int, result: "mp.Queue") -> None:
    """`_latency` against librdkafka's mock broker: the generator's own latency at that rate."""
    from confluent_kafka import Producer

    mock = Producer({"bootstrap.servers": "", "test.mock.num.brokers": 1})
    metadata = mock.list_topics("mock", timeout=30)
    broker = next(iter(metadata.brokers.values()))
    inner: mp.Queue = CTX.Queue()
    _latency(f"{broker.host}:{broker.port}", "mock", rate, seconds, size, linger_ms, len(metadata.topics["mock"].partitions), inner)
    result.put(inner.get())


def _mock_broker(ready: "mp.Queue", stop: Any) -> None:
    """librdkafka's in-memory mock broker, up until `stop` is set. Puts its address and the
    partitions of its topic "mock"."""
    from confluent_kafka import Producer

    mock = Producer({"bootstrap.servers": "", "test.mock.num.brokers": 1})
    metadata = mock.list_topics("mock", timeout=30)
    broker = next(iter(metadata.brokers.values()))
    ready.put((f"{broker.host}:{broker.port}", len(metadata.topics["mock"].partitions)))
    stop.wait(600)


@contextlib.contextmanager
def mock_broker() -> Any:
    """(address, partitions) of a mock broker in a child process, for a generator in another."""
    ready: mp.Queue = CTX.Queue()
    stop = CTX.Event()
    process = CTX.Process(target=_mock_broker, args=(ready, stop))
    process.start()
    try:
        yield ready.get(timeout=60)
    finally:
        stop.set()
        process.join(30)
        if process.is_alive():
            process.kill()


def find_loadgen(path: str, notes: list[str]) -> Optional[Path]:
    """The Rust generator (bench/loadgen.rs): `path`, else target/release/examples/loadgen, built
    (or found up to date) by cargo when cargo is here. None, with a note saying why: neither."""
    if path:
        if Path(path).is_file():
            return Path(path)
        notes.append(f"latency: no Rust generator rows (--loadgen {path}: no such file)")
        return None
    if shutil.which("cargo"):
        build = subprocess.run(["cargo", "build", "--quiet", "--release", "--no-default-features", "--example", "loadgen"],
                               cwd=REPO, capture_output=True, text=True)
        if build.returncode != 0:
            if LOADGEN.exists():
                notes.append(f"latency: cargo build failed, the Rust generator rows use the binary there, perhaps stale ({build.stderr.strip()[-200:]})")
                return LOADGEN
            notes.append(f"latency: no Rust generator rows (cargo build failed: {build.stderr.strip()[-300:]})")
            return None
    if LOADGEN.exists():
        return LOADGEN
    notes.append("latency: no Rust generator rows (no target/release/examples/loadgen and no cargo to build it)")
    return None


def run_loadgen(binary: Path, bootstrap: str, topic: str, partitions: int, rate: int, seconds: float, size: int, cpu: Optional[int]) -> dict:
    """One paced run of the Rust generator: its JSON line (records, latency percentiles in ms).
    RuntimeError when it printed none (no broker, bad arguments) or acked no record."""
    command = [str(binary), "--bootstrap", bootstrap, "--topic", topic, "--partitions", str(partitions),
               "--rate", str(rate), "--seconds", str(seconds), "--size", str(size)]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 90)
    if not done.stdout.strip():
        raise RuntimeError(f"loadgen exited {done.returncode}: {done.stderr.strip()}")
    run = json.loads(done.stdout)
    if not run["acked"]:
        raise RuntimeError(f"loadgen: no record acked of {run['sent']:,} ({run['error']})")
    return run


def _scale_producer(bootstrap: str, topic: str, partitions: int, rate: int, seconds: float, size: int, result: "mp.Queue") -> None:
    """`rate` records/s spread over every partition in turn (partition i % partitions).
    Puts (sent, acked by the end of the window, acked in all, seconds to the last ack, the
    producer process's CPU seconds)."""
    from confluent_kafka import Producer

    producer = Producer({**PRODUCER_BASE, "bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 20})
    producer.list_topics(topic, timeout=60)
    acked = [0]

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            acked[0] += 1

    value = os.urandom(size)
    sent = 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        due = int((time.perf_counter() - start) * rate)
        while sent < due:
            producer.produce(topic, value, partition=sent % partitions, on_delivery=on_delivery)
            sent += 1
        producer.poll(0.002)
    in_window = acked[0]
    producer.flush(60)
    result.put((sent, in_window, acked[0], time.perf_counter() - start, time.process_time() - cpu0))


def _busy_producers(bootstrap: str, topic: str, clients: int, seconds: float, size: int, result: "mp.Queue") -> None:
    """`clients` Producer instances (one connection each) producing flat out for `seconds`."""
    from confluent_kafka import Producer

    producers = [Producer({**PRODUCER_BASE, "bootstrap.servers": bootstrap, "acks": "1"}) for _ in range(clients)]
    for p in producers:
        p.list_topics(topic, timeout=30)
    value = os.urandom(size)
    sent = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for p in producers:
            for _ in range(1000):
                try:
                    p.produce(topic, value, partition=sent % PARTITIONS)
                    sent += 1
                except BufferError:
                    p.poll(0.001)
                    break
            p.poll(0)
    for p in producers:
        p.flush(60)
    result.put((sent, time.perf_counter() - start))


def in_child(target: Any, *args: Any, timeout: float = 600) -> Any:
    result: mp.Queue = CTX.Queue()
    process = CTX.Process(target=target, args=(*args, result))
    process.start()
    try:
        return result.get(timeout=timeout)
    finally:
        process.join(30)
        if process.is_alive():
            process.kill()


def in_children(n: int, target: Any, *args: Any, timeout: float = 600) -> list:
    result: mp.Queue = CTX.Queue()
    processes = [CTX.Process(target=target, args=(*args, result)) for _ in range(n)]
    for p in processes:
        p.start()
    try:
        return [result.get(timeout=timeout) for _ in processes]
    finally:
        for p in processes:
            p.join(30)
            if p.is_alive():
                p.kill()


# ---------------------------------------------------------------- the broker


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 65536), max(hard, 65536)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def describe_interpreter(python: str) -> str:
    """Which CPython runs the broker, and whether the GIL is on once the broker's modules are
    loaded (a free-threaded build turns it back on for an extension that does not declare itself
    safe: fastlog's Rust core, cramjam, xxhash...)."""
    probe = "\n".join((
        "import sys, sysconfig, fastlog.broker, fastlog.cli",
        "build = ' free-threaded' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''",
        "gil = getattr(sys, '_is_gil_enabled', lambda: True)()",
        "print(f'CPython {sys.version.split()[0]}{build}, GIL {\"on\" if gil else \"off\"} with fastlog loaded')",
    ))
    return subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()


def _cpu_seconds(stat: Path) -> float:
    """utime + stime of a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat file."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BrokerProcess:
    def __init__(self, data_dir: Path, overrides: list[str], profile: Optional[list[str]] = None,
                 python: str = sys.executable) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.metrics_port = free_port()
        command = [python, "-m", "fastlog", "serve", "--log-level", "WARNING",
                   "--override", f"listeners=PLAINTEXT://{self.bootstrap}", "--override", f"log.dirs={data_dir}",
                   "--override", f"metrics.port={self.metrics_port}"]
        for o in overrides:
            command += ["--override", o]
        if profile:
            command = profile + command[1:]
        started = time.perf_counter()
        self.process = subprocess.Popen(command, preexec_fn=_raise_fd_limit)
        deadline = started + 600
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"broker exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.perf_counter() > deadline:
                    raise
                time.sleep(0.01)
        self.startup_s = time.perf_counter() - started

    def status(self, field: str) -> int:
        """A /proc/<pid>/status memory field (VmRSS, VmHWM) in kB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return -1

    def cpu_seconds(self) -> float:
        return _cpu_seconds(Path(f"/proc/{self.process.pid}/stat"))

    def per_thread(self, read: Callable[[Path], float]) -> dict[str, float]:
        """`read` of each of the broker's threads' /proc directories, by thread id; a thread
        that ended meanwhile (or a file this kernel lacks) is left out."""
        threads = {}
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                threads[task.name] = read(task)
            except (OSError, IndexError, ValueError):
                pass
        return threads

    def thread_cpu_seconds(self) -> dict[str, float]:
        """CPU seconds of each of the broker's threads so far, by thread id."""
        return self.per_thread(lambda task: _cpu_seconds(task / "stat"))

    def run_queue_seconds(self) -> float:
        """How long the broker's threads have waited, runnable, for a CPU (the second field of
        each thread's /proc schedstat): time in which a request's own time may run on while
        the broker does nothing, because another process holds the cores."""
        return sum(self.per_thread(lambda task: int((task / "schedstat").read_text().split()[1]) / 1e9).values())

    def niceness(self) -> int:
        """The broker's nice value (the 19th field of /proc/<pid>/stat)."""
        return int(Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()[16])

    def cpu_spread(self, before: dict[str, float], elapsed: float) -> str:
        """How the broker's CPU since `before` (thread_cpu_seconds) fell on its threads: the
        busiest one's share in cores, and how many threads used at least a tenth of a core."""
        used = [(s - before.get(t, 0.0)) / elapsed for t, s in self.thread_cpu_seconds().items()]
        busy = [u for u in used if u >= 0.1]
        return f"busiest thread {max(used, default=0.0):.2f} cores, {len(busy)} thread(s) over 0.1"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def create_topic(bootstrap: str, topic: str, partitions: int, config: Optional[dict] = None) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})], request_timeout=600).values():
        future.result(600)


def histograms(metrics_port: int) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """The broker's histograms from /metrics: (name, label value) -> [(upper bound, cumulative count)]."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if not name.endswith("_bucket") or " " not in rest:
            continue
        labels, _, count = rest.rpartition(" ")
        pairs = dict(part.split("=", 1) for part in labels.rstrip("}").split(","))
        bound = pairs.pop("le").strip('"')
        label = next(iter(pairs.values()), "").strip('"')
        out.setdefault((name[: -len("_bucket")], label), []).append((float(bound), float(count)))
    return out


def histogram_delta_percentile(before: dict, after: dict, key: tuple[str, str], p: float) -> tuple[float, int]:
    """(the p-th percentile, observations) of what `key`'s histogram observed between two
    scrapes, interpolated linearly within its bucket; (nan, 0) when it observed nothing."""
    old = dict(before.get(key, []))
    buckets = [(bound, count - old.get(bound, 0.0)) for bound, count in after.get(key, [])]
    total = buckets[-1][1] if buckets else 0
    if not total:
        return float("nan"), 0
    wanted, lower, below = total * p / 100, 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= wanted:
            if bound == float("inf"):
                return lower, int(total)
            share = (wanted - below) / max(cumulative - below, 1e-9)
            return lower + (bound - lower) * share, int(total)
        lower, below = bound, cumulative
    return lower, int(total)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


# ---------------------------------------------------------------- the run


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []
        self.notes: list[str] = []

    def add(self, scenario: str, records: str = "", mbs: str = "", ratio: str = "", target: str = "", other: str = "") -> None:
        self.rows.append((scenario, records, mbs, ratio, target, other))
        print(f"  [{time.strftime('%H:%M:%S')}] {scenario}: {records} rec/s, {mbs} MB/s, {ratio} {other}", flush=True)

    def render(self) -> str:
        head = ("scenario", "records/s", "MB/s", "ratio", "target", "other")
        lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---:|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in self.notes)


def latency_figures(latencies: list[float]) -> str:
    """p50, p99 and p99.9 of sorted latencies in seconds, as the table prints them."""
    return ", ".join(f"p{p} {percentile(latencies, p) * 1000:.2f} ms" for p in (50, 99, 99.9))


def add_latency_rows(table: "Table", broker: "BrokerProcess", half_peak: int, seconds: float, run: str,
                     loadgen: Optional[Path] = None, loadgen_cpu: Optional[int] = None) -> None:
    """Paced 100 B produces with linger.ms=0 at 1,000, 10,000 and 100,000/s and half the peak:
    each rate first against librdkafka's in-memory mock broker (the generator's own latency), then
    against fastlog, whose row carries the client's p99 over the mock's, the broker's own time
    per Produce (`fastlog_request_total_seconds`) and its GC pauses. Then linger.ms=5 at half
    the peak. With `loadgen`, each linger.ms=0 rate is run again by the Rust generator."""
    rates = sorted({half_peak, 100_000, 10_000, 1_000}, reverse=True)
    for asked, linger in [(r, 0) for r in rates] + [(half_peak, 5)]:
        share = "50% of peak, " if asked == half_peak else ""
        mock_p99 = float("nan")
        if linger == 0:
            sent, elapsed, lat = in_child(_mock_latency, asked, seconds, 100, 0)
            mock_p99 = percentile(lat, 99)
            figures = latency_figures(lat)
            table.add(f"ceiling: latency generator -> librdkafka mock broker, {run}{share}{asked:,}/s asked, 100 B, linger.ms=0",
                      f"{sent / elapsed:,.0f}", f"{sent * 100 / elapsed / 1e6:,.1f}", "", "", f"{figures} ({len(lat):,} samples)")
        cpu0, queued0 = broker.cpu_seconds(), broker.run_queue_seconds()
        before = histograms(broker.metrics_port)
        sent, elapsed, lat = in_child(_latency, broker.bootstrap, "latency", asked, seconds, 100, linger, PARTITIONS)
        after = histograms(broker.metrics_port)
        own = histogram_delta_percentile(before, after, ("fastlog_request_total_seconds", "Produce"), 99)
        gcs = [histogram_delta_percentile(before, after, ("fastlog_gc_pause_seconds", g), 100) for g in "012"]
        figures = latency_figures(lat)
        ratio = f"client/mock p99 {percentile(lat, 99) / mock_p99:.2f}; " if mock_p99 == mock_p99 else ""
        table.add(f"fastlog: produce latency, {run}{share}{asked:,}/s asked, 100 B, linger.ms={linger}",
                  f"{sent / elapsed:,.0f}", f"{sent * 100 / elapsed / 1e6:,.1f}", "",
                  ("p99 ≤ 5 ms" if asked == half_peak else "") + ("; " if asked == half_peak and linger == 0 else "")
                  + ("own p99 ≤ 1 ms, client/mock ≤ 1.2" if linger == 0 else ""),
                  f"{figures} ({len(lat):,} samples); {ratio}broker's own Produce time p99 {own[0] * 1000:.2f} ms ({own[1]:,} requests); "
                  f"broker CPU {(broker.cpu_seconds() - cpu0) / elapsed:.2f} cores, {waited_for_a_cpu(broker, queued0, elapsed)}; "
                  f"GC pauses gen0/1/2: {'/'.join(str(n) for _, n in gcs)}, "
                  f"longest ≤ {max((t for t, n in gcs if n), default=0) * 1000:.2f} ms")
        if loadgen and linger == 0:
            add_loadgen_rows(table, broker, loadgen, loadgen_cpu, asked, seconds, f"{run}{share}{asked:,}/s asked, 100 B, linger 0")


def loadgen_figures(run: dict) -> str:
    """The Rust generator's percentiles as the table prints them."""
    return (", ".join(f"p{p} {run[key]:.2f} ms" for p, key in ((50, "p50_ms"), (99, "p99_ms"), (99.9, "p999_ms")))
            + f"; generator's send lag p99 {run['send_lag_p99_ms']:.3f} ms; {run['requests']:,} requests"
            + (f"; {run['refused']:,} refused ({run['error']})" if run["refused"] else ""))


def add_loadgen_rows(table: "Table", broker: "BrokerProcess", loadgen: Path, cpu: Optional[int], asked: int, seconds: float, label: str) -> None:
    """The same paced 100 B load from the Rust generator (bench/loadgen.rs), one connection,
    linger 0: first against librdkafka's mock broker, then against fastlog with the broker's own
    Produce time beside it."""
    try:
        with mock_broker() as (address, partitions):
            mock = run_loadgen(loadgen, address, "mock", partitions, asked, seconds, 100, cpu)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        table.notes.append(f"latency, Rust loadgen, {label}: the run against the mock failed: {e}")
        return
    table.add(f"ceiling: Rust loadgen -> librdkafka mock broker, {label}", f"{mock['acked'] / mock['seconds']:,.0f}",
              f"{mock['acked'] * 100 / mock['seconds'] / 1e6:,.1f}", "", "", loadgen_figures(mock))
    cpu0, queued0 = broker.cpu_seconds(), broker.run_queue_seconds()
    before = histograms(broker.metrics_port)
    try:
        got = run_loadgen(loadgen, broker.bootstrap, "latency", PARTITIONS, asked, seconds, 100, cpu)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        table.notes.append(f"latency, Rust loadgen, {label}: the run against fastlog failed: {e}")
        return
    after = histograms(broker.metrics_port)
    own = histogram_delta_percentile(before, after, ("fastlog_request_total_seconds", "Produce"), 99)
    own_tail = histogram_delta_percentile(before, after, ("fastlog_request_total_seconds", "Produce"), 99.9)[0]
    table.add(f"fastlog: produce latency, Rust loadgen, {label}", f"{got['acked'] / got['seconds']:,.0f}",
              f"{got['acked'] * 100 / got['seconds'] / 1e6:,.1f}", "", "own p99 ≤ 1 ms, client/mock ≤ 1.2",
              f"{loadgen_figures(got)}; client/mock p99 {got['p99_ms'] / mock['p99_ms']:.2f}; "
              f"broker's own Produce time p99 {own[0] * 1000:.2f} ms, p99.9 {own_tail * 1000:.2f} ms ({own[1]:,} requests); "
              f"broker CPU {(broker.cpu_seconds() - cpu0) / got['seconds']:.2f} cores, {waited_for_a_cpu(broker, queued0, got['seconds'])}")


def waited_for_a_cpu(broker: "BrokerProcess", queued0: float, elapsed: float) -> str:
    """The broker's threads' wait for a CPU since `queued0` (run_queue_seconds), per second."""
    return f"waited for a CPU {(broker.run_queue_seconds() - queued0) / elapsed * 1000:.1f} ms/s"


def add_security_rows(table: "Table", records: int, connections: int) -> None:
    """Produce and consume of 1 KB records over SASL_SSL (SCRAM-SHA-256) next to PLAINTEXT on
    one broker in one run, and SCRAM logins over TLS one after another (bench_security.py)."""
    sys.path.insert(0, str(REPO))  # run as bench/perf.py: the repository's root
    from bench.bench_security import measure

    results = measure(records, 1000, connections)
    plain, secure = results["PLAINTEXT"], results["SASL_SSL"]
    for i, what in enumerate(("produce", "consume")):
        table.add(f"security: {what} 1 KB, PLAINTEXT", f"{plain[i] * 1000:,.0f}", f"{plain[i]:,.1f}", "1.00")
        table.add(f"security: {what} 1 KB, SASL_SSL (SCRAM-SHA-256)", f"{secure[i] * 1000:,.0f}", f"{secure[i]:,.1f}", f"{secure[i] / plain[i]:.2f}")
    logins = results["scram_logins_per_s"]
    table.add("security: SCRAM-SHA-256 logins over TLS, one at a time", "", "", "", "", f"{logins:,.0f} connections/s ({1000 / logins:.1f} ms each)")


def _exit_on_first_term(*_: Any) -> None:
    """`timeout` signals perf.py and then its whole process group: the second SIGTERM must not
    cut the cleanup the first one started."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(143)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=None, help="parent of the temp data dir (the disk measured)")
    parser.add_argument("--seconds", type=float, default=5, help="duration of the timed-by-clock runs")
    parser.add_argument("--records-100b", type=int, default=3_000_000)
    parser.add_argument("--records-1kb", type=int, default=1_000_000)
    parser.add_argument("--producers", type=int, default=1, help="producer processes for the throughput runs")
    parser.add_argument("--consumers", type=int, default=1,
                        help="processes of raw Fetch requests for the warm consume row, each reading the whole topic (a row for 1 as well)")
    parser.add_argument("--disk-bytes", type=int, default=1 << 30)
    parser.add_argument("--scale-partitions", type=int, default=10_000)
    parser.add_argument("--idle-connections", type=int, default=1000)
    parser.add_argument("--only", default="machine,ceiling,produce,acks,consume,latency,scale,conns,security")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--latency-rounds", type=int, default=1, help="runs in a row of the latency rows")
    parser.add_argument("--broker-python", default=sys.executable,
                        help="the interpreter that runs the broker (a free-threaded CPython, say); the clients keep this one")
    parser.add_argument("--loadgen", default="", metavar="PATH",
                        help="the Rust latency generator (default: target/release/examples/loadgen, built by cargo when cargo is here)")
    parser.add_argument("--broker-nice", type=int, default=None, metavar="N",
                        help="run the broker under nice -n N (negative: the CPU before the generators; needs root)")
    parser.add_argument("--no-loadgen", action="store_true", help="latency rows with librdkafka's generator only")
    parser.add_argument("--loadgen-cpu", type=int, default=None, metavar="N", help="pin the Rust generator to CPU N")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="a broker config for every broker started (num.network.threads=1, say; a scenario's own setting of the key wins); repeatable")
    args = parser.parse_args()
    if args.consumers < 1 or args.producers < 1:
        parser.error("--producers and --consumers take 1 or more")
    # A time limit's SIGTERM (bench/device.sh) ends the run through its cleanup: brokers
    # stopped, the data dir removed.
    signal.signal(signal.SIGTERM, _exit_on_first_term)
    if args.quick:
        args.seconds, args.records_100b, args.records_1kb = 2, 300_000, 100_000
        args.disk_bytes, args.scale_partitions, args.idle_connections = 128 << 20, 500, 100
    only = set(args.only.split(","))
    parent = Path(args.dir or tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="fastlog-perf-", dir=parent))
    table = Table()
    run_started = time.perf_counter()
    brokers: list[BrokerProcess] = []

    def start_broker(data: Path, *overrides: str, profile: Optional[list[str]] = None) -> BrokerProcess:
        if profile is None and args.broker_nice is not None:
            profile = ["nice", "-n", str(args.broker_nice), args.broker_python]
        b = BrokerProcess(data, args.override + list(overrides), profile, args.broker_python)
        brokers.append(b)
        if args.broker_nice is not None and b.niceness() != args.broker_nice:  # nice runs it anyway when refused
            note = f"--broker-nice {args.broker_nice}: the broker ran at nice {b.niceness()} (a negative value needs root)"
            if note not in table.notes:
                table.notes.append(note)
        return b

    loopback = disk_nosync = disk_sync = disk_read = float("nan")
    peak_100b = float("nan")
    try:
        print(f"fastlog perf: {os.cpu_count()} cores, data in {work}", flush=True)
        table.notes.append(f"broker: {describe_interpreter(args.broker_python)}"
                           + (f", with {' '.join(args.override)}" if args.override else "")
                           + (f", under nice -n {args.broker_nice}" if args.broker_nice is not None else ""))
        if "machine" in only or "produce" in only or "consume" in only:
            loopback = loopback_limit(args.seconds)
            table.add("machine: loopback TCP, 2 processes, 1 MiB writes", "", f"{loopback:,.0f}", "1.00")
        if "machine" in only:
            disk_nosync = disk_limit(work, args.disk_bytes, False)
            disk_sync = disk_limit(work, args.disk_bytes, True)
            gb = args.disk_bytes / (1 << 30)
            table.add(f"machine: disk, {gb:g} GiB in 1 MiB writes, no fsync", "", f"{disk_nosync:,.0f}")
            table.add(f"machine: disk, {gb:g} GiB in 1 MiB writes + fdatasync", "", f"{disk_sync:,.0f}")
        if "machine" in only or "consume" in only:
            disk_read = disk_read_limit(work, args.disk_bytes)
            table.add(f"machine: disk read, {args.disk_bytes / (1 << 30):g} GiB in 1 MiB reads, page cache dropped", "", f"{disk_read:,.0f}")

        ceilings: dict[int, float] = {}
        if "ceiling" in only:
            for size, count in ((100, args.records_100b), (1000, args.records_1kb)):
                stop = CTX.Event()
                result: mp.Queue = CTX.Queue()
                ready: mp.Queue = CTX.Queue()
                mock = CTX.Process(target=_mock_cluster, args=(size, count, ready, result, stop))
                mock.start()
                try:
                    n, elapsed, mock_bootstrap, mock_parts = result.get(timeout=600)
                    ceilings[size] = n / elapsed
                    table.add(f"ceiling: 1 producer process -> librdkafka mock broker, {size} B", f"{n / elapsed:,.0f}",
                              f"{n * size / elapsed / 1e6:,.1f}", "", "", f"{mock_parts} partitions")
                finally:
                    stop.set()
                    mock.join(30)
                    if mock.is_alive():
                        mock.kill()

        data = work / "data"
        if only & {"produce", "acks", "consume", "latency"}:
            broker = start_broker(data)
            table.notes.append(f"broker start-up (empty data dir): {broker.startup_s * 1000:.0f} ms")
            if "produce" in only or "consume" in only:
                for size, count in ((100, args.records_100b), (1000, args.records_1kb)):
                    topic = f"acks1-{size}"
                    create_topic(broker.bootstrap, topic, PARTITIONS)
                    cpu0, threads0 = broker.cpu_seconds(), broker.thread_cpu_seconds()
                    results = in_children(args.producers, _produce, {"bootstrap.servers": broker.bootstrap, "acks": "1"},
                                          topic, PARTITIONS, count // args.producers, size)
                    n = sum(r[0] for r in results)
                    elapsed = max(r[1] for r in results)
                    rate, mbs = n / elapsed, n * size / elapsed / 1e6
                    if size == 100:
                        peak_100b = rate
                        target = "≥ 1,000,000 rec/s"
                        ratio = f"{rate / ceilings[size]:.2f} of ceiling" if size in ceilings else ""
                    else:
                        target = "≥ 0.5 of loopback"
                        ratio = f"{mbs / loopback:.3f} of loopback" + (f", {rate / ceilings[size]:.2f} of ceiling" if size in ceilings else "")
                    cpu = (broker.cpu_seconds() - cpu0) / elapsed
                    table.add(f"fastlog: produce {size} B, acks=1, {PARTITIONS} partitions, {args.producers} producer(s)",
                              f"{rate:,.0f}", f"{mbs:,.1f}", ratio, target,
                              f"broker CPU {cpu:.2f} cores ({broker.cpu_spread(threads0, elapsed)})")
            if "acks" in only:
                count = max(args.records_1kb // 5, 10_000)
                for label, config in (("default flush policy", {}), ("topic flush.messages=1", {"flush.messages": "1"})):
                    topic = "acksall-" + ("fsync" if config else "default")
                    create_topic(broker.bootstrap, topic, PARTITIONS, config)
                    (n, elapsed), = in_children(1, _produce, {"bootstrap.servers": broker.bootstrap, "acks": "all"},
                                                topic, PARTITIONS, count, 1000)
                    table.add(f"fastlog: produce 1 KB, acks=all, {label}", f"{n / elapsed:,.0f}", f"{n * 1000 / elapsed / 1e6:,.1f}",
                              f"{n * 1000 / elapsed / 1e6 / disk_sync:.2f} of disk+fsync" if disk_sync == disk_sync else "")
                # The fsyncs of a flush.messages=1 topic run on worker threads: another producer's
                # latency beside one that writes such a topic flat out.
                result = CTX.Queue()
                durable = CTX.Process(target=_produce, args=({"bootstrap.servers": broker.bootstrap, "acks": "all"},
                                                           "acksall-fsync", PARTITIONS, count * 5, 1000, result))
                durable.start()
                try:
                    time.sleep(1.5)
                    create_topic(broker.bootstrap, "beside", PARTITIONS)
                    sent, elapsed, lat = in_child(_latency, broker.bootstrap, "beside", 10_000, max(args.seconds, 4), 100, 0, PARTITIONS)
                    n, durable_elapsed = result.get(timeout=600)[:2]
                finally:
                    durable.join(60)
                    if durable.is_alive():
                        durable.kill()
                figures = latency_figures(lat)
                table.add("fastlog: produce latency at 10,000/s, acks=1, beside a producer of 1 KB acks=all to a flush.messages=1 topic",
                          f"{sent / elapsed:,.0f}", f"{sent * 100 / elapsed / 1e6:,.1f}", "", "",
                          f"{figures}; the other producer {n / durable_elapsed:,.0f} rec/s")
            if "latency" in only:
                if peak_100b != peak_100b:
                    peak_100b = 200_000
                create_topic(broker.bootstrap, "latency", PARTITIONS)
                loadgen = None if args.no_loadgen else find_loadgen(args.loadgen, table.notes)
                for round_ in range(1, args.latency_rounds + 1):
                    add_latency_rows(table, broker, int(peak_100b / 2), max(args.seconds * 2, 4),
                                     f"run {round_} of {args.latency_rounds}, " if args.latency_rounds > 1 else "",
                                     loadgen, args.loadgen_cpu)
            if "consume" in only:
                kcat = (("kcat (librdkafka's C consumer), 1 process", lambda b: (*kcat_consume(b.bootstrap, "acks1-1000"), None)),)
                if not shutil.which("kcat"):
                    kcat = ()
                    table.notes.append("consume: no kcat row (kcat is not on PATH)")
                consumers = (
                    *kcat,
                    ("confluent-kafka Python consumer, 1 process",
                     lambda b: (lambda r: (r[0], r[2], r[1]))(in_child(_consume, b.bootstrap, "acks1-1000", PARTITIONS, args.records_1kb))),
                    ("raw Fetch requests (no client library: the broker's fetch path)",
                     lambda b: (lambda r: (r[0], r[3] - r[2], r[1]))(in_child(_raw_fetch, b.bootstrap, "acks1-1000", PARTITIONS, None))),
                )
                for label, consume in consumers:
                    broker.stop()
                    brokers.remove(broker)
                    note = drop_caches()
                    broker = start_broker(data)
                    cpu0 = broker.cpu_seconds()
                    got, elapsed, size = consume(broker)  # size None: record values only (1 KB each)
                    cpu = (broker.cpu_seconds() - cpu0) / elapsed
                    mbs = (size or got * 1000) / elapsed / 1e6
                    disk = f", {mbs / disk_read:.2f} of disk read" if disk_read == disk_read else ""
                    table.add(f"fastlog: consume 1 KB from disk (cold page cache), {label}", f"{got / elapsed:,.0f}",
                              f"{mbs:,.1f}", f"{mbs / loopback:.3f} of loopback{disk}", "≥ 0.7 of loopback",
                              f"{got:,} records, broker CPU {cpu:.2f} cores, start-up {broker.startup_s:.2f} s")
                table.notes.append(f"consume: before each cold row the broker was stopped, {note}, and restarted")
                for readers in sorted({1, args.consumers}):
                    cpu0, threads0 = broker.cpu_seconds(), broker.thread_cpu_seconds()
                    got, size, elapsed = warm_raw_fetch(broker.bootstrap, "acks1-1000", readers)
                    mbs = size / elapsed / 1e6
                    table.add(f"fastlog: consume 1 KB from the page cache (warm), raw Fetch requests, {readers} process{'es' if readers > 1 else ''} "
                              "each reading the whole topic", f"{got / elapsed:,.0f}", f"{mbs:,.1f}",
                              f"{mbs / loopback:.3f} of loopback", "≥ 0.7 of loopback",
                              f"broker CPU {(broker.cpu_seconds() - cpu0) / elapsed:.2f} cores ({broker.cpu_spread(threads0, elapsed)})")
            broker.stop()
            brokers.remove(broker)

        if "scale" in only:
            data = work / "scale"
            broker = start_broker(data)
            n = args.scale_partitions
            started = time.perf_counter()
            create_topic(broker.bootstrap, "wide", n)
            created = time.perf_counter() - started
            rss0 = broker.status("VmRSS")
            cpu0 = broker.cpu_seconds()
            seconds = max(args.seconds * 2, 10)
            sent, in_window, acked, elapsed, producer_cpu = in_child(_scale_producer, broker.bootstrap, "wide", n, n, seconds, 1000)
            table.add(f"fastlog: {n:,} partitions, ~1 KB/s each ({n:,} x 1 KB records/s asked)", f"{acked / elapsed:,.0f}",
                      f"{acked * 1000 / elapsed / 1e6:,.1f}", "", "",
                      f"{in_window / seconds:,.0f}/s acked within the {seconds:g} s window, {sent / seconds:,.0f}/s sent; "
                      f"RSS {rss0 / 1024:.0f} MB idle -> {broker.status('VmRSS') / 1024:.0f} MB, created in {created:.1f} s, "
                      f"broker CPU {(broker.cpu_seconds() - cpu0) / elapsed:.2f} cores, producer CPU {producer_cpu / elapsed:.2f} cores")
            broker.stop()
            brokers.remove(broker)
            broker = start_broker(data)
            table.add(f"fastlog: start-up with {n:,} partitions on disk", "", "", "", "",
                      f"{broker.startup_s:.2f} s exec -> accepting; RSS {broker.status('VmRSS') / 1024:.0f} MB")
            broker.stop()
            brokers.remove(broker)

        if "conns" in only:
            broker = start_broker(work / "conns")
            create_topic(broker.bootstrap, "busy", PARTITIONS)
            rss0 = broker.status("VmRSS")
            idle = [socket.create_connection(("127.0.0.1", broker.port)) for _ in range(args.idle_connections)]
            time.sleep(1)
            rss_idle = broker.status("VmRSS")
            (sent, elapsed), = in_children(1, _busy_producers, broker.bootstrap, "busy", 10, args.seconds, 1000)
            rss_busy = broker.status("VmRSS")
            for s in idle:
                s.close()
            table.add(f"fastlog: {args.idle_connections:,} idle connections + 10 busy producers, 1 KB", f"{sent / elapsed:,.0f}",
                      f"{sent * 1000 / elapsed / 1e6:,.1f}", "", "",
                      f"RSS {rss0 / 1024:.0f} MB -> {rss_idle / 1024:.0f} MB idle conns -> {rss_busy / 1024:.0f} MB busy (VmHWM {broker.status('VmHWM') / 1024:.0f} MB)")
            broker.stop()
            brokers.remove(broker)
        if "security" in only:
            add_security_rows(table, args.records_1kb // 5, max(args.idle_connections // 5, 20))
    finally:
        for b in brokers:
            b.stop()
        shutil.rmtree(work, ignore_errors=True)
    table.notes.append(f"whole run {time.perf_counter() - run_started:.0f} s; {os.cpu_count()} cores; "
                       f"confluent-kafka {__import__('confluent_kafka').__version__}, librdkafka {__import__('confluent_kafka').libversion()[0]}")
    print()
    print(table.render())


if __name__ == "__main__":
    main()
