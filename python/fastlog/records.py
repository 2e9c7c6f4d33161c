"""Kafka record batches (magic 2) and legacy message sets (magic 0/1), in Python.

The broker's hot path keeps record data opaque (the Rust core validates batches
and assigns offsets); this module is for the places that must look inside:
tests, the CLI, internal writers such as the group coordinator, and the broker
when it has to recompress.  It favours clarity over speed.

Layout of a magic-2 batch (``DefaultRecordBatch.java``)::

    baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 |
    crc u32 | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 |
    maxTimestamp i64 | producerId i64 | producerEpoch i16 | baseSequence i32 |
    recordsCount i32 | records...

The CRC (CRC-32C) covers everything from ``attributes`` to the end of the batch.
When the batch is compressed, only the records section is compressed.

Untrusted input
---------------
:func:`decode_batches` never allocates in proportion to a length or count read
from the input.  Decompressed output is bounded by ``max_bytes``, a budget for
the whole call (all batches together, so a run of many small "bombs" cannot
add up): gzip, zstd and LZ4 are inflated with ``cramjam.<codec>.decompress_into``
into a fixed-size buffer, which stops with an error as soon as the buffer is
full, so at most ``max_bytes + 1`` bytes are ever produced (the buffer starts
small and doubles up to that limit; see :func:`decompress`).  Snappy blocks
carry their uncompressed length up front, which is checked before inflating.
A record count larger than the bytes present can hold is refused before any
record is parsed.  Beyond the decompressed bytes, decoding builds Python
objects: at most one :class:`Record` per 7 bytes of (decompressed) records.

All malformed input raises :class:`CorruptRecordsError` (a ``ValueError``);
exceeding ``max_bytes`` raises its subclass :class:`RecordsTooLargeError`.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import cramjam
import xxhash

from fastlog._core import crc32c as _core_crc32c

__all__ = [
    "CREATE_TIME",
    "DEFAULT_MAX_BYTES",
    "LOG_APPEND_TIME",
    "NO_TIMESTAMP",
    "Compression",
    "ControlRecord",
    "ControlType",
    "CorruptRecordsError",
    "Record",
    "RecordBatch",
    "RecordsTooLargeError",
    "TimestampType",
    "UnsupportedCompressionError",
    "compress",
    "decode_batches",
    "decompress",
    "encode_batch",
    "encode_control_batch",
]

Buffer = Union[bytes, bytearray, memoryview]
Header = Tuple[str, Optional[bytes]]


class CorruptRecordsError(ValueError):
    """Record data is malformed: bad framing, CRC, varint, count or compression."""


class RecordsTooLargeError(CorruptRecordsError):
    """Decompressed record data would exceed the caller's ``max_bytes`` limit."""


class UnsupportedCompressionError(CorruptRecordsError):
    """The attributes name a compression codec that Kafka does not define."""


class Compression(enum.IntEnum):
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class TimestampType(enum.IntEnum):
    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


CREATE_TIME = TimestampType.CREATE_TIME
LOG_APPEND_TIME = TimestampType.LOG_APPEND_TIME
NO_TIMESTAMP = -1

#: Default decompression budget of one :func:`decode_batches` call.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class ControlType(enum.IntEnum):
    """Type of a control record (``ControlRecordType.java``)."""

    ABORT = 0
    COMMIT = 1


@dataclass
class Record:
    """One record; ``offset`` and ``timestamp`` are absolute."""

    offset: int
    timestamp: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: List[Header] = field(default_factory=list)


@dataclass
class ControlRecord:
    """A control record's key (version, type) and, for transaction markers, its value."""

    version: int
    type: Union[ControlType, int]
    coordinator_epoch: Optional[int] = None

    @property
    def is_commit(self) -> bool:
        return self.type == ControlType.COMMIT

    @property
    def is_abort(self) -> bool:
        return self.type == ControlType.ABORT


@dataclass
class RecordBatch:
    """A decoded batch.  Legacy (magic 0/1) wrapper messages are presented as
    batches too, with the v2-only fields at their "absent" values (-1)."""

    base_offset: int
    partition_leader_epoch: int
    magic: int
    crc: int
    compression: Compression
    timestamp_type: TimestampType
    is_transactional: bool
    is_control: bool
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: List[Record]
    #: Bytes this batch occupies on the wire (compressed, with its header).
    size_in_bytes: int = 0

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1

    @property
    def control_records(self) -> List[ControlRecord]:
        """The records of a control batch, parsed; ``[]`` for a data batch."""
        if not self.is_control:
            return []
        return [_parse_control_record(r) for r in self.records]

    @property
    def control_type(self) -> Optional[ControlType]:
        """ABORT or COMMIT for a transaction marker batch, else ``None``."""
        controls = self.control_records
        if not controls or not isinstance(controls[0].type, ControlType):
            return None
        return controls[0].type


# --------------------------------------------------------------------------- #
# Constants of the wire format

# Where a magic-2 batch's header fields sit (Kafka's DefaultRecordBatch), for code that reads or
# rewrites one of them without decoding the batch (the produce path, the mirror).
BATCH_MAGIC_AT, BATCH_CRC_AT, BATCH_ATTRIBUTES_AT, BATCH_LAST_DELTA_AT = 16, 17, 21, 23
BATCH_MAX_TIMESTAMP_AT, BATCH_PRODUCER_AT, BATCH_COUNT_AT, BATCH_HEADER_SIZE = 35, 43, 57, 61
ATTR_LOG_APPEND_TIME, ATTR_TRANSACTIONAL, ATTR_CONTROL, ATTR_DELETE_HORIZON = 0x08, 0x10, 0x20, 0x40

_V2_HEADER = struct.Struct(">qiibIhiqqqhii")
_V2_HEADER_SIZE = _V2_HEADER.size  # 61
_LOG_OVERHEAD = 12  # baseOffset + batchLength / offset + messageSize
_V2_CRC_START = 21  # attributes onwards
_V2_MIN_BATCH_LENGTH = _V2_HEADER_SIZE - _LOG_OVERHEAD  # 49
# length, attributes, timestampDelta, offsetDelta, keyLength, valueLength,
# headerCount: one byte each at least.
_MIN_RECORD_SIZE = 7

_ATTR_COMPRESSION_MASK = 0x07
_ATTR_TIMESTAMP_TYPE = 0x08
_ATTR_TRANSACTIONAL = 0x10
_ATTR_CONTROL = 0x20

_LEGACY_MAGIC_OFFSET = 16  # the magic byte sits at offset 16 in every format
_LEGACY_HEADER = struct.Struct(">qiIbb")  # offset, size, crc, magic, attributes
_LEGACY_MIN_SIZE = {0: 14, 1: 22}  # crc .. value length, excluding LOG_OVERHEAD

_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = struct.Struct(">8sii")  # magic, version, compatible version
_XERIAL_BLOCK_SIZE = 32 * 1024  # what snappy-java's SnappyOutputStream uses
_GROW_MIN = 64 * 1024


# --------------------------------------------------------------------------- #
# Compression


def compress(codec: Compression, data: Buffer) -> bytes:
    """Compress a records section the way the Java client does.

    Snappy uses snappy-java's xerial framing (the Java producer and the Kafka
    broker write it; every client also reads raw snappy).  LZ4 uses the LZ4
    frame format with independent 64 KiB blocks and no content checksum, as
    ``KafkaLZ4BlockOutputStream`` does.
    """
    codec = Compression(codec)
    if codec == Compression.NONE:
        return bytes(data)
    if codec == Compression.GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec == Compression.SNAPPY:
        return _xerial_encode(data)
    if codec == Compression.LZ4:
        compressor = cramjam.lz4.Compressor(content_checksum=False, block_linked=False)
        compressor.compress(bytes(data))
        return bytes(compressor.finish())
    return bytes(cramjam.zstd.compress(data, level=3))  # Kafka's default level


def _xerial_encode(data: Buffer) -> bytes:
    view = memoryview(data)
    out = bytearray(_XERIAL_HEADER.pack(_XERIAL_MAGIC, 1, 1))
    for start in range(0, len(view), _XERIAL_BLOCK_SIZE):
        block = bytes(cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK_SIZE]))
        out += struct.pack(">i", len(block))
        out += block
    return bytes(out)


def decompress(codec: Compression, data: Buffer, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Decompress ``data``, refusing to produce more than ``max_bytes`` bytes.

    Raises :class:`RecordsTooLargeError` past the limit and
    :class:`CorruptRecordsError` for anything that does not decode.
    """
    try:
        codec = Compression(codec)
    except ValueError:
        raise UnsupportedCompressionError(f"unknown compression codec {codec}") from None
    if codec == Compression.NONE:
        if len(data) > max_bytes:
            raise RecordsTooLargeError(f"{len(data)} bytes exceed the limit of {max_bytes}")
        return bytes(data)
    if codec == Compression.SNAPPY:
        return _snappy_decode(bytes(data), max_bytes)
    module = {Compression.GZIP: cramjam.gzip, Compression.LZ4: cramjam.lz4, Compression.ZSTD: cramjam.zstd}[codec]
    hint = 4 * len(data)
    if codec == Compression.GZIP and len(data) >= 18:
        # ISIZE (the last member's size mod 2**32) is only a hint; deflate
        # cannot expand more than ~1032:1, so a larger claim is a lie.
        hint = min(int.from_bytes(bytes(data[-4:]), "little"), 1032 * len(data))
    return _bounded_decompress(module, codec.name.lower(), bytes(data), max_bytes, hint)


def _bounded_decompress(module, name: str, data: bytes, max_bytes: int, hint: int) -> bytes:
    # decompress_into() streams into the fixed buffer and fails with Rust's
    # io::ErrorKind::WriteZero ("failed to write whole buffer") once it is
    # full, without producing the rest: that is the bound.  Grow geometrically
    # so typical batches are inflated once, without allocating max_bytes.
    size = min(max_bytes + 1, max(_GROW_MIN, hint))
    while True:
        buf = bytearray(size)
        try:
            n = module.decompress_into(data, buf)
        except Exception as exc:  # cramjam raises DecompressionError / OSError
            if "write whole buffer" not in str(exc):
                raise CorruptRecordsError(f"{name} decompression failed: {exc}") from None
            if size > max_bytes:
                raise RecordsTooLargeError(
                    f"{name} data decompresses to more than the limit of {max_bytes} bytes"
                ) from None
            size = min(max_bytes + 1, size * 2)
            continue
        if n > max_bytes:
            raise RecordsTooLargeError(
                f"{name} data decompresses to more than the limit of {max_bytes} bytes"
            )
        del buf[n:]
        return bytes(buf)


def _snappy_block(block: bytes, limit: int) -> bytes:
    try:
        length = cramjam.snappy.decompress_raw_len(block)
    except Exception as exc:
        raise CorruptRecordsError(f"snappy decompression failed: {exc}") from None
    if length > limit:
        raise RecordsTooLargeError(f"snappy block of {length} bytes exceeds the limit of {limit} bytes")
    buf = bytearray(length)
    try:
        n = cramjam.snappy.decompress_raw_into(block, buf)
    except Exception as exc:
        raise CorruptRecordsError(f"snappy decompression failed: {exc}") from None
    if n != length:
        raise CorruptRecordsError(f"snappy block decoded to {n} bytes, header said {length}")
    return bytes(buf)


def _snappy_decode(data: bytes, max_bytes: int) -> bytes:
    """Raw snappy, or snappy-java's xerial framing (as librdkafka detects it)."""
    if not (len(data) >= _XERIAL_HEADER.size and data.startswith(_XERIAL_MAGIC)):
        return _snappy_block(data, max_bytes)
    out = bytearray()
    pos = 0
    while pos < len(data):
        # snappy-java reads concatenated streams: a header may reappear.
        if data.startswith(_XERIAL_MAGIC, pos) and len(data) - pos >= _XERIAL_HEADER.size:
            pos += _XERIAL_HEADER.size
            continue
        if len(data) - pos < 4:
            raise CorruptRecordsError("truncated xerial snappy block length")
        (length,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if length < 0 or length > len(data) - pos:
            raise CorruptRecordsError(f"xerial snappy block length {length} is out of range")
        out += _snappy_block(data[pos : pos + length], max_bytes - len(out))
        pos += length
    return bytes(out)


# --------------------------------------------------------------------------- #
# Varints (zigzag, as in protobuf and ByteUtils.java)


def _zigzag(value: int, bounds: Tuple[int, int], what: str, out: bytearray) -> None:
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{what} {value} is out of range")
    u = (value << 1) ^ (value >> 63)
    u &= (1 << 64) - 1
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)


class _Reader:
    """A cursor over a records section that raises CorruptRecordsError."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: Buffer, pos: int = 0, end: Optional[int] = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def varint(self, max_len: int = 5) -> int:
        buf, pos, end = self.buf, self.pos, self.end
        result = shift = 0
        for i in range(max_len):
            if pos + i >= end:
                raise CorruptRecordsError("varint runs past the end of the data")
            b = buf[pos + i]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                self.pos = pos + i + 1
                value = (result >> 1) ^ -(result & 1)
                lo, hi = _INT32 if max_len == 5 else _INT64
                if not lo <= value <= hi:
                    raise CorruptRecordsError(f"varint {value} overflows")
                return value
            shift += 7
        raise CorruptRecordsError(f"varint longer than {max_len} bytes")

    def varlong(self) -> int:
        return self.varint(10)

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.end - self.pos:
            raise CorruptRecordsError(f"{what} of {n} bytes runs past the end of the record")
        data = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return data

    def nullable(self, what: str) -> Optional[bytes]:
        n = self.varint()
        if n == -1:
            return None
        if n < -1:
            raise CorruptRecordsError(f"invalid {what} length {n}")
        return self.take(n, what)


# --------------------------------------------------------------------------- #
# Encoding


def _encode_records(records: Sequence[Record], base_offset: int, base_timestamp: int) -> bytearray:
    out = bytearray()
    body = bytearray()
    previous = -1
    for record in records:
        delta = record.offset - base_offset
        if delta <= previous:
            raise ValueError(
                f"record offsets must increase from base_offset {base_offset}: got {record.offset}"
            )
        previous = delta
        body.clear()
        body.append(0)  # record attributes: unused
        _zigzag(record.timestamp - base_timestamp, _INT64, "timestamp delta", body)
        _zigzag(delta, _INT32, "offset delta", body)
        for what, blob in (("key", record.key), ("value", record.value)):
            if blob is None:
                body.append(1)  # zigzag(-1)
            else:
                _zigzag(len(blob), _INT32, f"{what} length", body)
                body += blob
        _zigzag(len(record.headers), _INT32, "header count", body)
        for name, value in record.headers:
            if not isinstance(name, str):
                raise TypeError(f"header key must be str, not {type(name).__name__}")
            encoded = name.encode("utf-8")
            _zigzag(len(encoded), _INT32, "header key length", body)
            body += encoded
            if value is None:
                body.append(1)
            else:
                _zigzag(len(value), _INT32, "header value length", body)
                body += value
        _zigzag(len(body), _INT32, "record length", out)
        out += body
    return out


def encode_batch(
    records: Iterable[Record],
    *,
    base_offset: int = 0,
    compression: Compression = Compression.NONE,
    timestamp_type: TimestampType = CREATE_TIME,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
    is_control: bool = False,
    partition_leader_epoch: int = -1,
) -> bytes:
    """Build one magic-2 record batch.

    Each record's offset delta is ``record.offset - base_offset``: offsets must
    strictly increase (gaps are allowed, as after compaction).  The batch's
    base timestamp is the first record's timestamp and its max timestamp the
    largest one.  With LOG_APPEND_TIME, readers report ``max_timestamp`` for
    every record (set it by giving the records that timestamp).  The requested
    codec is always applied, even when it does not shrink the data.

    Raises ``ValueError`` for an empty batch or out-of-range values.
    """
    records = list(records)
    if not records:
        raise ValueError("a record batch needs at least one record")
    compression = Compression(compression)
    timestamp_type = TimestampType(timestamp_type)
    base_timestamp = records[0].timestamp
    max_timestamp = max(r.timestamp for r in records)
    body = _encode_records(records, base_offset, base_timestamp)
    if compression != Compression.NONE:
        body = compress(compression, body)

    attributes = int(compression)
    if timestamp_type == LOG_APPEND_TIME:
        attributes |= _ATTR_TIMESTAMP_TYPE
    if is_transactional:
        attributes |= _ATTR_TRANSACTIONAL
    if is_control:
        attributes |= _ATTR_CONTROL

    batch_length = _V2_HEADER_SIZE - _LOG_OVERHEAD + len(body)
    try:
        header = _V2_HEADER.pack(
            base_offset,
            batch_length,
            partition_leader_epoch,
            2,
            0,  # crc, filled in below
            attributes,
            records[-1].offset - base_offset,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            len(records),
        )
    except struct.error as exc:
        raise ValueError(f"batch header field out of range: {exc}") from None
    batch = bytearray(header)
    batch += body
    struct.pack_into(">I", batch, 17, _core_crc32c(bytes(batch[_V2_CRC_START:])))
    return bytes(batch)


def encode_control_batch(
    control_type: ControlType,
    *,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    timestamp: int,
    base_offset: int = 0,
    partition_leader_epoch: int = -1,
) -> bytes:
    """Build a transaction marker (``EndTransactionMarker.java``): a transactional
    control batch holding one record, key = (version 0, type), value =
    (version 0, coordinator epoch)."""
    record = Record(
        offset=base_offset,
        timestamp=timestamp,
        key=struct.pack(">hh", 0, int(control_type)),
        value=struct.pack(">hi", 0, coordinator_epoch),
    )
    return encode_batch(
        [record],
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        is_transactional=True,
        is_control=True,
        partition_leader_epoch=partition_leader_epoch,
    )


def _parse_control_record(record: Record) -> ControlRecord:
    key = record.key
    if key is None or len(key) < 4:
        raise CorruptRecordsError(f"control record at offset {record.offset} has a short key")
    version, raw_type = struct.unpack_from(">hh", key)
    if version < 0:
        raise CorruptRecordsError(f"control record at offset {record.offset} has version {version}")
    try:
        control_type: Union[ControlType, int] = ControlType(raw_type)
    except ValueError:
        control_type = raw_type  # unknown types are skipped by consumers, not fatal
    coordinator_epoch = None
    value = record.value
    if control_type in (ControlType.ABORT, ControlType.COMMIT) and value is not None and len(value) >= 6:
        _, coordinator_epoch = struct.unpack_from(">hi", value)
    return ControlRecord(version, control_type, coordinator_epoch)


# --------------------------------------------------------------------------- #
# Decoding


class _Budget:
    """Decompressed bytes still allowed in this decode_batches() call."""

    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.left = self.limit = limit

    def take(self, codec: Compression, data: Buffer) -> bytes:
        try:
            out = decompress(codec, data, self.left)
        except RecordsTooLargeError:
            raise RecordsTooLargeError(
                f"decompressed record data exceeds the limit of {self.limit} bytes"
            ) from None
        self.left -= len(out)
        return out


def decode_batches(
    data: Buffer,
    *,
    verify_crc: bool = True,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_partial: bool = True,
) -> List[RecordBatch]:
    """Decode a run of record batches (magic 2) or legacy messages (magic 0/1).

    A trailing partial batch is ignored when ``allow_partial`` is true, as
    clients do with Fetch responses; pass ``False`` for Produce requests.
    ``max_bytes`` bounds decompressed data across the whole call.

    Raises :class:`CorruptRecordsError` (or :class:`RecordsTooLargeError`).
    """
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    budget = _Budget(max_bytes)
    batches: List[RecordBatch] = []
    pos = 0
    total = len(view)
    while pos < total:
        if total - pos < _LOG_OVERHEAD + 5:
            if allow_partial:
                break
            raise CorruptRecordsError(f"truncated batch header at byte {pos}")
        (length,) = struct.unpack_from(">i", view, pos + 8)
        magic = view[pos + _LEGACY_MAGIC_OFFSET]
        if magic > 2:
            raise CorruptRecordsError(f"unknown magic {magic} at byte {pos}")
        minimum = _V2_MIN_BATCH_LENGTH if magic == 2 else _LEGACY_MIN_SIZE[magic]
        if length < minimum:
            raise CorruptRecordsError(f"batch length {length} at byte {pos} is below the minimum {minimum}")
        end = pos + _LOG_OVERHEAD + length
        if end > total:
            if allow_partial:
                break
            raise CorruptRecordsError(
                f"batch at byte {pos} claims {length} bytes but only {total - pos - _LOG_OVERHEAD} remain"
            )
        if magic == 2:
            batches.append(_decode_v2(view, pos, end, verify_crc, budget))
        else:
            batches.extend(_decode_legacy(view, pos, end, verify_crc, budget, inner=False, outer=None))
        pos = end
    return batches


def _decode_v2(view: Buffer, pos: int, end: int, verify_crc: bool, budget: _Budget) -> RecordBatch:
    (
        base_offset,
        _length,
        partition_leader_epoch,
        magic,
        crc,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    ) = _V2_HEADER.unpack_from(view, pos)
    if verify_crc:
        actual = _core_crc32c(bytes(view[pos + _V2_CRC_START : end]))
        if actual != crc:
            raise CorruptRecordsError(
                f"batch at offset {base_offset}: CRC 0x{crc:08x} does not match computed 0x{actual:08x}"
            )
    codec_id = attributes & _ATTR_COMPRESSION_MASK
    try:
        codec = Compression(codec_id)
    except ValueError:
        raise UnsupportedCompressionError(
            f"batch at offset {base_offset}: unknown compression codec {codec_id}"
        ) from None
    timestamp_type = TimestampType(1 if attributes & _ATTR_TIMESTAMP_TYPE else 0)
    is_control = bool(attributes & _ATTR_CONTROL)
    if count < 0:
        raise CorruptRecordsError(f"batch at offset {base_offset}: negative record count {count}")

    body_start = pos + _V2_HEADER_SIZE
    if codec == Compression.NONE:
        reader = _Reader(view, body_start, end)
    else:
        try:
            reader = _Reader(budget.take(codec, view[body_start:end]))
        except CorruptRecordsError as exc:
            raise type(exc)(f"batch at offset {base_offset}: {exc}") from None
    if count > (reader.end - reader.pos) // _MIN_RECORD_SIZE:
        raise CorruptRecordsError(
            f"batch at offset {base_offset} claims {count} records in {reader.end - reader.pos} bytes"
        )

    log_append = timestamp_type == LOG_APPEND_TIME
    records = []
    for _ in range(count):
        records.append(_decode_record(reader, base_offset, base_timestamp, max_timestamp if log_append else None))
    if reader.pos != reader.end:
        raise CorruptRecordsError(
            f"batch at offset {base_offset}: {reader.end - reader.pos} bytes left after {count} records"
        )
    return RecordBatch(
        base_offset=base_offset,
        partition_leader_epoch=partition_leader_epoch,
        magic=magic,
        crc=crc,
        compression=codec,
        timestamp_type=timestamp_type,
        is_transactional=bool(attributes & _ATTR_TRANSACTIONAL),
        is_control=is_control,
        last_offset_delta=last_offset_delta,
        base_timestamp=base_timestamp,
        max_timestamp=max_timestamp,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        records=records,
        size_in_bytes=end - pos,
    )


def _decode_record(reader: _Reader, base_offset: int, base_timestamp: int, log_append_time: Optional[int]) -> Record:
    length = reader.varint()
    if length < 0 or length > reader.end - reader.pos:
        raise CorruptRecordsError(f"record length {length} runs past the end of the batch")
    start = reader.pos
    outer_end = reader.end
    reader.end = start + length  # nothing inside may read past the record
    reader.take(1, "record attributes")
    timestamp_delta = reader.varlong()
    offset_delta = reader.varint()
    key = reader.nullable("record key")
    value = reader.nullable("record value")
    header_count = reader.varint()
    if header_count < 0 or header_count > (reader.end - reader.pos) // 2:
        raise CorruptRecordsError(f"invalid header count {header_count}")
    headers = []
    for _ in range(header_count):
        name_len = reader.varint()
        if name_len < 0:
            raise CorruptRecordsError(f"invalid header key length {name_len}")
        try:
            name = reader.take(name_len, "header key").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptRecordsError(f"header key is not UTF-8: {exc}") from None
        headers.append((name, reader.nullable("header value")))
    if reader.pos != reader.end:
        raise CorruptRecordsError(f"record declares {length} bytes but holds {reader.pos - start}")
    reader.end = outer_end
    timestamp = log_append_time if log_append_time is not None else base_timestamp + timestamp_delta
    return Record(base_offset + offset_delta, timestamp, key, value, headers)


def _decode_legacy(
    view: Buffer,
    pos: int,
    end: int,
    verify_crc: bool,
    budget: _Budget,
    *,
    inner: bool,
    outer: Optional[Tuple[int, int, int]],
) -> List[RecordBatch]:
    """One magic 0/1 message; a compressed wrapper expands to its inner messages.

    ``outer`` is the wrapper's (offset, timestamp_type, timestamp) for inner
    messages; magic-1 inner offsets are relative, the wrapper carrying the
    offset of the last one (KIP-31).
    """
    offset, _size, crc, magic, attributes = _LEGACY_HEADER.unpack_from(view, pos)
    if verify_crc:
        actual = zlib.crc32(view[pos + 16 : end]) & 0xFFFFFFFF
        if actual != crc:
            raise CorruptRecordsError(
                f"message at offset {offset}: CRC 0x{crc:08x} does not match computed 0x{actual:08x}"
            )
    reader = _Reader(view, pos + 18, end)
    timestamp = NO_TIMESTAMP
    if magic == 1:
        (timestamp,) = struct.unpack_from(">q", view, reader.pos)
        reader.pos += 8
    key = _legacy_bytes(reader, "key")
    value = _legacy_bytes(reader, "value")
    if reader.pos != end:
        raise CorruptRecordsError(f"message at offset {offset}: {end - reader.pos} trailing bytes")
    codec_id = attributes & _ATTR_COMPRESSION_MASK
    if codec_id > Compression.ZSTD:  # zstd postdates these formats, but sarama 1.22 sends it in them
        raise UnsupportedCompressionError(f"message at offset {offset}: compression codec {codec_id}")
    codec = Compression(codec_id)
    timestamp_type = TimestampType(1 if magic == 1 and attributes & _ATTR_TIMESTAMP_TYPE else 0)

    if codec == Compression.NONE:
        if outer is not None:
            outer_offset, outer_type, outer_timestamp = outer
            if outer_type == LOG_APPEND_TIME:
                timestamp, timestamp_type = outer_timestamp, LOG_APPEND_TIME
        records = [Record(offset, timestamp, key, value, [])]
        batch_offset = offset
    else:
        if inner:
            raise CorruptRecordsError(f"message at offset {offset}: nested compressed message")
        if value is None:
            raise CorruptRecordsError(f"compressed message at offset {offset} has no value")
        if codec == Compression.LZ4 and magic == 0:
            value = _kip57_lz4_header(value)
        try:
            payload = budget.take(codec, value)
        except CorruptRecordsError as exc:
            raise type(exc)(f"message at offset {offset}: {exc}") from None
        inner_batches: List[RecordBatch] = []
        ipos = 0
        while ipos < len(payload):
            if len(payload) - ipos < _LOG_OVERHEAD + 5:
                raise CorruptRecordsError(f"message at offset {offset}: truncated inner message")
            (ilength,) = struct.unpack_from(">i", payload, ipos + 8)
            imagic = payload[ipos + _LEGACY_MAGIC_OFFSET]
            if imagic > 1 or ilength < _LEGACY_MIN_SIZE[imagic] or ipos + _LOG_OVERHEAD + ilength > len(payload):
                raise CorruptRecordsError(f"message at offset {offset}: malformed inner message")
            inner_batches.extend(
                _decode_legacy(
                    payload,
                    ipos,
                    ipos + _LOG_OVERHEAD + ilength,
                    verify_crc,
                    budget,
                    inner=True,
                    outer=(offset, timestamp_type, timestamp),
                )
            )
            ipos += _LOG_OVERHEAD + ilength
        records = [r for b in inner_batches for r in b.records]
        if not records:
            raise CorruptRecordsError(f"compressed message at offset {offset} holds no messages")
        if magic == 1:
            last_relative = records[-1].offset
            for r in records:
                r.offset = offset - last_relative + r.offset
        batch_offset = records[0].offset

    return [
        RecordBatch(
            base_offset=batch_offset,
            partition_leader_epoch=-1,
            magic=magic,
            crc=crc,
            compression=codec,
            timestamp_type=timestamp_type,
            is_transactional=False,
            is_control=False,
            last_offset_delta=records[-1].offset - batch_offset,
            base_timestamp=timestamp,
            max_timestamp=timestamp,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            records=records,
            size_in_bytes=end - pos,
        )
    ]


def _kip57_lz4_header(frame: bytes) -> bytes:
    """Magic-0 LZ4 (Kafka 0.8-0.9; librdkafka still writes it for old brokers) computed the frame
    descriptor's checksum over the magic number too (KIP-57). Recomputed over the descriptor
    alone (FLG, BD and the optional content size), the frame reads as standard LZ4."""
    if len(frame) < 7:
        return frame
    end = 6 + (8 if frame[4] & 0x08 else 0)
    checksum = (xxhash.xxh32_intdigest(frame[4:end]) >> 8) & 0xFF
    return frame[:end] + bytes([checksum]) + frame[end + 1 :]


def _legacy_bytes(reader: _Reader, what: str) -> Optional[bytes]:
    if reader.end - reader.pos < 4:
        raise CorruptRecordsError(f"truncated message {what} length")
    (n,) = struct.unpack_from(">i", reader.buf, reader.pos)
    reader.pos += 4
    if n == -1:
        return None
    return reader.take(n, f"message {what}")
