"""Headers, request framing helpers, tagged fields, records parts, error codes."""

from __future__ import annotations

import struct

import pytest

import fastlog.protocol as P
from fastlog.protocol import (
    CodecError, ErrorCode, InvalidValueError, Reader, TruncatedError, UnknownApiKeyError,
    UnsupportedVersionError, Writer,
)


def test_class_metadata_and_defaults():
    assert P.ProduceRequest.API_KEY == 0
    assert P.ProduceRequest.VALID_VERSIONS == (0, 11)
    assert P.ProduceRequest.FLEXIBLE_MIN == 9
    assert P.SaslHandshakeRequest.FLEXIBLE_MIN is None
    r = P.ProduceRequest()
    assert r.transactional_id is None and r.topic_data == [] and r.acks == 0
    assert P.ProduceResponse.PartitionProduceResponse().log_append_time_ms == -1
    assert P.MetadataRequest().allow_auto_topic_creation is True
    assert P.ProduceRequest.TopicProduceData.__qualname__ == "ProduceRequest.TopicProduceData"
    assert "ProduceRequest.TopicProduceData(name='t'" in repr(P.ProduceRequest.TopicProduceData(name="t"))
    assert P.request_class(3) is P.MetadataRequest and P.response_class(3) is P.MetadataResponse
    assert P.API_BY_KEY[18].valid_versions == (0, 4)


def test_header_versions():
    assert P.request_header_version(0, 8) == 1
    assert P.request_header_version(0, 9) == 2
    assert P.request_header_version(7, 0) == 0
    assert P.request_header_version(7, 1) == 1
    assert P.response_header_version(0, 9) == 1
    assert P.response_header_version(0, 8) == 0
    for v in range(5):  # KIP-511: ApiVersions responses always use header v0
        assert P.response_header_version(18, v) == 0
    assert P.request_header_version(18, 3) == 2
    with pytest.raises(UnsupportedVersionError):
        P.request_header_version(0, 99)
    with pytest.raises(UnknownApiKeyError):
        P.response_header_version(9999, 0)


def test_client_id_is_never_compact():
    h = P.RequestHeader(request_api_key=18, request_api_version=3, correlation_id=7, client_id="abc")
    data = h.encode(2)
    assert data == struct.pack(">hhih", 18, 3, 7, 3) + b"abc" + b"\x00"


def _frame(header, body):
    return P.encode_request(header, body).getvalue()


def test_decode_request_roundtrip():
    body = P.MetadataRequest(topics=[P.MetadataRequest.MetadataRequestTopic(name="t")])
    hdr = P.RequestHeader(request_api_key=3, request_api_version=12, correlation_id=42, client_id="c")
    h2, b2, trailing = P.decode_request(_frame(hdr, body))
    assert h2 == hdr and b2 == body and trailing == 0


def test_decode_request_ignores_bytes_after_the_last_field_as_kafka_does():
    # librdkafka 2.x writes a 4-byte placeholder for Metadata v12's null topics array and
    # leaves the 3 unused bytes after the request (librdkafka issue 5049).
    hdr = P.RequestHeader(request_api_key=3, request_api_version=12, correlation_id=7, client_id="rdkafka")
    frame = _frame(hdr, P.MetadataRequest(topics=None))
    header, body, trailing = P.decode_request(frame + b"\x00\x00\x00")
    assert header == hdr and body.topics is None and trailing == 3
    legacy = P.RequestHeader(request_api_key=3, request_api_version=1, correlation_id=8, client_id="x")
    _, body, trailing = P.decode_request(_frame(legacy, P.MetadataRequest(topics=[])) + b"\xff" * 9)
    assert body.topics == [] and trailing == 9


def test_decode_request_unsupported_version_carries_ids():
    frame = struct.pack(">hhih", 18, 99, 1234, 1) + b"x" + b"\x00\x00\x00"
    with pytest.raises(UnsupportedVersionError) as ei:
        P.decode_request(frame)
    e = ei.value
    assert (e.api_key, e.api_version, e.correlation_id) == (18, 99, 1234)
    assert e.error_code == ErrorCode.UNSUPPORTED_VERSION == 35


def test_a_pair_already_decoded_does_not_let_other_versions_or_keys_through():
    # decode_request and encode_response remember what they checked per (api key, version):
    # a good pair seen first must not change what a bad one gets, however often it comes.
    body = P.ApiVersionsRequest(client_software_name="c", client_software_version="1")
    good = _frame(P.RequestHeader(request_api_key=18, request_api_version=3, correlation_id=1, client_id="c"), body)
    for _ in range(2):
        assert P.decode_request(good)[1] == body
        with pytest.raises(UnsupportedVersionError) as ei:
            P.decode_request(struct.pack(">hhih", 18, 99, 7, 1) + b"x" + b"\x00\x00\x00")
        assert (ei.value.api_version, ei.value.correlation_id) == (99, 7)
        with pytest.raises(UnknownApiKeyError):
            P.decode_request(struct.pack(">hhih", 9999, 3, 8, 1) + b"x" + b"\x00")
    answer = P.ApiVersionsResponse()
    assert P.encode_response(5, 18, 3, answer).getvalue()[:4] == struct.pack(">i", 5)
    for bad in (99, 3.0, "3"):
        with pytest.raises(UnsupportedVersionError):
            P.encode_response(5, 18, bad, answer)


def test_decode_request_unknown_key_carries_ids():
    with pytest.raises(UnknownApiKeyError) as ei:
        P.decode_request(struct.pack(">hhih", 4242, 0, 9, -1))
    assert (ei.value.api_key, ei.value.api_version, ei.value.correlation_id) == (4242, 0, 9)
    assert ei.value.error_code == 35


def test_decode_request_truncated_body_carries_ids():
    body = P.ProduceRequest(acks=1, topic_data=[P.ProduceRequest.TopicProduceData(name="t")])
    hdr = P.RequestHeader(request_api_key=0, request_api_version=9, correlation_id=5, client_id=None)
    frame = _frame(hdr, body)
    for cut in range(8, len(frame)):
        with pytest.raises(CodecError) as ei:
            P.decode_request(frame[:cut])
        assert ei.value.correlation_id == 5 and ei.value.error_code == ErrorCode.INVALID_REQUEST
    assert P.decode_request(frame + b"\x00")[2] == 1
    with pytest.raises(TruncatedError):
        P.decode_request(frame[:5])


def test_encode_response_api_versions_header_v0():
    body = P.ApiVersionsResponse(api_keys=[P.ApiVersionsResponse.ApiVersion(api_key=0, max_version=11)])
    w = P.encode_response(77, 18, 3, body)
    data = w.getvalue()
    assert data[:4] == struct.pack(">i", 77)
    assert P.ApiVersionsResponse.decode(data[4:], 3) == body
    w = P.encode_response(78, 3, 12, P.MetadataResponse())
    assert w.getvalue()[:5] == struct.pack(">ib", 78, 0)  # header v1: empty tag section


def test_unknown_tagged_fields_preserved():
    # ApiVersionsRequest v3 body: client software name + version + tags
    w = Writer()
    w.compact_string("fastlog")
    w.compact_string("1.0")
    w.tagged_fields({7: b"\x01\x02", 3: b""})
    data = w.getvalue()
    req = P.ApiVersionsRequest.decode(data, 3)
    assert req.client_software_name == "fastlog"
    assert req.unknown_tagged_fields == {3: b"", 7: b"\x01\x02"}
    assert req.encode(3) == data  # written back, sorted by tag


def test_known_tagged_field_and_unknown_merge_in_tag_order():
    part = P.FetchResponse.PartitionData(partition_index=1, records=b"")
    part.diverging_epoch = P.FetchResponse.EpochEndOffset(epoch=3, end_offset=10)  # tag 0
    part.unknown_tagged_fields = {9: b"zz"}
    data = part.encode(12)
    back = P.FetchResponse.PartitionData.decode(data, 12)
    assert back == part and back.diverging_epoch.epoch == 3
    assert back.unknown_tagged_fields == {9: b"zz"}
    # tags not known at a version stay raw
    assert P.FetchResponse.PartitionData.decode(data, 12).encode(12) == data


@pytest.mark.parametrize("tagged", [False, True], ids=["no-tags", "known-and-unknown-tags"])
def test_every_prefix_of_a_struct_with_tagged_fields_is_truncated_not_a_crash(tagged):
    # The tag section is read by a one-byte fast path when empty, by the loop otherwise.
    part = P.FetchResponse.PartitionData(partition_index=1, records=b"")
    if tagged:
        part.snapshot_id = P.FetchResponse.SnapshotId(end_offset=5, epoch=2)
        part.unknown_tagged_fields = {9: b"zz"}
    data = part.encode(12)
    assert P.FetchResponse.PartitionData.decode(data, 12) == part
    for cut in range(len(data)):
        with pytest.raises(TruncatedError):
            P.FetchResponse.PartitionData.decode(data[:cut], 12)


def test_absent_field_rules():
    # TransactionalId appeared in v3 and is not ignorable
    with pytest.raises(UnsupportedVersionError):
        P.ProduceRequest(transactional_id="tx").encode(2)
    P.ProduceRequest(transactional_id=None).encode(2)
    # ignorable fields are dropped silently
    r = P.MetadataResponse(cluster_id="c")  # ClusterId: versions 2+, ignorable
    assert P.MetadataResponse.decode(r.encode(1), 1).cluster_id is None


@pytest.mark.parametrize("change", [
    lambda p: setattr(p.diverging_epoch, "epoch", 3),
    lambda p: setattr(p.current_leader, "leader_epoch", 0),
    lambda p: setattr(p.snapshot_id, "end_offset", 7),
    lambda p: setattr(p.snapshot_id, "unknown_tagged_fields", {4: b"x"}),
    lambda p: setattr(p, "current_leader", None),
], ids=["epoch", "leader-epoch", "snapshot-offset", "unknown-tag", "none"])
def test_a_struct_field_off_its_default_is_refused_where_the_version_lacks_it_and_tagged_where_it_has_it(change):
    # A struct field counts as default only when every field of it (and its unknown tags) is;
    # v11 cannot carry these tagged structs, v12 writes them.
    part = P.FetchResponse.PartitionData(partition_index=1, records=b"")
    assert P.FetchResponse.PartitionData.decode(part.encode(11), 11) == part
    plain = part.encode(12)
    change(part)
    with pytest.raises(UnsupportedVersionError):
        part.encode(11)
    if part.current_leader is not None:
        data = part.encode(12)
        assert len(data) > len(plain)
        assert P.FetchResponse.PartitionData.decode(data, 12) == part


@pytest.mark.parametrize("version", [4, 11, 12])
def test_a_struct_field_left_at_its_default_is_a_fresh_instance_equal_to_the_class_default(version):
    # Built by the generated default-makers (not the keyword constructor) on decode and in
    # __init__: each must equal what the class's own defaults give, and no two owners may
    # share one (a change to one partition's struct must not show in another's).
    F = P.FetchResponse
    built = [F.PartitionData(partition_index=i, records=b"") for i in range(2)]
    decoded = F.decode(F(responses=[F.FetchableTopicResponse(topic="t", partitions=built)]).encode(version),
                       version).responses[0].partitions
    for a, b in (built, decoded):
        assert a.diverging_epoch == F.EpochEndOffset(epoch=-1, end_offset=-1)
        assert a.current_leader == F.LeaderIdAndEpoch(leader_id=-1, leader_epoch=-1)
        assert a.snapshot_id == F.SnapshotId(end_offset=-1, epoch=-1)
        assert a.diverging_epoch is not b.diverging_epoch
        assert a.snapshot_id.unknown_tagged_fields is not b.snapshot_id.unknown_tagged_fields
    # a default struct whose own field is a list gets a fresh list too
    M = P.ConsumerGroupDescribeResponse.Member
    one, two = M(), M()
    one.assignment.topic_partitions.append("x")
    assert two.assignment.topic_partitions == [] and one.target_assignment.topic_partitions == []


def test_null_in_non_nullable_rejected():
    with pytest.raises(InvalidValueError):
        P.ProduceRequest.TopicProduceData(name=None).encode(3)
    # MetadataRequest.Topics is nullable only from v1
    with pytest.raises(InvalidValueError):
        P.MetadataRequest(topics=None).encode(0)
    assert P.MetadataRequest.decode(P.MetadataRequest(topics=None).encode(1), 1).topics is None


def test_records_parts_and_external_objects():
    class FileRegion:
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

    region = FileRegion(5000)
    part = P.FetchResponse.PartitionData(partition_index=0, records=region)
    w = Writer()
    part.encode_into(w, 4)
    parts = w.parts()
    assert any(p is region for p in parts)
    assert len(w) == sum(len(p) for p in parts)
    with pytest.raises(InvalidValueError):
        w.getvalue()
    framed = w.framed_parts()
    assert framed[0][:4] == struct.pack(">i", len(w))
    # records given as bytes: length prefix + bytes; a large buffer is not copied
    big = bytes(range(256)) * 400
    w = Writer()
    P.FetchResponse.PartitionData(partition_index=0, records=big).encode_into(w, 12)
    assert any(p is big for p in w.parts())
    back = P.FetchResponse.PartitionData.decode(w.getvalue(), 12)
    assert isinstance(back.records, memoryview) and back.records == big


def test_records_decode_is_zero_copy():
    data = P.ProduceRequest.PartitionProduceData(index=1, records=b"batch").encode(3)
    back = P.ProduceRequest.PartitionProduceData.decode(data, 3)
    assert isinstance(back.records, memoryview) and back.records.obj is data


def test_bad_version_and_error_codes():
    with pytest.raises(UnsupportedVersionError):
        P.ProduceRequest.decode(b"", 12)
    with pytest.raises(UnsupportedVersionError):
        P.ProduceRequest().encode(-1)
    assert TruncatedError("x").error_code == 42
    assert InvalidValueError("x").error_code == 42
    assert ErrorCode.UNKNOWN_TOPIC_OR_PARTITION == 3 and ErrorCode.UNKNOWN_SERVER_ERROR == -1


def test_error_codes_match_kafka_python():
    errors = pytest.importorskip("kafka.errors")
    import inspect
    theirs = {c.errno for _, c in inspect.getmembers(errors, inspect.isclass)
              if isinstance(getattr(c, "errno", None), int)}
    ours = {int(e) for e in ErrorCode}
    assert theirs <= ours | {-1}


# ---------------------------------------------------------------- primitives

def test_reader_primitives_roundtrip():
    w = Writer()
    w.int8(-1); w.int16(-2); w.int32(-3); w.int64(-4); w.uint16(65535); w.uint32(2**32 - 1)
    w.float64(1.5); w.boolean(True); w.unsigned_varint(300); w.varint(-5); w.varlong(-(2**40))
    w.string("é"); w.nullable_string(None); w.compact_string("ab"); w.compact_nullable_string(None)
    w.bytes(b"x"); w.nullable_bytes(None); w.compact_bytes(b"yz"); w.compact_nullable_bytes(None)
    w.array([1, 2], Writer.int32); w.compact_array(["a"], Writer.compact_string)
    w.array(None, Writer.int32)
    w.tagged_fields({1: b"q"})
    r = Reader(w.getvalue())
    assert [r.int8(), r.int16(), r.int32(), r.int64(), r.uint16(), r.uint32()] == [-1, -2, -3, -4, 65535, 2**32 - 1]
    assert r.float64() == 1.5 and r.boolean() is True
    assert [r.unsigned_varint(), r.varint(), r.varlong()] == [300, -5, -(2**40)]
    assert [r.string(), r.nullable_string(), r.compact_string(), r.compact_nullable_string()] == ["é", None, "ab", None]
    assert [r.bytes(), r.nullable_bytes(), r.compact_bytes(), r.compact_nullable_bytes()] == [b"x", None, b"yz", None]
    assert r.array(Reader.int32) == [1, 2]
    assert r.compact_array(Reader.compact_string) == ["a"]
    assert r.array(Reader.int32, nullable=True) is None
    assert r.tagged_fields() == {1: b"q"}
    assert r.remaining() == 0


@pytest.mark.parametrize("data,method", [
    (b"\x00", "int16"), (b"\x00\x00\x00", "int32"), (b"", "int8"),
    (b"\x00\x05ab", "string"), (b"\x00\x00\x00\x09abc", "bytes"),
    (b"\x80\x80", "unsigned_varint"), (b"\x05ab", "compact_string"),
    (b"\x00\x00\x00\x09\x00\x00\x00\x01", "records"),
    # the readers that check lengths inline and read a one-byte varint without the loop
    (b"", "unsigned_varint"), (b"", "compact_string"), (b"", "compact_records"), (b"\x00", "string"),
    (b"\x00\x02a", "nullable_string"), (b"\x03a", "compact_nullable_string"), (b"\x03a", "compact_bytes"),
    (b"\x03a", "compact_nullable_bytes"), (b"\x05abc", "compact_records"), (b"\x80", "compact_records"),
    (b"\x00\x00\x00\x02a", "nullable_bytes"), (b"\x00\x00\x00", "records"),
])
def test_truncated(data, method):
    with pytest.raises(TruncatedError):
        getattr(Reader(data), method)()


@pytest.mark.parametrize("data,method", [
    (b"\xff\xff", "string"),                   # null in non-nullable
    (b"\xff\xfe", "string"),                   # length -2 in non-nullable
    (b"\xff\xff\xff\xfe", "bytes"),            # length -2 in non-nullable
    (b"\x80\x80\x80\x80\x80\x01", "unsigned_varint"),  # too long
    (b"\x00", "compact_string"),              # null in non-nullable
    (b"\xff\xff\x03", "compact_nullable_string"),  # length > 32767 (Kafka refuses it too)
])
def test_invalid(data, method):
    with pytest.raises(InvalidValueError):
        getattr(Reader(data), method)()


@pytest.mark.parametrize("data,method,value", [
    (b"\xff\xfe", "nullable_string", None),            # any negative length is null, as in Kafka
    (b"\x80\x00", "nullable_string", None),
    (b"\xff\xff\xff\xfe", "nullable_bytes", None),
    (b"\x80\x00\x00\x00", "nullable_bytes", None),
    (b"\x03\xff\xfe", "compact_string", "\ufffd\ufffd"),  # bad UTF-8: replaced, as Java decodes it
    (b"\x00\x02a\xc3", "string", "a\ufffd"),
    (b"\xff\xff\xff\xff\x7f", "unsigned_varint", 0xFFFFFFFF),  # bits above 32 dropped, as Java's int does
    (b"\x02", "boolean", True),                             # any non-zero byte is true
])
def test_lenient_as_kafka(data, method, value):
    assert getattr(Reader(data), method)() == value


def test_nullable_arrays_take_any_negative_count_as_null():
    assert Reader(b"\xff\xff\xff\xf0").array(Reader.int32, nullable=True) is None
    # MetadataRequest v1+ topics is nullable: -2 reads as "all topics", as Kafka reads it
    request = P.MetadataRequest.decode(b"\xff\xff\xff\xfe", 1)
    assert request.topics is None


def test_a_known_tagged_field_longer_than_its_value_is_skipped_to_its_end():
    # ApiVersionsResponse v3 tag 1 (FinalizedFeaturesEpoch, int64) declared 10 bytes long
    good = P.ApiVersionsResponse(finalized_features_epoch=5).encode(3)
    tag_at = good.index(b"\x01\x08")
    padded = good[:tag_at] + b"\x01\x0a" + good[tag_at + 2 : tag_at + 10] + b"\xee\xee" + good[tag_at + 10 :]
    assert P.ApiVersionsResponse.decode(padded, 3).finalized_features_epoch == 5


def test_huge_and_negative_array_counts():
    with pytest.raises(InvalidValueError):
        Reader(b"\x7f\xff\xff\xff" + b"\x00" * 8).array(Reader.int32)
    with pytest.raises(InvalidValueError):
        Reader(b"\xff\xff\xff\xf0").array(Reader.int32)
    with pytest.raises(InvalidValueError):
        Reader(b"\xff\xff\xff\x0f").compact_array(Reader.int8)
    # same through generated code: a Metadata response claiming 2**31-1 brokers
    with pytest.raises(InvalidValueError):
        P.MetadataResponse.decode(b"\x7f\xff\xff\xff" + b"\x00" * 16, 1)
    with pytest.raises(InvalidValueError):
        P.MetadataResponse.decode(b"\xff\xff\xff\xfe" + b"\x00" * 16, 1)


def test_a_topic_id_read_twice_is_one_shared_uuid_and_the_cache_stays_bounded(monkeypatch):
    import uuid

    from fastlog.protocol import primitives

    primitives._UUIDS.clear()  # so that no earlier test's reads fill it during this one
    F = P.FetchRequest
    ids = [uuid.UUID(int=i + 1) for i in range(5)]
    body = F(topics=[F.FetchTopic(topic_id=i, partitions=[F.FetchPartition(partition=0)]) for i in ids]).encode(13)
    first, again = (F.decode(body, 13) for _ in range(2))
    assert [t.topic_id for t in first.topics] == ids  # equal to what was sent, of type UUID
    assert all(a.topic_id is b.topic_id for a, b in zip(first.topics, again.topics))
    # bounded: a full cache is emptied, and what is read then is still right
    monkeypatch.setattr(primitives, "UUID_CACHE_MAX", 3)
    primitives._UUIDS.clear()
    for _ in range(3):
        assert [t.topic_id for t in F.decode(body, 13).topics] == ids
        assert len(primitives._UUIDS) <= 3
    assert Reader(ids[0].bytes + b"\x00").uuid() == ids[0]


@pytest.mark.parametrize("size", [0, 1, 126, 127, 128, 16383, 16384])
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_records_of_every_length_prefix_width_round_trip(size, kind):
    # one-byte compact lengths are written inline, longer ones as a varint
    data = kind(bytes(range(256)) * (size // 256) + bytes(size % 256))
    part = P.FetchResponse.PartitionData(partition_index=1, records=data)
    empty = len(P.FetchResponse.PartitionData(partition_index=1, records=b"").encode(12))
    prefix = 1 if size < 127 else 2 if size < 16383 else 3  # varint of size + 1
    assert len(part.encode(12)) == empty - 1 + prefix + size
    for version in (11, 12):
        back = P.FetchResponse.PartitionData.decode(part.encode(version), version)
        assert bytes(back.records) == bytes(data)


def test_every_valid_request_version_has_a_decoder_for_it_and_its_header():
    # decode_request looks both up once per pair, outside the codec's own version check
    for api_key, info in P.API_BY_KEY.items():
        lo, hi = info.valid_versions
        for version in range(lo, hi + 1):
            assert version in P.request_class(api_key)._DEC
            assert P.request_header_version(api_key, version) in P.RequestHeader._DEC
