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
Produce's wait for the ISR, a replica reported offline; a cluster node keeps one loop for now
(see `network_threads`).
"""

from __future__ import annotations

import functools
import logging
import math
import socket
import threading
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional

import trio

from fastlog.framing import ConnectionClosed
from fastlog.server import Connection, run_connection

if TYPE_CHECKING:
    from fastlog.broker import Broker
    from fastlog.config import Listener

log = logging.getLogger(__name__)

START_SECONDS = 10
FORWARDED_AT_ONCE = 1000  # requests of one loop waiting on the broker's loop (long polls, group joins)


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
        self._limiter: Optional[trio.CapacityLimiter] = None
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
        self._limiter = trio.CapacityLimiter(FORWARDED_AT_ONCE)
        async with trio.open_nursery() as connections:
            self._nursery = connections
            self._running.set()
            await self._stop.wait()
            for connection in list(self.connections):
                connection.stop_reading()
            connections.cancel_scope.deadline = trio.current_time() + SHUTDOWN_GRACE_SECONDS

    async def on_owner(self, handler: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Runs `handler(*args)` on the broker's own loop and returns its answer. Abandoned
        (the answer is dropped) if this loop's request is cancelled meanwhile."""
        run = functools.partial(trio.from_thread.run, handler, *args, trio_token=self.owner_token)
        try:
            return await trio.to_thread.run_sync(run, limiter=self._limiter, abandon_on_cancel=True)
        except (trio.RunFinishedError, trio.Cancelled) as e:
            if isinstance(e, trio.Cancelled) and trio.current_effective_deadline() == -math.inf:
                raise  # this loop's own cancellation
            raise ConnectionClosed("the broker's loop stopped while handling the request", "shutdown") from None


def network_threads(broker: "Broker") -> int:
    """How many loops serve clients: `num.network.threads`; one on a cluster node for now.

    Measured on 2 cores (`bench/bench_replication.py --records 200000 --partitions 6`): with
    two loops per node, acks=all at a steady 2,000 records/s went from p50 5.5 ms to 14.6 ms,
    as every follower Fetch and every acks=all wait crossed threads to the broker's loop and
    back. Replication's state has to move off the broker's loop before a cluster node gains."""
    wanted = broker.config["num.network.threads"]
    if broker.config.cluster_mode and wanted > 1:
        log.info("num.network.threads=%d: a cluster node serves clients on one loop for now", wanted)
        return 1
    return wanted
