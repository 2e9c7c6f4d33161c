"""The broker keeps the objects of open partitions frozen (out of the garbage collector's
sight) when topics come and go at run time: `Refreezer`, on this process's collector."""

from __future__ import annotations

import gc
import weakref

from pathlib import Path

from fastlog.broker import Refreezer
from fastlog.config import BrokerConfig
from fastlog.log_manager import LogManager


class Held:
    """Stands for a partition's objects."""

    def __init__(self) -> None:
        self.me = self  # cyclic, as a partition's objects are: only the collector frees them


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


def test_a_refreeze_after_topics_are_deleted_collects_what_they_left() -> None:
    try:
        gone = Held()
        alive = weakref.ref(gone)
        refreezer = Refreezer(0)
        assert refreezer.check(200)
        del gone  # a deleted topic's objects, frozen while it was open
        gc.collect()
        assert alive() is not None, "frozen garbage is out of the collector's sight"
        assert refreezer.check(50), "150 partitions closed: refrozen"
        assert alive() is None, "unfrozen first, so collected"
    finally:
        gc.unfreeze()


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
