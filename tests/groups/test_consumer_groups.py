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


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_two_then_three_consumers_share_the_partitions(group_broker, unique_topic, client) -> None:
    two_then_three(group_broker.bootstrap, unique_topic, client)


def two_then_three(bootstrap: str, topic: str, client: str) -> None:
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, 0, 300)
    log: list = []
    lock = threading.Lock()
    members = [GroupMember(f"m{i}", client, bootstrap, topic, "g-" + topic, log, lock) for i in range(3)]
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
        produce(bootstrap, topic, 300, 300)
        wait_for(lambda: len(log) >= 600, what="all 600 messages")
    finally:
        for m in members:
            m.stop.set()
        for m in members:
            if m.is_alive():
                m.join(30)
    assert [m.error for m in members] == [None, None, None]
    check_consumed(log, 600)
