"""The mirror's batch copying (`mirror/batches.py`): whole batches rewritten for the target,
the rest decoded and encoded again, control batches left out."""

from __future__ import annotations

from fastlog.mirror.batches import split
from fastlog.records import Compression, ControlType, Record, decode_batches, encode_batch, encode_control_batch


def records(first: int, n: int) -> list[Record]:
    return [Record(first + i, 1_700_000_000_000 + i, f"k{i}".encode(), f"v{first + i}".encode(), [("h", b"x")]) for i in range(n)]


def test_whole_batches_are_copied_with_the_source_s_producer_and_offsets_cleared() -> None:
    data = encode_batch(records(10, 5), base_offset=10, compression=Compression.ZSTD, producer_id=7, producer_epoch=1,
                        base_sequence=3, is_transactional=True, partition_leader_epoch=4)
    data += encode_batch(records(15, 3), base_offset=15)
    copy = split(data, 10)
    assert copy.count == 8 and copy.next_offset == 18 and len(copy.batches) == 2
    first = decode_batches(copy.batches[0][0])[0]  # its CRC checks
    assert (first.base_offset, first.producer_id, first.producer_epoch, first.base_sequence, first.is_transactional) == (0, -1, -1, -1, False)
    assert first.compression == Compression.ZSTD and first.partition_leader_epoch == -1
    assert [(r.key, r.value, r.headers, r.timestamp) for r in first.records] == [(r.key, r.value, r.headers, r.timestamp) for r in records(10, 5)]
    assert copy.last_timestamp == 1_700_000_000_002


def test_a_batch_straddling_the_position_and_a_compacted_one_are_encoded_again() -> None:
    straddling = encode_batch(records(0, 10), base_offset=0)
    compacted = encode_batch([r for r in records(10, 10) if r.offset % 2 == 0], base_offset=10)  # offsets 10, 12, ... 18
    copy = split(straddling + compacted, 6)
    assert [count for _, count in copy.batches] == [4, 5]
    copied = [r.value for batch, _ in copy.batches for b in decode_batches(batch) for r in b.records]
    assert copied == [f"v{i}".encode() for i in (6, 7, 8, 9, 10, 12, 14, 16, 18)]
    assert [r.offset for r in decode_batches(copy.batches[1][0])[0].records] == [0, 1, 2, 3, 4]  # consecutive deltas
    assert copy.next_offset == 19


def test_control_batches_and_earlier_batches_are_skipped_and_a_partial_one_left_for_later() -> None:
    before = encode_batch(records(0, 5), base_offset=0)
    marker = encode_control_batch(ControlType.COMMIT, base_offset=5, producer_id=7, producer_epoch=0, coordinator_epoch=0, timestamp=1)
    after = encode_batch(records(6, 2), base_offset=6)
    copy = split(before + marker + after + after[:20], 5)
    assert copy.count == 2 and copy.next_offset == 8


def test_a_log_append_time_batch_is_copied_with_create_times() -> None:
    from fastlog.records import LOG_APPEND_TIME, CREATE_TIME

    stamped = [Record(i, 1_700_000_000_999, b"k", f"v{i}".encode()) for i in range(3)]  # each reads the append time
    copy = split(encode_batch(stamped, timestamp_type=LOG_APPEND_TIME), 0)
    batch = decode_batches(copy.batches[0][0])[0]
    assert batch.timestamp_type == CREATE_TIME
    assert [r.timestamp for r in batch.records] == [1_700_000_000_999] * 3
