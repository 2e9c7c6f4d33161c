"""Connection limits (issue 22): `max.connections.per.ip` with its overrides, `max.connections`
per listener, `max.connection.creation.rate`, and an IP's `connection_creation_rate` quota. A
connection past a limit is closed at once (logged with the limit's name) while other IPs
(other loopback addresses: 127.0.0.2, ...) still connect; past the creation rate the broker
accepts more slowly instead. Floods are bounded in count and time, and the broker's open
files stay within the limits."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

from fastlog import protocol as P
from fastlog.client import Client
from tests.broker.wire import WireClient
from tests.conftest import BrokerProcess, free_port

pytestmark = pytest.mark.timeout(120)
API_VERSIONS = P.ApiVersionsRequest(client_software_name="limits-test", client_software_version="1")


def served(wire: WireClient) -> bool:
    """Whether the broker answers on this connection (False: it was closed as over a limit)."""
    try:
        wire.send_frame(wire.encode(API_VERSIONS, 3))
        return wire.recv_frame() is not None
    except (ConnectionResetError, BrokenPipeError):
        return False


def connect(broker: BrokerProcess, source: str = "127.0.0.1") -> WireClient:
    return WireClient(broker.bootstrap, 5, source=source)


def started(broker: BrokerProcess) -> BrokerProcess:
    """Started, with the connection its start-up check made closed on the broker's side too
    (until then it counts against the limits)."""
    broker.start()
    time.sleep(0.5)
    return broker


def open_files(broker: BrokerProcess) -> int:
    assert broker.process is not None
    return len(os.listdir(f"/proc/{broker.process.pid}/fd"))


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(tmp_path / "data", {
        "max.connections.per.ip": "3",
        "max.connections.per.ip.overrides": "127.0.0.3:6",
        "console.enable": "false",
    })
    yield started(broker)
    broker.stop()


def test_connections_past_the_per_ip_limit_are_refused_while_other_ips_connect(limited: BrokerProcess) -> None:
    first = [connect(limited) for _ in range(3)]
    try:
        assert all(served(w) for w in first)
        extra = connect(limited)
        assert not served(extra), "a fourth connection from 127.0.0.1"
        extra.close()
        others = [connect(limited, "127.0.0.2") for _ in range(3)]
        assert all(served(w) for w in others)
        overridden = [connect(limited, "127.0.0.3") for _ in range(6)]
        assert all(served(w) for w in overridden), "127.0.0.3 may open 6 (max.connections.per.ip.overrides)"
        seventh = connect(limited, "127.0.0.3")
        assert not served(seventh)
        seventh.close()
        first.pop().close()  # a slot of 127.0.0.1 comes free
        deadline = time.monotonic() + 5
        while True:
            again = connect(limited)
            if served(again):
                first.append(again)
                break
            again.close()
            assert time.monotonic() < deadline, "the freed slot was not given back"
            time.sleep(0.05)
        for w in others + overridden:
            w.close()
    finally:
        for w in first:
            w.close()
    log = limited.log_text()
    assert "refusing a connection from 127.0.0.1 on PLAINTEXT: max.connections.per.ip=3 for 127.0.0.1 reached" in log
    assert "max.connections.per.ip=6 for 127.0.0.3" in log


def test_a_flood_from_one_ip_is_bounded_and_others_are_served(limited: BrokerProcess) -> None:
    """500 connection attempts from 127.0.0.1 in a loop (bounded in time): the broker keeps at
    most 3 of them, its open files stay near where they were, and a client on another address
    is served."""
    before = open_files(limited)
    kept: list[socket.socket] = []
    refused = 0
    deadline = time.monotonic() + 30
    try:
        for _ in range(500):
            if time.monotonic() > deadline:
                break
            sock = socket.create_connection(("127.0.0.1", limited.port), timeout=5)
            kept.append(sock)
        time.sleep(0.5)
        assert open_files(limited) <= before + 3 + 5, "the broker holds only what the limit allows"
        for sock in kept:
            sock.settimeout(2)
            try:
                if sock.recv(1) == b"":
                    refused += 1
            except (socket.timeout, ConnectionResetError):
                pass
        assert refused >= len(kept) - 3
        with connect(limited, "127.0.0.2") as other:
            assert served(other)
    finally:
        for sock in kept:
            sock.close()


def test_max_connections_per_listener(tmp_path: Path) -> None:
    broker = started(BrokerProcess(tmp_path / "data", {"listener.name.plaintext.max.connections": "2", "console.enable": "false"}))
    try:
        a, b = connect(broker), connect(broker, "127.0.0.2")
        assert served(a) and served(b)
        c = connect(broker, "127.0.0.3")
        assert not served(c)
        for w in (a, b, c):
            w.close()
        assert "listener.name.plaintext.max.connections=2" in broker.log_text()
    finally:
        broker.stop()


def test_max_connection_creation_rate_slows_accepts_without_refusing(tmp_path: Path) -> None:
    broker = started(BrokerProcess(tmp_path / "data", {"max.connection.creation.rate": "10", "console.enable": "false"}))
    try:
        began = time.monotonic()
        wires = [connect(broker) for _ in range(25)]
        answered = [served(w) for w in wires]
        took = time.monotonic() - began
        for w in wires:
            w.close()
        assert all(answered), "none refused: accepts wait instead"
        # a burst of 10 at once (the start-up check took one), then 10 per second: the rest take about 1.5 s
        assert took >= 1.0, took
    finally:
        broker.stop()


def test_an_ips_connection_creation_rate_quota(tmp_path: Path) -> None:
    broker = started(BrokerProcess(tmp_path / "data", {"console.enable": "false", "quota.window.num": "2"}))
    try:
        with Client(broker.bootstrap) as client:
            client.alter_client_quotas([([("ip", "127.0.0.2")], {"connection_creation_rate": 2})])
        results = []
        for _ in range(12):
            wire = connect(broker, "127.0.0.2")
            results.append(served(wire))
            wire.close()
        assert results[:4] == [True] * 4, results  # the burst: 2 windows of 2 per second
        assert results.count(False) >= 6, results
        others = [connect(broker) for _ in range(12)]
        assert all(served(w) for w in others), "127.0.0.1 has no such quota"
        for w in others:
            w.close()
        assert "connection_creation_rate quota of 127.0.0.2" in broker.log_text()
        broker.restart()  # the quota is kept
        refused: Optional[bool] = None
        for _ in range(8):
            wire = connect(broker, "127.0.0.2")
            refused = not served(wire)
            wire.close()
        assert refused
    finally:
        broker.stop()


@pytest.mark.parametrize("loops", [1, 3])
def test_a_connection_idle_past_connections_max_idle_ms_is_closed_and_a_busy_one_is_kept(tmp_path: Path, loops: int) -> None:
    """Each network loop sweeps its own connections: the idle ones (spread over every loop) are
    closed within a few sweeps of the limit, counted as `idle`; the one that sends a request
    every 100 ms, six times within the limit, stays open and answered."""
    from tests.tools.test_metrics import scrape, value

    metrics_port = free_port()
    broker = started(BrokerProcess(tmp_path / "data", {
        "connections.max.idle.ms": "600", "num.network.threads": str(loops),
        "metrics.port": str(metrics_port), "console.enable": "false",
    }))
    opened: list[WireClient] = []
    try:
        opened += [connect(broker) for _ in range(2 * loops + 1)]
        idle, busy = opened[:-1], opened[-1]
        assert all(served(wire) for wire in idle)
        until = time.monotonic() + 2.5
        while time.monotonic() < until:
            assert served(busy), "a connection that sends within the limit is kept"
            time.sleep(0.1)
        for wire in idle:
            try:
                assert wire.sock.recv(1) == b"", "the broker closed the idle connection"
            except ConnectionResetError:
                pass
        assert served(busy)
        assert value(scrape(f"http://127.0.0.1:{metrics_port}/metrics"), "fastlog_connections_closed_total", reason="idle") >= 2 * loops
    finally:
        for wire in opened:
            wire.close()
        broker.stop()
