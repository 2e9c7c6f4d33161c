"""fastlog.records against third-party encoders/decoders, and on hostile input.

Cross-checks: kafka-python 3 (none, gzip: the only codec it has here) and
aiokafka (gzip, snappy in xerial framing, lz4, zstd: via cramjam) build batches
that fastlog decodes, and read the batches fastlog builds.  fastlog's batches
also pass the Rust core's validate_batches.
"""

from __future__ import annotations

import gzip
import resource
import struct
import time
import zlib

import cramjam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastlog._core as core
from fastlog.records import (
    CREATE_TIME,
    LOG_APPEND_TIME,
    Compression,
    ControlType,
    CorruptRecordsError,
    Record,
    RecordsTooLargeError,
    UnsupportedCompressionError,
    compress,
    decode_batches,
    decompress,
    encode_batch,
    encode_control_batch,
)

kafka_default = pytest.importorskip("kafka.record.default_records")
kafka_legacy = pytest.importorskip("kafka.record.legacy_records")
aiokafka_default = pytest.importorskip("aiokafka.record.default_records")

ALL_CODECS = list(Compression)
BASE_TS = 1_700_000_000_000


def sample_records(n: int = 5, base_offset: int = 0) -> list[Record]:
    """Compressible records with headers, null keys and null values."""
    out = []
    for i in range(n):
        out.append(
            Record(
                offset=base_offset + i,
                timestamp=BASE_TS + (i * 7) % 5 - 2,  # not monotonic, deltas of both signs
                key=None if i % 3 == 0 else b"key-%d" % i,
                value=None if i % 4 == 1 else b"value " * (i + 10),
                headers=[] if i % 2 else [("h1", b"x" * i), ("h-null", None), ("ünï", b"")],
            )
        )
    return out


def as_tuples(records) -> list[tuple]:
    return [(r.offset, r.timestamp, r.key, r.value, [tuple(h) for h in r.headers]) for r in records]


def rebuild(batch: bytes, *, body: bytes | None = None, attributes: int | None = None, count: int | None = None) -> bytes:
    """Patch a v2 batch's records section / attributes / count and fix length and CRC."""
    header = bytearray(batch[:61])
    if body is None:
        body = batch[61:]
    if attributes is not None:
        struct.pack_into(">h", header, 21, attributes)
    if count is not None:
        struct.pack_into(">i", header, 57, count)
    out = header + body
    struct.pack_into(">i", out, 8, len(out) - 12)
    struct.pack_into(">I", out, 17, core.crc32c(bytes(out[21:])))
    return bytes(out)


# --------------------------------------------------------------------------- #
# Third-party builders -> fastlog


def _build_with(module, codec: Compression, records, *, transactional=False) -> bytes:
    builder = module.DefaultRecordBatchBuilder(
        magic=2,
        compression_type=int(codec),
        is_transactional=transactional,
        producer_id=42 if transactional else -1,
        producer_epoch=3 if transactional else -1,
        base_sequence=7 if transactional else -1,
        batch_size=1 << 20,
    )
    for r in records:
        builder.append(r.offset, timestamp=r.timestamp, key=r.key, value=r.value, headers=r.headers)
    return bytes(builder.build())


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.GZIP], ids=lambda c: c.name)
def test_kafka_python_batches_decode(codec):
    records = sample_records(6)
    data = _build_with(kafka_default, codec, records, transactional=True)
    [batch] = decode_batches(data)
    assert as_tuples(batch.records) == as_tuples(records)
    assert batch.compression == codec
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (42, 3, 7)
    assert batch.is_transactional and not batch.is_control
    assert batch.last_offset_delta == 5 and batch.magic == 2
    assert batch.max_timestamp == max(r.timestamp for r in records)
    assert batch.size_in_bytes == len(data)


@pytest.mark.parametrize("codec", ALL_CODECS, ids=lambda c: c.name)
def test_aiokafka_batches_decode(codec):
    # aiokafka writes snappy in snappy-java's xerial framing, like the Java client.
    records = sample_records(8)
    data = _build_with(aiokafka_default, codec, records)
    if codec == Compression.SNAPPY:
        assert data[61:69] == b"\x82SNAPPY\x00"
    [batch] = decode_batches(data)
    assert batch.compression == codec
    assert as_tuples(batch.records) == as_tuples(records)


def test_raw_snappy_batch_decodes():
    # librdkafka and kafka-python (non-xerial mode) write a raw snappy block.
    records = sample_records(4)
    plain = encode_batch(records)
    raw = bytes(cramjam.snappy.compress_raw(plain[61:]))
    data = rebuild(plain, body=raw, attributes=int(Compression.SNAPPY))
    [batch] = decode_batches(data)
    assert batch.compression == Compression.SNAPPY
    assert batch.records == records


def test_xerial_multi_block_and_concatenated_streams():
    payload = bytes(range(256)) * 600  # > 32 KiB: several xerial blocks
    framed = compress(Compression.SNAPPY, payload)
    assert framed.startswith(b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01")
    assert decompress(Compression.SNAPPY, framed) == payload
    # snappy-java reads a second stream header in the middle as a new stream.
    assert decompress(Compression.SNAPPY, framed + framed) == payload + payload
    with pytest.raises(CorruptRecordsError):
        decompress(Compression.SNAPPY, framed[:-3])


# --------------------------------------------------------------------------- #
# fastlog -> third-party readers and the Rust core


def _read_with(module, data: bytes) -> tuple[object, list[tuple]]:
    batch = module.DefaultRecordBatch(bytes(data))
    assert batch.validate_crc()
    records = [(r.offset, r.timestamp, r.key, r.value, [tuple(h) for h in r.headers]) for r in batch]
    return batch, records


@pytest.mark.parametrize("codec", ALL_CODECS, ids=lambda c: c.name)
def test_fastlog_batches_read_by_clients_and_core(codec):
    records = sample_records(7, base_offset=100)
    data = encode_batch(
        records,
        base_offset=100,
        compression=codec,
        producer_id=9,
        producer_epoch=1,
        base_sequence=0,
        is_transactional=True,
        partition_leader_epoch=4,
    )
    assert core.validate_batches(data) == (7, 1)
    readers = [aiokafka_default]
    if codec in (Compression.NONE, Compression.GZIP):
        readers.append(kafka_default)
    for module in readers:
        batch, decoded = _read_with(module, data)
        assert decoded == as_tuples(records), module.__name__
        assert batch.compression_type == codec
        assert batch.producer_id == 9 and batch.is_transactional
    [mine] = decode_batches(data)
    assert mine.records == records
    assert (mine.base_offset, mine.partition_leader_epoch, mine.last_offset) == (100, 4, 106)


def test_log_append_time_and_core_assign_offsets():
    records = sample_records(3)
    data = encode_batch(records, compression=Compression.LZ4)
    stamped = core.assign_offsets(data, 500, leader_epoch=2, log_append_time=BASE_TS + 99)
    [batch] = decode_batches(stamped)
    assert batch.timestamp_type == LOG_APPEND_TIME
    assert [r.offset for r in batch.records] == [500, 501, 502]
    assert all(r.timestamp == BASE_TS + 99 for r in batch.records)
    assert batch.partition_leader_epoch == 2
    [again] = decode_batches(encode_batch(records, timestamp_type=LOG_APPEND_TIME))
    assert again.timestamp_type == LOG_APPEND_TIME
    assert {r.timestamp for r in again.records} == {max(r.timestamp for r in records)}


@pytest.mark.parametrize("control_type", list(ControlType), ids=lambda c: c.name)
def test_control_batches(control_type):
    data = encode_control_batch(
        control_type, producer_id=77, producer_epoch=5, coordinator_epoch=12, timestamp=BASE_TS, base_offset=30
    )
    assert core.validate_batches(data) == (1, 1)
    [batch] = decode_batches(data)
    assert batch.is_control and batch.is_transactional
    assert batch.control_type == control_type
    [ctrl] = batch.control_records
    assert (ctrl.version, ctrl.type, ctrl.coordinator_epoch) == (0, control_type, 12)
    assert ctrl.is_commit == (control_type == ControlType.COMMIT)
    # kafka-python sees the same marker.
    kbatch = kafka_default.DefaultRecordBatch(data)
    assert kbatch.validate_crc() and kbatch.is_control_batch
    [krec] = list(kbatch)
    assert krec.commit == (control_type == ControlType.COMMIT) and krec.abort != krec.commit


def test_data_batch_has_no_control_records():
    [batch] = decode_batches(encode_batch(sample_records(2)))
    assert batch.control_records == [] and batch.control_type is None


# --------------------------------------------------------------------------- #
# Runs of batches, partial trailing batch


def test_run_of_batches_and_trailing_partial():
    a = encode_batch(sample_records(3), base_offset=0, compression=Compression.ZSTD)
    b = encode_batch(sample_records(2, base_offset=3), base_offset=3)
    c = encode_batch(sample_records(2, base_offset=5), base_offset=5, compression=Compression.GZIP)
    run = a + b + c
    assert [x.base_offset for x in decode_batches(run)] == [0, 3, 5]
    assert core.validate_batches(run) == (7, 3)
    for cut in (1, 11, 12, 30, 61, len(c) - 1):
        partial = run[: len(run) - cut]
        assert [x.base_offset for x in decode_batches(partial)] == [0, 3]
        with pytest.raises(CorruptRecordsError):
            decode_batches(partial, allow_partial=False)
    assert decode_batches(b"") == []
    # Any buffer works, not only bytes.
    assert decode_batches(bytearray(run)) == decode_batches(memoryview(run)) == decode_batches(run)


# --------------------------------------------------------------------------- #
# Legacy message sets (magic 0/1)


aiokafka_legacy = pytest.importorskip("aiokafka.record.legacy_records")

LEGACY_CASES = [
    (kafka_legacy, 0, Compression.NONE),
    (kafka_legacy, 1, Compression.NONE),
    (kafka_legacy, 0, Compression.GZIP),
    (kafka_legacy, 1, Compression.GZIP),
    (aiokafka_legacy, 0, Compression.SNAPPY),
    (aiokafka_legacy, 1, Compression.SNAPPY),
    (aiokafka_legacy, 1, Compression.LZ4),
]


def _legacy_message_set(module, magic: int, codec: Compression, items) -> bytearray:
    builder = module.LegacyRecordBatchBuilder(magic=magic, compression_type=int(codec), batch_size=1 << 20)
    for i, (key, value) in enumerate(items):
        builder.append(i, timestamp=BASE_TS + i, key=key, value=value)
    return bytearray(builder.build())


@pytest.mark.parametrize(
    "module, magic, codec", LEGACY_CASES, ids=[f"{m.__name__.split('.')[0]}-v{v}-{c.name}" for m, v, c in LEGACY_CASES]
)
def test_legacy_message_sets(module, magic, codec):
    items = [(b"k%d" % i if i else None, b"v%d" % i * 30 if i != 2 else None) for i in range(4)]
    data = _legacy_message_set(module, magic, codec, items)
    relative = codec != Compression.NONE and magic == 1
    if relative:
        # KIP-31: the wrapper carries the offset of the last inner message,
        # whose offsets are relative.  The offset is outside the CRC.
        struct.pack_into(">q", data, 0, 13)
    batches = decode_batches(bytes(data))
    records = [r for b in batches for r in b.records]
    assert [r.offset for r in records] == ([10, 11, 12, 13] if relative else [0, 1, 2, 3])
    assert [(r.key, r.value) for r in records] == items
    expected_ts = [BASE_TS + i for i in range(4)] if magic == 1 else [-1] * 4
    assert [r.timestamp for r in records] == expected_ts
    assert all(b.magic == magic and b.compression == codec for b in batches)
    assert len(batches) == (4 if codec == Compression.NONE else 1)
    corrupt = bytearray(data)
    corrupt[-1] ^= 0xFF
    with pytest.raises(CorruptRecordsError):
        decode_batches(bytes(corrupt))
    # A trailing partial message is dropped, like a partial v2 batch.
    assert len(decode_batches(bytes(data[:-1]))) == len(batches) - 1


def test_legacy_v0_lz4_with_the_kip57_header_checksum_is_read():
    # Magic 0 LZ4 computed its frame header checksum over the magic number too (KIP-57);
    # kafka-python writes it that way for old brokers, as librdkafka does
    from kafka.codec import lz4_encode_old_kafka

    inner = _legacy_message_set(kafka_legacy, 0, Compression.NONE, [(None, b"x" * 100), (b"k", b"y")])
    frame = lz4_encode_old_kafka(bytes(inner))
    body = struct.pack(">bbi", 0, int(Compression.LZ4), -1) + struct.pack(">i", len(frame)) + frame
    data = struct.pack(">qiI", 1, 4 + len(body), zlib.crc32(body)) + body
    [batch] = decode_batches(bytes(data))
    assert [(r.key, r.value) for r in batch.records] == [(None, b"x" * 100), (b"k", b"y")]


def test_legacy_log_append_time_wrapper():
    data = _legacy_message_set(kafka_legacy, 1, Compression.GZIP, [(None, b"a" * 50), (None, b"b" * 50)])
    struct.pack_into(">q", data, 0, 1)
    # Set LOG_APPEND_TIME (attribute bit 3) and the wrapper timestamp; both are under the CRC.
    data[17] |= 0x08
    struct.pack_into(">q", data, 18, 42)
    struct.pack_into(">I", data, 12, zlib.crc32(bytes(data[16:])))
    [batch] = decode_batches(bytes(data))
    assert batch.timestamp_type == LOG_APPEND_TIME
    assert [(r.offset, r.timestamp) for r in batch.records] == [(0, 42), (1, 42)]


# --------------------------------------------------------------------------- #
# Hostile input


@pytest.mark.parametrize("codec", ALL_CODECS, ids=lambda c: c.name)
def test_lying_record_count(codec):
    good = encode_batch(sample_records(4), compression=codec)
    for count in (0, 3, 5, 1 << 30, (1 << 31) - 1, -1):
        with pytest.raises(CorruptRecordsError):
            decode_batches(rebuild(good, count=count))


def test_crc_mismatch_and_bad_magic_and_codec():
    good = bytearray(encode_batch(sample_records(2)))
    bad_crc = bytearray(good)
    bad_crc[good.index(b"value ")] ^= 1  # a byte inside a record value
    with pytest.raises(CorruptRecordsError, match="CRC"):
        decode_batches(bytes(bad_crc))
    [batch] = decode_batches(bytes(bad_crc), verify_crc=False)  # still parses
    assert batch.records[0].value.startswith(b"walue ")
    bad_magic = bytearray(good)
    bad_magic[16] = 3
    with pytest.raises(CorruptRecordsError, match="magic"):
        decode_batches(bytes(bad_magic))
    with pytest.raises(UnsupportedCompressionError):
        decode_batches(rebuild(bytes(good), attributes=6))
    with pytest.raises(UnsupportedCompressionError):
        decompress(7, b"")


def test_cramjam_decompress_into_stops_at_buffer_end():
    # The bound in fastlog.records relies on this behaviour of cramjam.
    for module in (cramjam.gzip, cramjam.zstd, cramjam.lz4):
        packed = bytes(module.compress(b"\0" * 100_000))
        with pytest.raises(Exception, match="write whole buffer"):
            module.decompress_into(packed, bytearray(1000))


def _bomb(codec: Compression) -> bytes:
    """~1 GiB of zeros from a small input (concatenated frames/members)."""
    chunk = b"\0" * (16 << 20)
    frame = {
        Compression.GZIP: lambda: gzip.compress(chunk, 9),
        Compression.ZSTD: lambda: bytes(cramjam.zstd.compress(chunk, level=3)),
        Compression.LZ4: lambda: bytes(cramjam.lz4.compress(chunk)),
    }[codec]()
    return frame * 64


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.ZSTD, Compression.LZ4], ids=lambda c: c.name)
def test_decompression_bomb_refused(codec):
    bomb = _bomb(codec)
    assert len(bomb) < 5 << 20
    batch = rebuild(encode_batch(sample_records(1)), body=bomb, attributes=int(codec))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.monotonic()
    with pytest.raises(RecordsTooLargeError, match="limit"):
        decode_batches(batch, max_bytes=8 << 20)
    with pytest.raises(RecordsTooLargeError):
        decode_batches(batch)  # the default limit (64 MiB) also holds
    assert time.monotonic() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 200 * 1024


def test_snappy_declared_length_refused_before_allocation():
    # A raw snappy block whose varint header claims 4 GiB.
    claim = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) + b"\x00a"
    with pytest.raises(RecordsTooLargeError):
        decompress(Compression.SNAPPY, claim, max_bytes=1 << 20)
    xerial = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1) + struct.pack(">i", len(claim)) + claim
    with pytest.raises(RecordsTooLargeError):
        decompress(Compression.SNAPPY, xerial, max_bytes=1 << 20)


def test_budget_covers_the_whole_call():
    records = [Record(0, BASE_TS, None, b"\0" * 100_000)]
    one = encode_batch(records, compression=Compression.ZSTD)
    assert len(decode_batches(one * 3, max_bytes=400_000)) == 3
    with pytest.raises(RecordsTooLargeError):
        decode_batches(one * 5, max_bytes=400_000)


# --------------------------------------------------------------------------- #
# Properties (bounded)

_headers = st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=16)), max_size=3)
_record_fields = st.tuples(
    st.integers(-(1 << 40), 1 << 40),  # timestamp
    st.none() | st.binary(max_size=32),
    st.none() | st.binary(max_size=64),
    _headers,
    st.integers(1, 1000),  # offset gap
)


@st.composite
def batches(draw):
    base_offset = draw(st.integers(0, 1 << 50))
    fields = draw(st.lists(_record_fields, min_size=1, max_size=8))
    records, offset = [], base_offset
    for ts, key, value, headers, gap in fields:
        records.append(Record(offset, ts, key, value, headers))
        offset += gap
    return base_offset, records


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches(),
    st.sampled_from(ALL_CODECS),
    st.sampled_from([CREATE_TIME, LOG_APPEND_TIME]),
    st.integers(-1, 1 << 20),
)
def test_round_trip(batch, codec, timestamp_type, producer_id):
    base_offset, records = batch
    data = encode_batch(
        records,
        base_offset=base_offset,
        compression=codec,
        timestamp_type=timestamp_type,
        producer_id=producer_id,
        producer_epoch=0,
        base_sequence=0,
    )
    if records[-1].offset - base_offset == len(records) - 1:
        # The core checks produce input: offsets 0..n-1 without gaps.
        assert core.validate_batches(data) == (len(records), 1)
    [decoded] = decode_batches(data)
    if timestamp_type == LOG_APPEND_TIME:
        top = max(r.timestamp for r in records)
        records = [Record(r.offset, top, r.key, r.value, r.headers) for r in records]
    assert decoded.records == records
    assert decoded.compression == codec and decoded.producer_id == producer_id
    # aiokafka reads the same thing.
    theirs = aiokafka_default.DefaultRecordBatch(data)
    assert theirs.validate_crc()
    assert [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in theirs] == as_tuples(records)
    assert decoded.last_offset == records[-1].offset


def _legacy_seed(magic: int, codec: int) -> bytes:
    b = kafka_legacy.LegacyRecordBatchBuilder(magic=magic, compression_type=codec, batch_size=1 << 16)
    for i in range(3):
        b.append(i, timestamp=BASE_TS, key=b"k", value=b"v" * 20)
    return bytes(b.build())


_fuzz_seeds = [encode_batch(sample_records(3), compression=codec) for codec in ALL_CODECS] + [
    _legacy_seed(0, 0),
    _legacy_seed(1, 1),
]


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(range(len(_fuzz_seeds))),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 10_000),
    st.booleans(),
)
def test_fuzz_mutations_raise_only_typed_error(seed_index, flips, cut, verify_crc):
    data = bytearray(_fuzz_seeds[seed_index])
    for where, value in flips:
        data[where % len(data)] = value
    data = bytes(data[: max(0, len(data) - cut % 40)])
    for allow_partial in (True, False):
        try:
            decode_batches(data, verify_crc=verify_crc, allow_partial=allow_partial, max_bytes=1 << 20)
        except CorruptRecordsError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(ALL_CODECS))
def test_fuzz_records_section(body, codec):
    # Arbitrary bytes as a (compressed) records section behind a valid header and CRC.
    shell = encode_batch([Record(0, 0, None, None)])
    try:
        decode_batches(rebuild(shell, body=body, attributes=int(codec)), max_bytes=1 << 20)
    except CorruptRecordsError:
        pass
    try:
        decompress(codec, body, max_bytes=1 << 16)
    except CorruptRecordsError:
        pass


def test_encode_rejects_bad_input():
    with pytest.raises(ValueError):
        encode_batch([])
    with pytest.raises(ValueError):
        encode_batch([Record(5, 0, None, None), Record(5, 0, None, None)], base_offset=5)
    with pytest.raises(ValueError):
        encode_batch([Record(4, 0, None, None)], base_offset=5)
    with pytest.raises(ValueError):
        encode_batch([Record(0, 0, None, None)], producer_epoch=1 << 20)
