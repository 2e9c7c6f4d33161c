"""Disk work off the event loops, bounded by `num.io.threads` (Kafka's name and default, 8).

The loops never wait on the disk themselves: an fsync that `flush.messages` asks for, a log
file a TLS connection reads, a topic's files created or deleted, a replica's log truncated or
appended in bulk run on Trio worker threads. In Kafka, `num.io.threads` request handler
threads do such work; here it bounds how much of it runs at once across every network loop of
the broker, so a burst of fsyncs on many partitions does not start a thread per partition on
each loop. Work past the bound waits in its worker thread (not on a loop) for a slot.
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

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """`work(*args)` on a worker thread of the calling loop, once a slot is free. Like
        `trio.to_thread.run_sync`, a cancelled caller still waits for the work to end: the
        disk is never left half-changed behind the broker's back."""
        return await trio.to_thread.run_sync(self._in_slot, work, args)

    def _in_slot(self, work: Callable[..., T], args: tuple) -> T:
        with self._slots:
            return work(*args)
