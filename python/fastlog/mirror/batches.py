"""Record batches copied as they are: the fast path of mirroring.

A fetched magic-2 batch whose records are all at or past the mirror's position and whose
offsets have no gap is sent to the target unchanged but for the fields that belong to the
source cluster: its base offset and partition leader epoch (the target assigns its own), and
the producer id, epoch and sequence and the transactional flag (the source's producer means
nothing on the target; the copy is a plain append). Its records, their keys, values, headers
and timestamps, and its compression, stay byte for byte, and the CRC is computed again. Such a
batch costs no decoding and no compressing here. Batches of aborted transactions (the source's
read_committed Fetch names them) are not copied; with exactly-once, `stamp` makes each batch
the mirror's own transactional producer's.

Anything else (a batch that starts before the position, a compacted batch with offset gaps,
an old message format) is decoded, and its records from the position on are encoded into a
batch of their own (same compression); control batches (transaction markers) are not copied.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterable, Optional

from fastlog._core import crc32c
from fastlog.client import AbortedFilter
from fastlog.records import ATTR_CONTROL as CONTROL
from fastlog.records import ATTR_DELETE_HORIZON as DELETE_HORIZON
from fastlog.records import ATTR_LOG_APPEND_TIME as LOG_APPEND_TIME
from fastlog.records import ATTR_TRANSACTIONAL as TRANSACTIONAL
from fastlog.records import BATCH_ATTRIBUTES_AT as ATTRIBUTES_AT
from fastlog.records import BATCH_COUNT_AT as COUNT_AT
from fastlog.records import BATCH_CRC_AT as CRC_AT
from fastlog.records import BATCH_HEADER_SIZE as HEADER_SIZE
from fastlog.records import BATCH_LAST_DELTA_AT as LAST_DELTA_AT
from fastlog.records import BATCH_MAGIC_AT as MAGIC_AT
from fastlog.records import BATCH_MAX_TIMESTAMP_AT as MAX_TIMESTAMP_AT
from fastlog.records import BATCH_PRODUCER_AT as PRODUCER_AT
from fastlog.records import ControlType, Record, decode_batches, encode_batch

LOG_OVERHEAD = 12  # base offset (8) and length (4)
NO_PRODUCER = struct.pack(">qhi", -1, -1, -1)  # producer id, epoch, base sequence


@dataclass
class Copy:
    """What a partition's fetched bytes give the target: batches to append, in order, each with
    its record count."""

    batches: list[tuple[bytes, int]] = field(default_factory=list)
    count: int = 0  # records in all
    size: int = 0  # bytes in all (batches as sent, records' keys and values)
    next_offset: int = -1  # the source offset after the last batch seen
    last_timestamp: Optional[int] = None  # of the last record copied, milliseconds


def split(data: bytes, position: int, aborted: Iterable[tuple[int, int]] = ()) -> Copy:
    """The batches of `data` (a Fetch response's records) from source offset `position` on,
    leaving out those of the `aborted` transactions (a read_committed Fetch's list)."""
    copy = Copy(next_offset=position)
    committed = AbortedFilter(aborted)
    at, total = 0, len(data)
    while at + MAGIC_AT + 1 <= total:  # old-format messages are shorter than a v2 header
        (base, length) = struct.unpack_from(">qi", data, at)
        end = at + LOG_OVERHEAD + length
        if length <= 0 or end > total:  # a partial batch at the end of the response
            break
        batch = data[at:end]
        at = end
        magic = batch[MAGIC_AT]
        if magic == 2 and len(batch) < HEADER_SIZE:
            raise ValueError(f"a record batch of {len(batch)} bytes at offset {base}")
        last = base + struct.unpack_from(">i", batch, LAST_DELTA_AT)[0] if magic == 2 else None
        if magic == 2 and last is not None and last < position:
            continue
        attributes = struct.unpack_from(">h", batch, ATTRIBUTES_AT)[0] if magic == 2 else 0
        count = struct.unpack_from(">i", batch, COUNT_AT)[0] if magic == 2 else -1
        if magic == 2:
            producer_id = struct.unpack_from(">q", batch, PRODUCER_AT)[0]
            abort_marker = bool(attributes & CONTROL) and decode_batches(batch)[0].control_type == ControlType.ABORT
            if not committed.keeps_header(last, producer_id, bool(attributes & TRANSACTIONAL), abort_marker) and not attributes & CONTROL:
                copy.next_offset = max(copy.next_offset, last + 1)  # an aborted transaction's: not copied
                continue
        if magic == 2 and attributes & CONTROL:
            copy.next_offset = max(copy.next_offset, last + 1)
            continue
        # As it is: from the position on, no offset gap, create times (a target's produce
        # refuses LogAppendTime; decoding gives each record its append time as create time).
        if magic == 2 and base >= position and count == last - base + 1 and not attributes & (LOG_APPEND_TIME | DELETE_HORIZON):
            _add_batch(copy, rewrite(batch, attributes), count, last)
            continue
        for decoded in decode_batches(batch):  # the slow path: decode, copy the records
            copy.next_offset = max(copy.next_offset, decoded.next_offset)
            kept = [r for r in decoded.records if r.offset >= position] if not decoded.is_control else []
            if kept:  # renumbered from 0: a produced batch's offset deltas are consecutive
                encoded = encode_batch([Record(i, r.timestamp, r.key, r.value, r.headers) for i, r in enumerate(kept)], compression=decoded.compression)
                copy.batches.append((encoded, len(kept)))
                copy.count += len(kept)
                copy.size += len(encoded)
                copy.last_timestamp = kept[-1].timestamp
    return copy


def _add_batch(copy: Copy, batch: bytes, count: int, last: int) -> None:
    copy.batches.append((batch, count))
    copy.count += count
    copy.size += len(batch)
    copy.next_offset = max(copy.next_offset, last + 1)
    copy.last_timestamp = struct.unpack_from(">q", batch, MAX_TIMESTAMP_AT)[0]


def rewrite(batch: bytes, attributes: int) -> bytes:
    """The batch as the target's append: base offset 0, no leader epoch, no producer, not
    transactional; its CRC computed again (it covers the attributes on)."""
    out = bytearray(batch)
    struct.pack_into(">q", out, 0, 0)
    struct.pack_into(">i", out, 12, -1)  # partition leader epoch
    struct.pack_into(">h", out, ATTRIBUTES_AT, attributes & ~TRANSACTIONAL)
    out[PRODUCER_AT : PRODUCER_AT + len(NO_PRODUCER)] = NO_PRODUCER
    struct.pack_into(">I", out, CRC_AT, crc32c(bytes(out[ATTRIBUTES_AT:])))
    return bytes(out)


def stamp(batch: bytes, producer_id: int, producer_epoch: int, base_sequence: int) -> bytes:
    """A batch (as `split` gives them) made a transactional producer's: its id, epoch and base
    sequence, the transactional flag, the CRC computed again (exactly-once mirroring)."""
    out = bytearray(batch)
    attributes = struct.unpack_from(">h", out, ATTRIBUTES_AT)[0]
    struct.pack_into(">h", out, ATTRIBUTES_AT, attributes | TRANSACTIONAL)
    struct.pack_into(">qhi", out, PRODUCER_AT, producer_id, producer_epoch, base_sequence)
    struct.pack_into(">I", out, CRC_AT, crc32c(bytes(out[ATTRIBUTES_AT:])))
    return bytes(out)
