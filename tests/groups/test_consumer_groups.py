"""Consumer groups of real clients (kafka-python, confluent-kafka) against the broker:
assignment, exactly-once consumption with commits, order per partition, members joining."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import BrokerProcess
from tests.groups.helpers import GROUP_OVERRIDES, GroupMember, create_topic, produce, wait_for


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory):
    process = BrokerProcess(tmp_path_factory.mktemp("groups") / "data", GROUP_OVERRIDES).start()
    yield process
    process.stop()


def check_consumed(log: list, total: int) -> None:
    """Every message exactly once, and each partition's offsets in order."""
    values = sorted(int(v) for _, _, _, v in log)
    assert values == list(range(total)), f"{len(values)} consumed, duplicates or gaps"
    by_partition: dict = {}
    for _, partition, offset, value in log:
        by_partition.setdefault(partition, []).append(offset)
        assert int(value) % 6 == partition
    for partition, offsets in by_partition.items():
        assert offsets == sorted(offsets) == list(range(len(offsets))), partition


KAFKA_PYTHON_STALL = pytest.mark.xfail(
    strict=False,
    reason="intermittent: a kafka-python 3.0.12 leader sometimes stops (no SyncGroup, no heartbeat) after "
    "the rebalance that follows its assignment without topic metadata; under investigation",
)


@pytest.mark.parametrize("client", [pytest.param("kafka-python", marks=KAFKA_PYTHON_STALL), "confluent"])
def test_two_then_three_consumers_share_the_partitions(group_broker, unique_topic, client) -> None:
    bootstrap = group_broker.bootstrap
    create_topic(bootstrap, unique_topic)
    produce(bootstrap, unique_topic, 0, 300)
    log: list = []
    lock = threading.Lock()
    members = [GroupMember(f"m{i}", client, bootstrap, unique_topic, "g-" + unique_topic, log, lock) for i in range(3)]
    try:
        for m in members[:2]:
            m.start()

        def spread(n):
            return lambda: (
                all(m.assignment for m in members[:n])
                and sorted(p for m in members[:n] for p in m.assignment) == list(range(6))
            )

        wait_for(spread(2), what="two members sharing six partitions")
        wait_for(lambda: len(log) >= 300, what="first 300 messages")
        members[2].start()
        wait_for(spread(3), what="three members sharing six partitions")
        assert all(len(m.assignment) == 2 for m in members)
        produce(bootstrap, unique_topic, 300, 300)
        wait_for(lambda: len(log) >= 600, what="all 600 messages")
    finally:
        for m in members:
            m.stop.set()
        for m in members:
            if m.is_alive():
                m.join(30)
    assert [m.error for m in members] == [None, None, None]
    check_consumed(log, 600)
