"""Fixtures shared by the test suite: a real broker process on a free loopback port."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest


_HANDED_OUT: set[int] = set()

# The interpreter the test brokers run on: this one, or the one FASTLOG_TEST_BROKER_PYTHON names
# (a free-threaded CPython with fastlog installed, say) while the clients stay on this one.
BROKER_PYTHON = os.environ.get("FASTLOG_TEST_BROKER_PYTHON") or sys.executable


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _worker_ports(top: int) -> range:
    """The ports this test process hands out: under pytest-xdist each worker has its own slice of
    10000..top, so two workers never pick the same port before either broker binds it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    # A worker that replaces a crashed one is numbered on (gw3, gw4...): it takes over a slice.
    index = (int(worker) if worker.isdigit() else 0) % count
    span = (top - 10000) // count
    return range(10000 + index * span, 10000 + (index + 1) * span)


def free_port(room: int = 1) -> int:
    """A port free now, below the kernel's ephemeral range where it can: a broker restarted
    on it must not find it taken by some client's outgoing connection meanwhile. `room`: the
    ports from it up to `port + room - 1` are this worker's too (they may be taken)."""
    top = _ephemeral_start()
    if top > 12000:
        rng = random.Random()
        ports = _worker_ports(top)
        for _ in range(200):
            port = rng.randrange(ports.start, ports.stop - room + 1)
            if port in _HANDED_OUT:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _HANDED_OUT.add(port)
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerProcess:
    """`fastlog serve` in a subprocess, with its data in a temp dir and its log in a file."""

    def __init__(self, data_dir: Path, overrides: Optional[dict[str, str]] = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.overrides = {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "log.dirs": str(data_dir),
            # Each test broker serves metrics on a free port, so none fights over the default.
            "metrics.port": "0",
            # The schema registry (default 127.0.0.1:8081) only where a test asks for it.
            "schema.registry.listeners": "-1",
            **(overrides or {}),
        }
        self.log_path = data_dir.parent / f"{data_dir.name}-broker.log"
        self.process: Optional[subprocess.Popen] = None
        # Largest file the broker may write (RLIMIT_FSIZE): a disk that fills up, for fault tests.
        self.file_size_limit: Optional[int] = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "BrokerProcess":
        args = [BROKER_PYTHON, "-m", "fastlog", "serve"]
        for key, value in self.overrides.items():
            args += ["--override", f"{key}={value}"]
        log_file = open(self.log_path, "a")
        self.process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=self._limits)
        log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"broker exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"broker did not listen within {timeout}s:\n{self.log_text()}")

    def _limits(self) -> None:
        """In the child before exec: a write past the limit fails with EFBIG (Python ignores
        SIGXFSZ), as a write to a full disk fails with ENOSPC."""
        if self.file_size_limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_size_limit, self.file_size_limit))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"broker did not stop within {timeout}s after signal {sig}")
        return self.process.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> "BrokerProcess":
        self.stop()
        return self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker shared by a test module."""
    process = BrokerProcess(tmp_path_factory.mktemp("broker") / "data").start()
    yield process
    process.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker of the test's own, for restarts and crashes."""
    process = BrokerProcess(tmp_path / "data").start()
    yield process
    if process.process and process.process.poll() is None:
        process.stop()


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")
    return f"{name[:150]}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
