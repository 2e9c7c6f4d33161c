"""Message formats v0 and v1 (magic 0 and 1), as clients written for Kafka before 0.11 send and
read them (sarama with its default Version, kafka-go 0.2, librdkafka with
`broker.version.fallback` below 0.10, ...).

fastlog stores record batches v2 only, as Kafka 3 does: a Produce that carries a legacy message
set is converted up before the append (`to_record_batch`), and a Fetch below v4 gets the stored
batches converted down to the format its version implies (`down_convert`: v0-v1 read magic 0,
v2-v3 magic 1), as Kafka's `message.downconversion.enable` (default true) allows.

Message layout (both magics): offset int64 | size int32 | crc uint32 (CRC32 of what follows) |
magic int8 | attributes int8 | [timestamp int64, magic 1 only] | key bytes | value bytes. A
compressed message is a wrapper whose value is the compressed message set of its inner
messages; with magic 1 the inner offsets are relative (0..n-1) and the wrapper carries the
absolute offset of the last one (KIP-31), with magic 0 every offset is absolute.
"""

from __future__ import annotations

import struct
import zlib
from typing import Optional

from fastlog.records import LOG_APPEND_TIME, Compression, Record, RecordBatch, compress, decode_batches, encode_batch

MAGIC_OFFSET = 16  # the magic byte sits here in every format (batch.rs's OFF_MAGIC)
ATTR_TIMESTAMP_TYPE = 0x08
_HEAD = struct.Struct(">qiI")  # offset, size, crc
_FORMAT_NAMES = {0: "message format v0 (magic 0)", 1: "message format v1 (magic 1)", 2: "record batch v2"}


def magic_of(records: bytes | bytearray | memoryview) -> int:
    """The format of a Produce partition's records: 0, 1 or 2 (2 when too short to tell)."""
    return records[MAGIC_OFFSET] if len(records) > MAGIC_OFFSET else 2


def format_name(magic: int) -> str:
    return _FORMAT_NAMES.get(magic, f"unknown format (magic {magic})")


def fetch_magic(fetch_version: int) -> int:
    """The message format a Fetch of this version reads (Kafka's `FetchRequest` rule)."""
    if fetch_version <= 1:
        return 0
    return 1 if fetch_version <= 3 else 2


# -- up: a producer's legacy message set to one record batch v2 -----------------------------------


def to_record_batch(data: bytes | memoryview, max_bytes: int) -> bytes:
    """One record batch v2 holding the messages of a legacy message set, in order, with their
    keys, values and timestamps (magic 0 has none: -1) and the wrappers' codec. The CRC of every
    message (and inner message) is checked. Raises `records.CorruptRecordsError` (or
    `UnsupportedCompressionError`, `RecordsTooLargeError`) for what cannot be read."""
    batches = decode_batches(data, allow_partial=False, max_bytes=max_bytes)
    records = [Record(i, r.timestamp, r.key, r.value) for i, r in enumerate(r for b in batches for r in b.records)]
    codec = next((b.compression for b in batches if b.compression != Compression.NONE), Compression.NONE)
    return encode_batch(records, compression=codec)


# -- down: stored record batches v2 to a legacy message set ---------------------------------------


def _message(offset: int, magic: int, attributes: int, timestamp: int, key: Optional[bytes], value: Optional[bytes]) -> bytes:
    body = bytearray(struct.pack(">bb", magic, attributes))
    if magic == 1:
        body += struct.pack(">q", timestamp)
    for part in (key, value):
        body += struct.pack(">i", -1) if part is None else struct.pack(">i", len(part)) + part
    return _HEAD.pack(offset, 4 + len(body), zlib.crc32(body) & 0xFFFFFFFF) + bytes(body)


def _codec_for(magic: int, codec: Compression) -> Compression:
    """The wrapper codec a legacy reader can take: zstd (Kafka 2.1+) does not exist in the legacy
    formats, and magic-0 LZ4 used a broken frame checksum (KIP-57): those go uncompressed."""
    if codec == Compression.ZSTD or (codec == Compression.LZ4 and magic == 0):
        return Compression.NONE
    return codec


def _batch_messages(batch: RecordBatch, magic: int, first_offset: int) -> list[bytes]:
    """A stored batch as legacy messages: one per record, or one compressed wrapper."""
    records = [r for r in batch.records if r.offset >= first_offset]
    if not records:
        return []
    log_append = batch.timestamp_type == LOG_APPEND_TIME and magic == 1
    attributes = ATTR_TIMESTAMP_TYPE if log_append else 0

    def timestamp(record: Record) -> int:
        return batch.max_timestamp if log_append else record.timestamp

    codec = _codec_for(magic, batch.compression)
    if codec == Compression.NONE:
        return [_message(r.offset, magic, attributes, timestamp(r), r.key, r.value) for r in records]
    # magic 1: inner offsets relative to the first, the wrapper carrying the last's absolute
    # offset (a reader adds wrapper - last relative); magic 0: every offset absolute
    base = records[0].offset if magic == 1 else 0
    inner = b"".join(_message(r.offset - base, magic, 0, timestamp(r), r.key, r.value) for r in records)
    wrapper_timestamp = max(timestamp(r) for r in records)
    return [_message(records[-1].offset, magic, attributes | int(codec), wrapper_timestamp, None, compress(codec, inner))]


def down_convert(stored: bytes, magic: int, first_offset: int, max_bytes: int) -> bytes:
    """The stored batches as a legacy message set of `magic`, without records below
    `first_offset` or control records, cut after the last whole message within `max_bytes`
    (the first message is always whole, as KIP-74 has it)."""
    out = bytearray()
    for batch in decode_batches(stored, verify_crc=False):
        if batch.is_control:
            continue
        for message in _batch_messages(batch, magic, first_offset):
            if out and len(out) + len(message) > max_bytes:
                return bytes(out)
            out += message
    return bytes(out)
