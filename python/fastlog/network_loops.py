"""More cores for the network (`num.network.threads`): extra Trio loops, one per thread.

The broker's own loop keeps everything it had: topics, groups, the controller, background work,
and the listeners. It accepts every connection and hands them out in turn, itself included, to
the loops; each extra loop runs in a thread of its own and serves its connections itself:
reading frames, Produce through the Rust core, Fetch (long polls included), sending responses.
(One acceptor, rather than a listener per loop on a shared port: SO_REUSEPORT would also let a
second broker started on the same port by mistake take half the connections.) The Rust core releases the GIL while it appends, reads, checksums and
sends, so those run on several cores at once. Any other request is handed to the broker's own
loop (`on_owner`) and its answer comes back; per connection, requests are still answered in
order. A produce on one loop wakes fetches parked on any other (`Partition.wake_waiters`).
What touches replication's state runs on the broker's loop: a follower's Fetch, an acks=all
Produce's wait for the ISR, a replica reported offline; a cluster node keeps one loop unless
`num.network.threads` is set (see `network_threads`).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional

import outcome
import trio

from fastlog.framing import ConnectionClosed
from fastlog.server import Connection, close_idle_connections, run_connection

if TYPE_CHECKING:
    from fastlog.broker import Broker
    from fastlog.config import Listener

log = logging.getLogger(__name__)

START_SECONDS = 10
FORWARDED_AT_ONCE = 1000  # requests of one loop waiting on the broker's loop (long polls, group joins)


class OwnerLoopClosing(Exception):
    """The broker's loop took no more work: it is shutting down."""


class NetworkLoop:
    """One extra loop: its thread, its listeners, its connections."""

    def __init__(self, broker: "Broker", index: int) -> None:
        self.broker = broker
        self.index = index
        self.owner_token = trio.lowlevel.current_trio_token()
        self.connections: set[Connection] = set()
        self._token: Optional[trio.lowlevel.TrioToken] = None
        self._stop: Optional[trio.Event] = None
        self._nursery: Optional[trio.Nursery] = None  # where this loop's connections run
        self._forwarded: Optional[trio.CapacityLimiter] = None  # requests waiting on the broker's loop
        self._running = threading.Event()
        self._failure: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name=f"fastlog-network-{index}", daemon=True)

    async def start(self) -> None:
        """Starts the thread and waits until it takes connections (or raises why not)."""
        self.thread.start()
        await trio.to_thread.run_sync(self._running.wait, START_SECONDS)
        if self._failure is not None:
            raise self._failure
        if not self._running.is_set():
            raise RuntimeError(f"network loop {self.index} did not start within {START_SECONDS}s")

    def adopt(self, stream: trio.SocketStream, listener: "Listener") -> None:
        """From the broker's loop: a connection it accepted is served here from now on."""
        fd = stream.socket.detach()
        try:
            assert self._token is not None
            self._token.run_sync_soon(self._serve_fd, fd, listener)
        except trio.RunFinishedError:
            log.error("network loop %d has stopped; a connection it was handed is closed", self.index)
            socket.close(fd)

    @property
    def stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive() and self._token is not None

    def _serve_fd(self, fd: int, listener: "Listener") -> None:
        sock = trio.socket.from_stdlib_socket(socket.socket(fileno=fd))
        if self._nursery is None or self._stop is None or self._stop.is_set():
            sock.close()  # stopping: the connection is refused
            return
        self._nursery.start_soon(run_connection, self.broker, trio.SocketStream(sock), listener, self)

    def stop(self) -> None:
        """From the broker's loop: finish what was read, close (graceful)."""
        if self._token is not None and self._stop is not None:
            try:
                self._token.run_sync_soon(self._stop.set)
            except trio.RunFinishedError:
                pass

    async def join(self) -> None:
        """Waits for the thread to end: its connections get the shutdown grace, plus a margin
        (a daemon thread that hangs does not keep the process alive)."""
        from fastlog.broker import SHUTDOWN_GRACE_SECONDS

        await trio.to_thread.run_sync(self.thread.join, SHUTDOWN_GRACE_SECONDS + START_SECONDS)

    def _run(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as e:  # reported to `start`, or logged once it ran
            if not self._running.is_set():
                self._failure = e
                self._running.set()
            else:
                log.exception("network loop %d failed", self.index)

    async def _serve(self) -> None:
        from fastlog.broker import SHUTDOWN_GRACE_SECONDS

        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        self._forwarded = trio.CapacityLimiter(FORWARDED_AT_ONCE)
        async with trio.open_nursery() as connections:
            self._nursery = connections
            sweeping = trio.CancelScope()
            connections.start_soon(close_idle_connections, self.broker, self.connections, sweeping)
            self._running.set()
            await self._stop.wait()
            sweeping.cancel()
            for connection in list(self.connections):
                connection.stop_reading()
            connections.cancel_scope.deadline = trio.current_time() + SHUTDOWN_GRACE_SECONDS

    async def on_owner(self, handler: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Runs `handler(*args)` on the broker's own loop and returns its answer. Abandoned
        (the answer is dropped) if this loop's request is cancelled meanwhile.

        The two loops hand the work and the answer to each other directly (`run_sync_soon`),
        with no worker thread between them: a worker's round trip cost 0.1 ms on a GIL build,
        and tens of ms on a free-threaded 3.13 under load (bench/README.md)."""
        here = trio.lowlevel.current_trio_token()
        answered = trio.Event()
        answers: list[outcome.Outcome] = []
        # The slot is held until the handler ends, not just while this side waits: a client
        # that sends and hangs up cannot pile up handlers on the broker's loop.
        slot = object()
        forwarded = self._forwarded
        assert forwarded is not None

        def finished() -> None:  # on this loop
            forwarded.release_on_behalf_of(slot)
            answered.set()

        def answer(result: outcome.Outcome) -> None:  # on the broker's loop
            answers.append(result)
            try:
                here.run_sync_soon(finished)
            except trio.RunFinishedError:  # this loop has stopped: nobody waits for it
                pass

        async def run_there() -> None:
            answer(await outcome.acapture(handler, *args))

        def start_there() -> None:
            try:
                trio.lowlevel.spawn_system_task(run_there)
            except RuntimeError:  # the broker's loop is closing
                answer(outcome.Error(OwnerLoopClosing()))

        await forwarded.acquire_on_behalf_of(slot)
        try:
            self.owner_token.run_sync_soon(start_there)
        except trio.RunFinishedError:
            forwarded.release_on_behalf_of(slot)
            raise ConnectionClosed("the broker's loop stopped before handling the request", "shutdown") from None
        await answered.wait()
        result = answers[0]
        if isinstance(result, outcome.Error) and isinstance(result.error, (trio.Cancelled, OwnerLoopClosing)):
            raise ConnectionClosed("the broker's loop stopped while handling the request", "shutdown") from None
        return result.unwrap()


def gil_enabled() -> bool:
    """Whether this interpreter runs with the GIL (always, before CPython 3.13)."""
    return getattr(sys, "_is_gil_enabled", lambda: True)()


def network_threads(broker: "Broker") -> int:
    """How many loops serve clients: `num.network.threads`. A cluster node takes one unless the
    setting is given (file, environment or override), since on a GIL build more cost latency:

    Measured on 2 cores (`bench/bench_replication.py`, acks=all at a steady 2,000 records/s of
    1 KB to 6 partitions, RF 3): one loop per node p50 2.5 ms / p99 5.0 ms, two loops p50
    3.9-4.4 ms / p99 11-15 ms, as every follower Fetch and acks=all wait crosses to the
    broker's loop, where replication's state lives, and back. Replication's state has to move
    off the broker's loop before a cluster node gains by default; where its Produce and Fetch
    traffic is large (1 KB records, many consumers), a node given more loops spreads them."""
    wanted = broker.config["num.network.threads"]
    if broker.config.cluster_mode and wanted > 1:
        if "num.network.threads" not in broker.config.explicit:
            log.info("a cluster node serves clients on one loop unless num.network.threads is set (%d would be the default)", wanted)
            return 1
        if gil_enabled():  # Kafka's sample server.properties sets 3
            log.warning("num.network.threads=%d on a cluster node: with the GIL, acks=all latency is lower on one loop "
                        "(bench/README.md, 'Several network loops')", wanted)
    return wanted
