"""The broker keeps the objects of open partitions frozen (out of the garbage collector's
sight) when topics come and go at run time: `Refreezer`, on this process's collector."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from pathlib import Path

import trio
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from fastlog.broker import Broker, Refreezer
from fastlog.config import BrokerConfig
from fastlog.log_manager import LogManager
from tests.conftest import free_port


class Held:
    """Stands for long-lived objects that may die in a cycle (a connection's)."""

    def __init__(self) -> None:
        self.me = self  # cyclic: only the collector frees it


def tracked(kind: type) -> int:
    return sum(isinstance(o, kind) for o in gc.get_objects())


def test_partitions_opened_at_run_time_are_frozen_once_their_count_has_moved_far_enough() -> None:
    try:
        gc.freeze()
        held = [Held() for _ in range(50)]
        assert not Refreezer(1000).check(1050), "5 % more partitions: not worth a refreeze"
        assert not Refreezer(10).check(90), "fewer than 100 opened: not worth one either"
        assert tracked(Held) == 50
        refreezer = Refreezer(1000)
        assert refreezer.check(1150)
        assert refreezer.frozen_at == 1150
        assert tracked(Held) == 0, "frozen: full collections no longer walk them"
        del held
    finally:
        gc.unfreeze()


def test_a_refreeze_after_topics_are_deleted_walks_only_what_is_new() -> None:
    """Deleted partitions' objects are freed by reference counting (the test below): the
    refreeze does not walk the frozen again for them."""
    try:
        gc.collect()
        gc.freeze()
        kept = Held()  # what the collector would free, were the frozen walked
        alive = weakref.ref(kept)
        refreezer = Refreezer(0)
        assert refreezer.check(200)
        del kept
        new = Held()
        assert refreezer.check(50), "150 partitions closed: refrozen"
        assert alive() is not None, "the frozen were not walked"
        assert tracked(Held) == 0, "what was new is frozen"
        del new
    finally:
        gc.unfreeze()


def test_deletions_lower_the_count_that_the_frozen_must_double_from() -> None:
    try:
        gc.collect()
        gc.freeze()
        refreezer = Refreezer(1000)
        many = [[i] for i in range(gc.get_freeze_count())]  # freed by reference counting
        assert refreezer.check(2000)
        assert refreezer.check(4000), "the frozen have doubled: a full walk"
        walked_at = refreezer.frozen_after_full_walk
        del many  # their topics deleted: freed while frozen
        assert refreezer.check(2000)
        lowered = refreezer.frozen_after_full_walk
        assert lowered < walked_at * 0.75, "the base follows the frozen down"
        gone = Held()
        alive = weakref.ref(gone)
        grown = [[i] for i in range(2 * lowered)]
        assert refreezer.check(3000)
        del gone
        assert alive() is not None, "frozen: not walked"
        assert refreezer.check(4000)
        assert alive() is None, "doubled from the lowered base, not from the last full walk's: a full walk"
        del grown
    finally:
        gc.unfreeze()


def test_a_deleted_topics_partitions_are_freed_by_reference_counting_while_frozen(tmp_path: Path) -> None:
    """Why deletions need no full walk: a broker serves a topic (produce, a group's fetches, still
    parked on the partitions when it goes), its objects are frozen, the topic is deleted over the
    wire, and every partition object is gone with collections that never walk the frozen. A
    cycle through a frozen partition would keep it."""
    port = free_port()
    broker = Broker(BrokerConfig.load(None, [f"listeners=PLAINTEXT://127.0.0.1:{port}", f"log.dirs={tmp_path}", "metrics.port=-1",
                                             "schema.registry.listeners=-1", "num.network.threads=2"]))
    tokens: list[trio.lowlevel.TrioToken] = []
    listening = threading.Event()

    async def serve() -> None:
        tokens.append(trio.lowlevel.current_trio_token())
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.run)
            listening.set()

    server = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    server.start()
    bootstrap = f"127.0.0.1:{port}"
    polling = threading.Event()
    try:
        deadline = time.monotonic() + 30
        while not listening.wait(0.1):
            assert server.is_alive() and time.monotonic() < deadline, "the broker did not start"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("doomed", 4, 1)])["doomed"].result(timeout=30)
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(40):
            producer.produce("doomed", value=b"%d" % i, partition=i % 4)
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "g", "auto.offset.reset": "earliest"})
        consumer.subscribe(["doomed"])
        got, deadline = 0, time.monotonic() + 30
        while got < 40 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            got += message is not None and message.error() is None
        assert got == 40

        def poll_on() -> None:  # caught up: its fetches park on the partitions
            while polling.is_set():
                consumer.poll(0.1)

        polling.set()
        poller = threading.Thread(target=poll_on, daemon=True)
        poller.start()
        time.sleep(1)
        partitions = [weakref.ref(p) for p in broker.logs.topics["doomed"].partitions]
        gc.collect()
        gc.freeze()
        admin.delete_topics(["doomed"])["doomed"].result(timeout=30)
        deadline = time.monotonic() + 10
        while any(p() is not None for p in partitions) and time.monotonic() < deadline:
            gc.collect()  # of what is not frozen: what came after the freeze, never a full walk
            time.sleep(0.05)
        assert [p() for p in partitions] == [None] * 4, "no cycle holds a deleted partition"
        polling.clear()
        poller.join(10)
        consumer.close()
    finally:
        polling.clear()
        gc.unfreeze()
        if tokens and server.is_alive():
            trio.from_thread.run_sync(broker.request_shutdown, trio_token=tokens[0])
        server.join(30)
    assert not server.is_alive(), "the broker stopped"


def test_a_refreeze_after_topics_are_created_walks_only_what_is_new_until_the_frozen_have_doubled() -> None:
    try:
        gc.collect()
        gc.freeze()
        at_start = gc.get_freeze_count()
        gone = Held()
        alive = weakref.ref(gone)
        refreezer = Refreezer(1000)
        assert refreezer.check(1100)
        del gone  # say, a connection open at that refreeze and closed since
        assert refreezer.check(1210)
        assert alive() is not None, "partitions were added: the frozen were not walked again"
        assert gc.get_freeze_count() < 2 * at_start
        grown = [Held() for _ in range(at_start)]  # as many new long-lived objects as were frozen
        assert refreezer.check(1331)
        assert alive() is not None
        assert gc.get_freeze_count() >= 2 * at_start
        assert refreezer.check(1500)
        assert alive() is None, "the frozen had doubled: a full walk collected what died meanwhile"
        assert tracked(Held) == 0, "and what is new is frozen"
        del grown
    finally:
        gc.unfreeze()


def test_the_count_it_watches_is_every_partition_open(tmp_path: Path) -> None:
    logs = LogManager(BrokerConfig({"log.dirs": str(tmp_path), "listeners": "PLAINTEXT://127.0.0.1:0"}))
    logs.open()
    try:
        assert logs.partition_count() == 0
        logs.create_topic("a", 3, {})
        logs.create_topic("b", 5, {})
        assert logs.partition_count() == 8
    finally:
        logs.close()
