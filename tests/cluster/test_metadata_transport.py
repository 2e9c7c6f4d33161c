"""The controller listener's frames between observers (broker-only nodes) and the quorum:
answers round-trip, and bytes that are not an answer are a ValueError (the connection is
dropped and opened again), never a crash."""

from __future__ import annotations

import socket
import struct

import pytest

from fastlog.metadata_node import KIND_FETCH, decode_metadata, encode_metadata, frame


def test_an_answer_round_trips_with_its_records_in_order() -> None:
    header = {"leader": 2, "upto": 9, "high_watermark": 9, "snapshot": True}
    records = [(4, b"snapshot"), (5, b'{"type":"x"}'), (9, b"")]
    assert decode_metadata(encode_metadata(header, records)) == (header, records)


@pytest.mark.parametrize("payload", [b"", b"\x00\x00", b"\x00\x00\x00\x05{}", b"\x00\x00\x00\x02{}" + b"\x00" * 11, b"\x00\x00\x00\x02[]"])
def test_bytes_that_are_not_an_answer_are_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode_metadata(payload)


def test_a_controller_drops_a_bad_fetch_and_goes_on(tmp_path) -> None:
    from tests.cluster.helpers import Cluster, agreed, wait_for

    cluster = Cluster(tmp_path).start()
    try:
        wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the cluster settles")
        controller_port = int(cluster.nodes[1].overrides["listeners"].rsplit(":", 1)[1])
        for junk in (frame(KIND_FETCH, 99, b"\x01\x02"), frame(1, 99, b"not raft"), struct.pack(">i", -5), b"\xff" * 64):
            with socket.create_connection(("127.0.0.1", controller_port), timeout=5) as s:
                s.sendall(junk)
                s.settimeout(5)
                try:
                    assert s.recv(100) == b"", "the connection is closed"
                except ConnectionResetError:
                    pass  # closed with the junk unread
        wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the cluster is as it was")
        assert cluster.nodes[1].process.poll() is None
    finally:
        cluster.stop()
