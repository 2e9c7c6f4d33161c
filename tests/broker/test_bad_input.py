"""Bad input on the wire: each case gets the Kafka error a client understands, or a logged,
closed connection where the protocol allows no reply; the broker stays up and keeps its data."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest
import trio

from fastlog import protocol
from fastlog.protocol import ErrorCode
from fastlog.records import Record, encode_batch
from tests.broker.wire import WireClient
from tests.conftest import BrokerProcess

P = protocol


@pytest.fixture(scope="module")
def small_broker(tmp_path_factory) -> BrokerProcess:
    overrides = {"socket.request.max.bytes": str(1 << 20), "message.max.bytes": "10000"}
    process = BrokerProcess(tmp_path_factory.mktemp("bad") / "data", overrides).start()
    yield process
    process.stop()


def produce(client: WireClient, topic: str, records: bytes, version: int = 9, acks: int = 1):
    body = P.ProduceRequest(
        acks=acks,
        timeout_ms=5000,
        topic_data=[P.ProduceRequest.TopicProduceData(name=topic, partition_data=[P.ProduceRequest.PartitionProduceData(index=0, records=records)])],
    )
    return client.request(body, version).responses[0].partition_responses[0]


def create(client: WireClient, topic: str) -> None:
    body = P.MetadataRequest(topics=[P.MetadataRequest.MetadataRequestTopic(name=topic)], allow_auto_topic_creation=True)
    assert client.request(body, 9).topics[0].error_code == 0


def batch(*values: bytes) -> bytes:
    return encode_batch([Record(i, 1000, None, v) for i, v in enumerate(values)])


def assert_alive(broker: BrokerProcess) -> None:
    with WireClient(broker.bootstrap) as client:
        response = client.request(P.ApiVersionsRequest(), 3)
        assert response.error_code == 0 and len(response.api_keys) >= 5


@pytest.mark.parametrize(
    "frame, reason",
    [
        (struct.pack(">i", (1 << 20) + 1), "frame size 1048577 is outside"),
        (struct.pack(">i", -5), "frame size -5 is outside"),
        (struct.pack(">i", 3) + b"abc", "undecodable request"),
        (struct.pack(">i", 10) + struct.pack(">hhih", 9999, 0, 7, -1), "undecodable request: unknown API key 9999"),
        (struct.pack(">i", 10) + struct.pack(">hhih", 0, 99, 7, -1), "undecodable request"),
        (struct.pack(">i", 12) + struct.pack(">hhih", 3, 1, 7, -1) + b"\x00\x00", "undecodable request"),
    ],
    ids=["above-socket.request.max.bytes", "negative-length", "shorter-than-header", "unknown-api-key", "unknown-version", "truncated-body"],
)
def test_malformed_frames_close_the_connection_with_a_log_line(small_broker, frame, reason) -> None:
    with WireClient(small_broker.bootstrap) as client:
        client.sock.sendall(frame)
        assert client.closed_by_broker()
    deadline = time.monotonic() + 5
    while reason not in small_broker.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reason in small_broker.log_text()
    assert_alive(small_broker)


@pytest.mark.parametrize("bad", [struct.pack(">i", -5), struct.pack(">i", 3) + b"abc"], ids=["bad-size", "undecodable"])
def test_requests_pipelined_before_a_bad_frame_are_answered_before_the_close(small_broker, bad) -> None:
    with WireClient(small_broker.bootstrap) as client:
        good = client.encode(P.ApiVersionsRequest(), 3)
        # One write: both good requests and the bad frame reach the broker's buffer together.
        client.sock.sendall((struct.pack(">i", len(good)) + good) * 2 + bad)
        for _ in range(2):
            assert client.read_response(18, 3).error_code == 0
        assert client.closed_by_broker()
    assert_alive(small_broker)


def test_api_versions_of_unknown_version_answers_v0_with_supported_ranges(small_broker) -> None:
    with WireClient(small_broker.bootstrap) as client:
        header = struct.pack(">hhih", 18, 99, 42, 4) + b"test"
        client.send_frame(header + b"\x00\x00\x00")
        frame = client.recv_frame()
    reader = protocol.Reader(frame)
    assert reader.int32() == 42  # response header v0: correlation id only
    body = P.ApiVersionsResponse.decode(reader, 0)
    assert body.error_code == ErrorCode.UNSUPPORTED_VERSION
    ranges = {k.api_key: (k.min_version, k.max_version) for k in body.api_keys}
    assert ranges[0][0] == 0 and ranges[18] == (0, 4) and ranges[1][1] == 17


def test_invalid_and_unknown_topics(small_broker) -> None:
    with WireClient(small_broker.bootstrap) as client:
        names = ["bad name", "x" * 250, "..", "ok-but-not-created"]
        body = P.MetadataRequest(topics=[P.MetadataRequest.MetadataRequestTopic(name=n) for n in names], allow_auto_topic_creation=False)
        errors = [t.error_code for t in client.request(body, 9).topics]
        assert errors[:3] == [ErrorCode.INVALID_TOPIC_EXCEPTION] * 3
        assert errors[3] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert produce(client, "ok-but-not-created", batch(b"x")).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_bad_batches_get_partition_errors_and_nothing_is_written(small_broker) -> None:
    with WireClient(small_broker.bootstrap) as client:
        create(client, "batches")
        assert produce(client, "batches", batch(b"first")).base_offset == 0
        good = batch(b"second")
        flipped = good[:-1] + bytes([good[-1] ^ 0xFF])
        legacy = good[:16] + b"\x01" + good[17:]
        cases = {
            "crc": (flipped, ErrorCode.CORRUPT_MESSAGE),
            "magic": (legacy, ErrorCode.CORRUPT_MESSAGE),
            "truncated": (good[:-3], ErrorCode.CORRUPT_MESSAGE),
            "empty": (b"", ErrorCode.CORRUPT_MESSAGE),
            "too-large": (batch(b"x" * 20000), ErrorCode.MESSAGE_TOO_LARGE),
        }
        for name, (records, code) in cases.items():
            response = produce(client, "batches", records)
            assert response.error_code == code, name
            assert response.error_message, name
        acks = produce(client, "batches", good, acks=7)
        assert acks.error_code == ErrorCode.INVALID_REQUIRED_ACKS
        assert produce(client, "batches", good).base_offset == 1
        fetch = P.FetchRequest(
            max_wait_ms=0,
            min_bytes=0,
            topics=[P.FetchRequest.FetchTopic(topic="batches", partitions=[P.FetchRequest.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])],
        )
        data = client.request(fetch, 11).responses[0].partitions[0]
        assert data.high_watermark == 2
        fetch.topics[0].partitions[0].fetch_offset = 3
        assert client.request(fetch, 11).responses[0].partitions[0].error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    assert "refused produce to batches-0" in small_broker.log_text()


def test_pipelined_requests_are_answered_in_order(small_broker) -> None:
    with WireClient(small_broker.bootstrap) as client:
        create(client, "pipelined")
        frames = []
        for i in range(60):
            body = P.ProduceRequest(
                acks=1,
                timeout_ms=5000,
                topic_data=[P.ProduceRequest.TopicProduceData(name="pipelined", partition_data=[P.ProduceRequest.PartitionProduceData(index=0, records=batch(b"%d" % i))])],
            ) if i % 2 else P.MetadataRequest(topics=None)
            frames.append((body, client.encode(body, 9, correlation_id=1000 + i)))
        client.sock.sendall(b"".join(struct.pack(">i", len(f)) + f for _, f in frames))
        offsets = []
        for i, (body, _) in enumerate(frames):
            response = client.read_response(body.API_KEY, 9)
            assert client.last_correlation_id == 1000 + i
            if i % 2:
                offsets.append(response.responses[0].partition_responses[0].base_offset)
        assert offsets == list(range(30))


def test_acks_zero_gets_no_response(small_broker) -> None:
    with WireClient(small_broker.bootstrap) as client:
        create(client, "acks0")
        client.send_frame(client.encode(P.ProduceRequest(acks=0, timeout_ms=1000, topic_data=[P.ProduceRequest.TopicProduceData(name="acks0", partition_data=[P.ProduceRequest.PartitionProduceData(index=0, records=batch(b"a"))])]), 9))
        # The next response on the connection answers the next request.
        response = client.request(P.ApiVersionsRequest(), 3)
        assert response.error_code == 0


def test_long_poll_fetch_wakes_when_data_arrives(small_broker) -> None:
    with WireClient(small_broker.bootstrap) as waiter, WireClient(small_broker.bootstrap) as writer:
        create(writer, "longpoll")
        fetch = P.FetchRequest(
            max_wait_ms=10_000,
            min_bytes=1,
            topics=[P.FetchRequest.FetchTopic(topic="longpoll", partitions=[P.FetchRequest.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])],
        )
        waiter.send_frame(waiter.encode(fetch, 11))
        time.sleep(0.3)
        # The parked fetch blocks only its own connection.
        assert writer.request(P.ApiVersionsRequest(), 3).error_code == 0
        started = time.monotonic()
        produce(writer, "longpoll", batch(b"wake up"))
        response = waiter.read_response(1, 11)
        assert time.monotonic() - started < 3
        assert len(response.responses[0].partitions[0].records) > 0


def test_thousand_connections(small_broker) -> None:
    sockets = []
    try:
        for _ in range(1000):
            sockets.append(WireClient(small_broker.bootstrap))
        for i, client in enumerate(sockets):
            client.send_frame(client.encode(P.ApiVersionsRequest(), 3, correlation_id=i))
        for i, client in enumerate(sockets):
            client.read_response(18, 3)
            assert client.last_correlation_id == i
    finally:
        for client in sockets:
            client.close()
    assert_alive(small_broker)


def test_a_client_that_does_not_read_is_not_read_from(small_broker) -> None:
    """Back-pressure: with responses unread, the broker stops reading, so the client's sends
    block instead of the broker buffering without bound."""
    with WireClient(small_broker.bootstrap, timeout=3) as client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        body = P.MetadataRequest(topics=None)
        frame = client.encode(body, 9)
        framed = struct.pack(">i", len(frame)) + frame
        sent = 0
        with pytest.raises(socket.timeout):
            for _ in range(200_000):
                client.sock.sendall(framed)
                sent += 1
        assert sent < 200_000
    assert_alive(small_broker)


def fetch_request(topic: str, offsets: dict[int, int], session_id: int, epoch: int, forgotten: list[int] = ()):
    return P.FetchRequest(
        max_wait_ms=0,
        min_bytes=0,
        session_id=session_id,
        session_epoch=epoch,
        topics=[P.FetchRequest.FetchTopic(topic=topic, partitions=[P.FetchRequest.FetchPartition(partition=p, fetch_offset=o, partition_max_bytes=1 << 20) for p, o in offsets.items()])] if offsets else [],
        forgotten_topics_data=[P.FetchRequest.ForgottenTopic(topic=topic, partitions=list(forgotten))] if forgotten else [],
    )


def test_fetch_sessions(small_broker) -> None:
    """KIP-227: a full fetch opens a session; incremental fetches return only partitions with news."""
    def partitions(response) -> dict[int, int]:
        return {p.partition_index: len(p.records) for t in response.responses for p in t.partitions}

    with WireClient(small_broker.bootstrap) as client:
        body = P.MetadataRequest(topics=[P.MetadataRequest.MetadataRequestTopic(name="sessions")], allow_auto_topic_creation=True)
        client.request(body, 9)
        create = P.CreatePartitionsRequest(topics=[P.CreatePartitionsRequest.CreatePartitionsTopic(name="sessions", count=3, assignments=None)], timeout_ms=5000)
        assert client.request(create, 1).results[0].error_code == 0
        full = client.request(fetch_request("sessions", {0: 0, 1: 0, 2: 0}, 0, 0), 11)
        assert full.session_id > 0 and partitions(full) == {0: 0, 1: 0, 2: 0}
        # Nothing changed: an incremental fetch names nothing and gets nothing back.
        quiet = client.request(fetch_request("sessions", {}, full.session_id, 1), 11)
        assert quiet.error_code == 0 and quiet.session_id == full.session_id and partitions(quiet) == {}
        produce(client, "sessions", batch(b"news"))
        news = client.request(fetch_request("sessions", {}, full.session_id, 2), 11)
        assert list(partitions(news)) == [0] and partitions(news)[0] > 0
        # The client moves its offset; partition 2 is forgotten.
        moved = client.request(fetch_request("sessions", {0: 1}, full.session_id, 3, forgotten=[2]), 11)
        assert moved.error_code == 0 and partitions(moved) == {}
        stale = client.request(fetch_request("sessions", {}, full.session_id, 3), 11)
        assert stale.error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH
        unknown = client.request(fetch_request("sessions", {}, 12345, 1), 11)
        assert unknown.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
        sessionless = client.request(fetch_request("sessions", {0: 0}, 0, -1), 11)
        assert sessionless.session_id == 0 and partitions(sessionless)[0] > 0
