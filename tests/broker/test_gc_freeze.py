"""The broker keeps the objects of open partitions frozen (out of the garbage collector's
sight) when topics come and go at run time: `refreeze_if_moved`, on this process's collector."""

from __future__ import annotations

import gc
import weakref

from pathlib import Path

from fastlog.broker import refreeze_if_moved
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
        assert refreeze_if_moved(1000, 1050) == 1000, "5 % more partitions: not worth a refreeze"
        assert refreeze_if_moved(10, 90) == 10, "fewer than 100 opened: not worth one either"
        assert tracked(Held) == 50
        assert refreeze_if_moved(1000, 1150) == 1150
        assert tracked(Held) == 0, "frozen: full collections no longer walk them"
        del held
    finally:
        gc.unfreeze()


def test_a_refreeze_after_topics_are_deleted_collects_what_they_left() -> None:
    try:
        gone = Held()
        alive = weakref.ref(gone)
        assert refreeze_if_moved(0, 200) == 200
        del gone  # a deleted topic's objects, frozen while it was open
        gc.collect()
        assert alive() is not None, "frozen garbage is out of the collector's sight"
        assert refreeze_if_moved(200, 50) == 50, "150 partitions closed: refrozen"
        assert alive() is None, "unfrozen first, so collected"
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
