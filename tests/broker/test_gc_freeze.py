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


def test_a_deleted_topics_partitions_are_freed_by_reference_counting_while_frozen(tmp_path: Path) -> None:
    """Why deletions need no full walk: a broker serves a topic (produce, a group's fetches),
    its objects are frozen, the topic is deleted over the wire, and every partition object is
    gone at once, with the collector disabled. A cycle through a partition would keep it."""
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

    server = threading.Thread(target=trio.run, args=(serve,))
    server.start()
    bootstrap = f"127.0.0.1:{port}"
    try:
        assert listening.wait(30)
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
        consumer.close()
        assert got == 40
        partitions = [weakref.ref(p) for p in broker.logs.topics["doomed"].partitions]
        gc.collect()
        gc.disable()
        gc.freeze()
        admin.delete_topics(["doomed"])["doomed"].result(timeout=30)
        deadline = time.monotonic() + 10
        while any(p() is not None for p in partitions) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p() for p in partitions] == [None] * 4, "no cycle holds a deleted partition"
    finally:
        gc.unfreeze()
        gc.enable()
        if tokens:
            trio.from_thread.run_sync(broker.request_shutdown, trio_token=tokens[0])
        server.join(30)


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
