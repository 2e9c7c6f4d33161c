"""fastlog.client in-process: version negotiation (newest and oldest request layouts it
builds), errors carrying Kafka's code names, and timeouts."""

from __future__ import annotations

import socket
import time

import pytest

from fastlog.client import CLIENT_VERSIONS, EARLIEST, LATEST, Client, ClientTimeout, KafkaError, UnsupportedByBroker
from fastlog.records import Compression, Record


def exercise(client: Client, topic: str, group: str) -> None:
    client.create_topic(topic, 2, 1, {"retention.ms": "600000"})
    assert set(client.topic(topic).partitions) == {0, 1}
    offsets = client.produce({(topic, 0): [Record(0, 1000, b"k", b"v0", [("h", b"1")]), Record(1, 1001, None, b"v1")]}, compression=Compression.GZIP)
    assert offsets == {(topic, 0): 0}
    fetched = client.fetch({(topic, 0): 1, (topic, 1): 0}, max_wait_ms=10)
    assert [r.value for r in fetched[(topic, 0)].records] == [b"v1"] and fetched[(topic, 0)].high_watermark == 2
    assert fetched[(topic, 1)].records == []
    assert client.list_offsets([(topic, 0)], EARLIEST) == {(topic, 0): 0}
    assert client.list_offsets([(topic, 0)], LATEST) == {(topic, 0): 2}
    client.alter_configs(2, topic, {"retention.ms": "700000"})
    assert [e.value for e in client.describe_configs(2, topic, ["retention.ms"])] == ["700000"]
    client.create_partitions(topic, 3)
    assert client.log_dir_sizes([topic])[(topic, 0)] > 0
    client.commit_offsets(group, {(topic, 0): 1})
    assert [(c.topic, c.partition, c.offset) for c in client.committed_offsets(group)] == [(topic, 0, 1)]
    assert group in [g.group_id for g in client.list_groups()]
    assert client.describe_group(group).group_state == "Empty"
    assert client.delete_groups([group]) == {group: 0}
    client.delete_topics([topic])
    with pytest.raises(KafkaError) as missing:
        client.topic(topic)
    assert missing.value.name == "UNKNOWN_TOPIC_OR_PARTITION" and missing.value.code == 3


def test_newest_versions(broker, unique_topic) -> None:
    with Client(broker.bootstrap) as client:
        connection = client.any_connection()
        assert connection.version(1) == min(CLIENT_VERSIONS[1][1], connection.versions[1][1])
        exercise(client, unique_topic, f"g-{unique_topic}")


def test_oldest_versions(broker, unique_topic, monkeypatch) -> None:
    """The broker seems to offer only each API's lowest version this client builds (pre-topic-id
    Fetch, FindCoordinator v1-3, OffsetFetch v2-7, DeleteTopics v1-5 ...)."""
    from fastlog import client as client_module

    real = client_module.BrokerConnection._negotiate

    def negotiate_old(self) -> None:
        real(self)
        self.versions = {k: (lo, max(lo, CLIENT_VERSIONS[k][0])) for k, (lo, hi) in self.versions.items() if k in CLIENT_VERSIONS}
        self.versions[18] = (0, 3)

    monkeypatch.setattr(client_module.BrokerConnection, "_negotiate", negotiate_old)
    with Client(broker.bootstrap) as client:
        assert client.any_connection().version(1) == 4 and client.any_connection().version(9) == 2
        exercise(client, unique_topic, f"g-{unique_topic}")


def test_no_common_version(broker) -> None:
    with Client(broker.bootstrap) as client:
        connection = client.any_connection()
        connection.versions[0] = (0, 2)
        with pytest.raises(UnsupportedByBroker, match="supports Produce v0-v2; this client v3-v11"):
            connection.version(0)


def test_a_broker_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        with pytest.raises(ClientTimeout, match="no response within 0.5s"):
            Client(f"127.0.0.1:{silent.getsockname()[1]}", timeout=0.5).metadata()
        assert time.monotonic() - started < 5
