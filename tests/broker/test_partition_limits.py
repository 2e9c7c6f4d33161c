"""Partition limits (issue 22's first part): one request must not make a broker open tens of
thousands of partitions. `max.partitions.per.topic` (default 10,000) refuses a larger topic with
INVALID_PARTITIONS, `max.partitions` (default 20,000 on a single node) refuses what would take
the node past it with POLICY_VIOLATION; each message names its limit, validate-only requests
are answered the same, nothing is created, and the limits hold across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastlog import protocol as P
from fastlog.protocol import ErrorCode as E
from tests.broker.wire import WireClient
from tests.conftest import BrokerProcess

CT, CP = P.CreateTopicsRequest, P.CreatePartitionsRequest


def create(wire: WireClient, name: str, partitions: int, validate_only: bool = False):
    body = CT(topics=[CT.CreatableTopic(name=name, num_partitions=partitions, replication_factor=-1, assignments=[], configs=[])],
              timeout_ms=5000, validate_only=validate_only)
    return wire.request(body, 5).topics[0]


def grow(wire: WireClient, name: str, count: int):
    body = CP(topics=[CP.CreatePartitionsTopic(name=name, count=count, assignments=None)], timeout_ms=5000)
    return wire.request(body, 3).results[0]


def partition_dirs(data_dir: Path, topic: str) -> int:
    return sum(1 for p in data_dir.glob(f"{topic}-*") if p.is_dir())


def test_the_65535_partition_topic_and_a_million_partitions_are_refused(broker) -> None:
    data_dir = Path(broker.overrides["log.dirs"])
    with WireClient(broker.bootstrap) as wire:
        for validate_only in (True, False):
            refused = create(wire, "huge", 65_535, validate_only)
            assert refused.error_code == E.INVALID_PARTITIONS
            assert "max.partitions.per.topic" in refused.error_message and "10000" in refused.error_message
        assert partition_dirs(data_dir, "huge") == 0
        assert create(wire, "grown", 2).error_code == 0
        refused = grow(wire, "grown", 1_000_000)
        assert refused.error_code == E.INVALID_PARTITIONS and "max.partitions.per.topic" in refused.error_message
        assert partition_dirs(data_dir, "grown") == 2


@pytest.fixture
def small_broker(tmp_path: Path):
    broker = BrokerProcess(tmp_path / "data", {"max.partitions": "12", "max.partitions.per.topic": "8"}).start()
    yield broker
    broker.stop()


def test_a_node_refuses_partitions_past_max_partitions_across_restarts(small_broker) -> None:
    with WireClient(small_broker.bootstrap) as wire:
        assert create(wire, "nine", 9).error_code == E.INVALID_PARTITIONS, "above the per-topic limit of 8"
        assert create(wire, "eight", 8).error_code == 0
        refused = create(wire, "five", 5)
        assert refused.error_code == E.POLICY_VIOLATION
        assert "max.partitions" in refused.error_message and "13" in refused.error_message
        assert create(wire, "four", 4).error_code == 0  # exactly 12
        assert grow(wire, "four", 5).error_code == E.POLICY_VIOLATION
        # auto-creation is held to the same limit
        auto = wire.request(P.MetadataRequest(topics=[P.MetadataRequest.MetadataRequestTopic(name="auto")], allow_auto_topic_creation=True), 9)
        assert [t.name for t in auto.topics] == ["auto"] and auto.topics[0].error_code != 0
    small_broker.restart()
    with WireClient(small_broker.bootstrap) as wire:
        assert create(wire, "one", 1).error_code == E.POLICY_VIOLATION
        names = {t.name for t in wire.request(P.MetadataRequest(topics=None), 9).topics}
        assert names == {"eight", "four"}
