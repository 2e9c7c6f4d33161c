"""Client quotas in a cluster (issue 22): AlterClientQuotas through one node goes into the
metadata quorum, so every node describes and applies the same quotas, also after a restart."""

from __future__ import annotations

import time
from pathlib import Path

from fastlog import protocol as P
from fastlog.client import Client
from tests.broker.wire import WireClient
from tests.cluster.helpers import running_cluster, wait_for


def throttled_on(bootstrap: str) -> bool:
    """Whether a client id allowed 0.0001 % of a thread is throttled at this node within a few requests."""
    M = P.MetadataRequest
    with WireClient(bootstrap, client_id="cluster-greedy") as wire:
        for _ in range(20):
            if wire.request(M(topics=[], allow_auto_topic_creation=False), 9).throttle_time_ms > 0:
                return True
    return False


def test_quotas_go_through_the_quorum_to_every_node(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        with Client(cluster.nodes[2].bootstrap) as client:
            client.alter_client_quotas([([("client-id", "cluster-greedy")], {"request_percentage": 0.0001}),
                                        ([("user", None)], {"producer_byte_rate": 10_000_000})])

        def described(node: int) -> list:
            with Client(cluster.nodes[node].bootstrap) as client:
                return sorted((tuple(e), v) for e, v in client.describe_client_quotas())

        wait_for(lambda: all(len(described(n)) == 2 for n in (1, 2, 3)), "every node has both quotas")
        assert described(1) == described(3)
        assert all(throttled_on(cluster.nodes[n].bootstrap) for n in (1, 3))
        cluster.nodes[3].restart()
        wait_for(lambda: len(described(3)) == 2, "the restarted node has the quotas again")
        with Client(cluster.nodes[1].bootstrap) as client:
            client.alter_client_quotas([([("client-id", "cluster-greedy")], {"request_percentage": None})])
        wait_for(lambda: len(described(3)) == 1, "the removal reaches every node")
        time.sleep(0.1)
        assert not throttled_on(cluster.nodes[3].bootstrap)


def test_max_partitions_counts_every_brokers_replicas(tmp_path: Path) -> None:
    """max.partitions=10 on 3 brokers: 30 partition replicas in all. 8 partitions of 3
    replicas fit (24); 3 more of 3 (33) are refused with POLICY_VIOLATION naming the limit,
    by CreateTopics and by CreatePartitions; 2 more of 3 (30) fit."""
    from fastlog.client import KafkaError

    with running_cluster(tmp_path, {"max.partitions": "10"}) as cluster:
        with Client(cluster.nodes[1].bootstrap) as client:
            client.create_topic("spread", 8, 3)
            try:
                client.create_topic("more", 3, 3)
            except KafkaError as e:
                assert e.name == "POLICY_VIOLATION" and "max.partitions" in str(e) and "33 replicas" in str(e)
            else:
                raise AssertionError("a topic past the cluster's partition limit was created")
            try:
                client.create_partitions("spread", 11)
            except KafkaError as e:
                assert e.name == "POLICY_VIOLATION" and "max.partitions" in str(e)
            else:
                raise AssertionError("partitions past the cluster's limit were added")
            client.create_partitions("spread", 10)
            assert len(client.topic("spread").partitions) == 10
