"""Offset translation (`mirror/offsets.py`) and MM2's record layouts (`mirror/records.py`)."""

from __future__ import annotations

import struct

import pytest

from fastlog.mirror.offsets import OffsetSyncs
from fastlog.mirror.records import Checkpoint, Heartbeat, OffsetSync

KEY = ("orders", 0)


def test_a_linear_run_needs_one_sync_and_translates_exactly() -> None:
    syncs = OffsetSyncs()
    assert syncs.advance(KEY, 100, 0) == [(100, 0)]  # started at the source's log start 100, target empty
    for upstream in range(150, 1000, 50):
        assert syncs.advance(KEY, upstream, upstream - 100) == []
    assert syncs.syncs[KEY] == [(100, 0)]
    assert [syncs.translate(KEY, u) for u in (100, 101, 500, 950)] == [0, 1, 400, 850]
    assert syncs.translate(KEY, 951) is None  # not copied yet
    assert syncs.translate(KEY, 99) is None  # before anything mirrored


def test_a_gap_or_a_repeat_writes_a_sync_and_translation_stays_on_the_safe_side() -> None:
    syncs = OffsetSyncs()
    syncs.advance(KEY, 0, 0)
    assert syncs.advance(KEY, 10, 10) == []
    assert syncs.advance(KEY, 30, 15) == [(10, 10), (30, 15)]  # 20 source offsets, 5 records: a compacted gap
    assert syncs.translate(KEY, 10) == 10  # exact inside the linear run (0..10)
    assert syncs.translate(KEY, 12) == 10  # inside the gap: the last known point (12 may be the first record after it)
    assert syncs.translate(KEY, 30) == 15
    # A restart copies 20..30 again at the target's end (15): the later mapping wins.
    syncs.add(KEY, 20, 15)
    assert syncs.translate(KEY, 20) == 15
    assert syncs.translate(KEY, 25) == 15  # between it and the current position: the sync's own point


def test_a_checkpoint_reader_without_the_current_position_translates_up_to_the_last_sync() -> None:
    syncs = OffsetSyncs()
    syncs.add(KEY, 0, 0)
    syncs.add(KEY, 100, 100)
    assert syncs.translate(KEY, 50) == 50
    assert syncs.translate(KEY, 100) == 100
    assert syncs.translate(KEY, 101) is None


def test_records_in_mm2_s_layout() -> None:
    sync = OffsetSync("orders", 3, 42, 7)
    assert sync.key() == struct.pack(">h6si", 6, b"orders", 3)
    assert sync.value() == struct.pack(">qq", 42, 7)
    assert OffsetSync.read(sync.key(), sync.value()) == sync
    checkpoint = Checkpoint("billing", "a.orders", 1, 100, 90, "meta")
    assert checkpoint.value() == struct.pack(">hqqh4s", 0, 100, 90, 4, b"meta")
    assert checkpoint.key() == struct.pack(">h7sh8si", 7, b"billing", 8, b"a.orders", 1)
    assert Checkpoint.read(checkpoint.key(), checkpoint.value()) == checkpoint
    heartbeat = Heartbeat("a", "b", 1_700_000_000_000)
    assert heartbeat.value() == struct.pack(">hq", 0, 1_700_000_000_000)
    assert Heartbeat.read(heartbeat.key(), heartbeat.value()) == heartbeat


@pytest.mark.parametrize("key, value", [(b"", b""), (b"\x00\x10abc", b"\x00" * 16), (b"\x00\x01a\x00\x00\x00\x01", b"\x00\x01")])
def test_unreadable_records_are_refused(key: bytes, value: bytes) -> None:
    with pytest.raises((ValueError, struct.error)):
        OffsetSync.read(key, value)


def test_no_cycle_in_a_ring_of_three() -> None:
    from fastlog.mirror.config import MirrorConfig

    settings = {"clusters": "a, b, c", "a.bootstrap.servers": "x:1", "b.bootstrap.servers": "y:1", "c.bootstrap.servers": "z:1",
                "a->b.enabled": "true", "b->c.enabled": "true", "c->a.enabled": "true"}
    config = MirrorConfig.from_settings(settings)
    flows = {f.name: f for f in config.flows}
    assert config.wanted(flows["c->a"], "b.orders")  # b's orders go on to a
    assert not config.wanted(flows["c->a"], "b.a.orders")  # a's own orders, back around the ring
    assert not config.wanted(flows["a->b"], "c.b.orders")
    assert config.wanted(flows["a->b"], "orders")
