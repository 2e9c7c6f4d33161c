"""`num.io.threads` (issue 15): the disk work the loops hand to worker threads runs at most that
many at once, across every network loop; a broker with one slot and several loops still serves
producers of an fsync-per-message topic on all of them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import trio
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fastlog.config import BrokerConfig, ConfigError
from fastlog.io_threads import IoThreads
from tests.conftest import BrokerProcess

TIMEOUT = 30


class Occupancy:
    """Counts the pieces of work running at once, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0

    def work(self, value: int) -> int:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.03)
        with self.lock:
            self.now -= 1
        return value * 2


def test_at_most_num_io_threads_pieces_of_work_run_at_once_across_loops() -> None:
    io_threads, occupancy = IoThreads(2), Occupancy()
    results: list[list[int]] = []

    async def one_loop(first: int) -> None:
        got: list[int] = []

        async def one(value: int) -> None:
            got.append(await io_threads.run(occupancy.work, value))

        async with trio.open_nursery() as nursery:
            for value in range(first, first + 4):
                nursery.start_soon(one, value)
        results.append(sorted(got))

    loops = [threading.Thread(target=trio.run, args=(one_loop, first)) for first in (0, 10)]
    for loop in loops:
        loop.start()
    for loop in loops:
        loop.join(TIMEOUT)
    assert sorted(results) == [[0, 2, 4, 6], [20, 22, 24, 26]]
    assert occupancy.most == 2


def test_work_waiting_for_a_slot_holds_up_neither_the_loop_nor_its_other_worker_threads() -> None:
    """Fifty pieces of work queued on one slot: the loop starts one thread for them, and an
    unrelated call to a worker thread of the same loop is answered before they are done."""
    io_threads, occupancy, done = IoThreads(1), Occupancy(), []
    threads_before = threading.active_count()

    async def main() -> None:
        async def one(value: int) -> None:
            done.append(await io_threads.run(occupancy.work, value))

        async with trio.open_nursery() as nursery:
            for value in range(50):
                nursery.start_soon(one, value)
            await trio.sleep(0.05)
            assert threading.active_count() <= threads_before + 1
            await trio.to_thread.run_sync(len, b"other work")
            assert len(done) < 50, "answered only once the queue had drained"
            nursery.cancel_scope.deadline = trio.current_time() + TIMEOUT
        assert len(done) == 50 and occupancy.most == 1

    trio.run(main)


def test_a_cancelled_caller_still_waits_for_its_work_to_end() -> None:
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.2)
        finished.set()

    async def main() -> None:
        with trio.move_on_after(0.02):
            await IoThreads(1).run(slow)
        assert finished.is_set()  # the disk is not left half-changed behind the caller

    trio.run(main)


def test_an_exception_in_the_work_reaches_the_caller_and_frees_the_slot() -> None:
    io_threads = IoThreads(1)

    def failing() -> None:
        raise OSError("disk full")

    async def main() -> None:
        with pytest.raises(OSError, match="disk full"):
            await io_threads.run(failing)
        assert await io_threads.run(len, b"abc") == 3  # the only slot was given back

    trio.run(main)


def test_num_io_threads_is_kafkas_default_and_refuses_zero(tmp_path: Path) -> None:
    assert BrokerConfig.load(None, [], environ={})["num.io.threads"] == 8
    assert BrokerConfig.load(None, ["num.io.threads=3"], environ={})["num.io.threads"] == 3
    with pytest.raises(ConfigError, match="num.io.threads"):
        BrokerConfig.load(None, ["num.io.threads=0"], environ={})


def test_one_io_thread_serves_fsync_per_message_producers_on_every_loop(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", {"num.network.threads": "4", "num.io.threads": "1"}).start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})  # kept alive until the topic is made
        admin.create_topics([NewTopic("durable", 4, 1, config={"flush.messages": "1"})])["durable"].result(TIMEOUT)
        producers = [Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0}) for _ in range(4)]
        for n, producer in enumerate(producers):  # four connections, spread over the loops in turn
            for i in range(100):
                producer.produce("durable", f"{n}-{i}".encode(), partition=(n + i) % 4)
        assert [producer.flush(TIMEOUT) for producer in producers] == [0, 0, 0, 0]
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "io-threads"})
        try:
            ends = [consumer.get_watermark_offsets(TopicPartition("durable", p), timeout=TIMEOUT)[1] for p in range(4)]
        finally:
            consumer.close()
        assert sum(ends) == 400
    finally:
        broker.stop()
