"""Disk work that requests ask for, bounded by `num.io.threads` (Kafka's name and default, 8).

In Kafka, `num.io.threads` request handler threads do a request's disk work. Here the loops
never wait on the disk themselves: the fsync that `flush.messages` asks for, a group's or a
transaction's flushed records, a topic's files created, deleted or reconfigured by a request
(a cluster node applies the metadata's topic changes on Trio's own worker threads, as Kafka's
metadata loader does), records deleted (DeleteRecords) run on Trio worker threads. At most
`num.io.threads` of them run at once across every network loop of the broker, and each loop
starts at most that many threads for them: work past the bound waits on its loop (without
blocking it) for a thread, then in the thread for a broker-wide slot. Replication (followers' appends and truncations, Kafka's replica
fetcher threads), TLS reads of log files the page cache does not hold (Kafka's network threads) and background work
(retention, `flush.ms`, checkpoints) keep their own worker threads and never queue behind it.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

import trio

T = TypeVar("T")


class IoThreads:
    """At most `threads` pieces of disk work at once, from any loop of one broker."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._slots = threading.BoundedSemaphore(threads)
        # Each loop's own limit on threads for this work, apart from Trio's default limiter:
        # work waiting for a slot does not hold up the loop's other worker-thread calls.
        self._loop_limiter: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar(f"io-threads-{id(self)}")

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """`work(*args)` on a worker thread of the calling loop, once a slot is free. Like
        `trio.to_thread.run_sync`, a cancelled caller still waits for the work to end: the
        disk is never left half-changed behind the broker's back."""
        return await trio.to_thread.run_sync(self._in_slot, work, args, limiter=self._limiter())

    def _limiter(self) -> trio.CapacityLimiter:
        try:
            return self._loop_limiter.get()
        except LookupError:
            limiter = trio.CapacityLimiter(self.threads)
            self._loop_limiter.set(limiter)
            return limiter

    def _in_slot(self, work: Callable[..., T], args: tuple) -> T:
        with self._slots:
            return work(*args)
