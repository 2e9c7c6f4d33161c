"""A cluster's metadata quorum with real processes (issue 14, first part): three combined
broker/controller nodes on loopback elect a controller (raft-rs), register, and give clients
the same picture of brokers and controller; killing the controller elects another and fences
the dead node; a node that comes back rejoins; `fastlog cluster` starts and stops a cluster.
Every wait is bounded."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from confluent_kafka.admin import AdminClient

from tests.cluster.helpers import Cluster, agreed, running_cluster, wait_for
from tests.conftest import BrokerProcess, free_port

@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    started = Cluster(tmp_path).start()
    yield started
    started.stop()


def test_three_nodes_agree_on_brokers_and_controller(cluster) -> None:
    wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "all three nodes list brokers 1-3 and one controller")
    out = subprocess.run(["kcat", "-b", cluster.nodes[2].bootstrap, "-L"], capture_output=True, text=True, timeout=20).stdout
    assert re.search(r"3 brokers:", out) and "(controller)" in out
    log = cluster.nodes[1].log_text()
    assert "metadata quorum: node 1 of voters [1, 2, 3]" in log and "broker 3 registered" in log


def test_killing_the_controller_elects_another_and_fences_it_until_it_returns(cluster) -> None:
    wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the cluster settles")
    _, controller = cluster.view(1)
    cluster.nodes[controller].kill()
    survivors = [n for n in cluster.nodes if n != controller]
    started = time.monotonic()
    wait_for(lambda: cluster.view(survivors[0])[1] in survivors, "a new controller among the survivors", 10)
    elected_after = time.monotonic() - started
    wait_for(lambda: agreed(cluster, survivors, set(survivors)), "the dead node is fenced")
    assert elected_after < 5, f"new controller after {elected_after:.1f}s"
    cluster.nodes[controller].start()
    wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the returning node is unfenced and agrees")
    assert "fenced: the controller has not heard from it" in cluster.nodes[survivors[0]].log_text()


def test_a_whole_cluster_restarts_from_its_quorum_logs(cluster) -> None:
    wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the cluster settles")
    cluster.stop()
    cluster.start()
    wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the restarted cluster settles")
    wal = cluster.nodes[1].data_dir / "__cluster_metadata-0" / "quorum.wal"
    assert wal.stat().st_size > 0


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"controller.quorum.voters": "1@127.0.0.1:1,2@127.0.0.1:2"}, "node.id 0 is a controller but not one of controller.quorum.voters"),
        ({"node.id": "1", "controller.quorum.voters": "1@127.0.0.1:1,2@127.0.0.1:2"}, "exactly one listener named in controller.listener.names"),
        ({"node.id": "1", "controller.quorum.voters": "1@nowhere"}, "is not id@host:port"),
        ({"node.id": "1", "controller.quorum.voters": "1@127.0.0.1:1,2@127.0.0.1:2", "process.roles": "broker"}, "is one of controller.quorum.voters but process.roles has no controller"),
        ({"node.id": "3", "process.roles": "broker"}, "needs controller.quorum.voters or controller.quorum.bootstrap.servers"),
        ({"node.id": "3", "process.roles": "broker", "controller.quorum.bootstrap.servers": "nowhere"}, "is not host:port"),
        ({"node.id": "3", "process.roles": "broker", "controller.quorum.voters": "1@127.0.0.1:1",
          "listeners": "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0"}, "does not listen on the controller listener"),
        ({"node.id": "1", "process.roles": "controller", "controller.quorum.voters": "1@127.0.0.1:1",
          "listeners": "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0"}, "a controller-only node serves no clients"),
        ({"process.roles": "broker,zookeeper"}, "expected broker, controller, or broker,controller"),
    ],
)
def test_a_bad_cluster_config_stops_start_up_with_a_message(tmp_path, overrides, message) -> None:
    args = [sys.executable, "-m", "fastlog", "serve", "--override", f"log.dirs={tmp_path}"]
    for key, value in overrides.items():
        args += ["--override", f"{key}={value}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and message in done.stderr


def free_port_range(count: int) -> int:
    """A first port such that it and the `count - 1` after it are free now."""
    for _ in range(100):
        base = free_port(room=count)
        sockets = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                sockets.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in sockets:
                probe.close()
    raise AssertionError(f"no {count} consecutive free ports")


def test_fastlog_cluster_starts_three_nodes_and_stops_them_on_ctrl_c(tmp_path) -> None:
    base = free_port_range(6)  # three client ports, then three controller ports
    # No schema registries on 8081-8083: another test process may be using 8081.
    command = [sys.executable, "-m", "fastlog", "cluster", "--nodes", "3", "--data", str(tmp_path), "--base-port", str(base),
               "--override", "schema.registry.listeners=-1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "3 nodes started" in process.stdout.readline()
        bootstrap = process.stdout.readline().split(": ", 1)[1].strip()
        assert bootstrap == f"127.0.0.1:{base},127.0.0.1:{base + 1},127.0.0.1:{base + 2}"

        def three_brokers() -> bool:
            metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5)
            return set(metadata.brokers) == {1, 2, 3} and metadata.controller_id in (1, 2, 3)

        try:
            wait_for(three_brokers, "fastlog cluster's nodes agree")
        except AssertionError as e:
            logs = [(tmp_path / f"node-{n}.log").read_text()[-1500:] for n in (1, 2, 3) if (tmp_path / f"node-{n}.log").exists()]
            raise AssertionError(f"{e}\n" + "\n".join(logs)) from None
        process.send_signal(signal.SIGINT)
        assert process.wait(40) == 0
        assert "SIGINT: stopping 3 nodes" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def describe_quorum(bootstrap: str, version: int = 2) -> object:
    from fastlog import protocol
    from tests.broker.wire import WireClient

    Q = protocol.DescribeQuorumRequest
    request = Q(topics=[Q.TopicData(topic_name="__cluster_metadata", partitions=[Q.PartitionData(partition_index=0)])])
    with WireClient(bootstrap) as wire:
        return wire.request(request, version)


def test_describe_quorum_and_fastlog_cluster_status_show_the_quorum(cluster) -> None:
    wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the cluster settles")
    _, controller = cluster.view(1)

    def caught_up() -> bool:
        state = describe_quorum(cluster.nodes[controller].bootstrap).topics[0].partitions[0]
        return state.leader_id == controller and {v.log_end_offset for v in state.current_voters} == {state.high_watermark}

    wait_for(caught_up, "the leader reports every voter at its high watermark")
    answer = describe_quorum(cluster.nodes[controller].bootstrap)
    state = answer.topics[0].partitions[0]
    assert state.leader_epoch >= 1 and state.high_watermark >= 3  # three registrations at least
    assert sorted(v.replica_id for v in state.current_voters) == [1, 2, 3]
    assert sorted(n.node_id for n in answer.nodes) == [1, 2, 3] and answer.nodes[0].listeners[0].name == "CONTROLLER"
    follower = next(n for n in (1, 2, 3) if n != controller)
    assert describe_quorum(cluster.nodes[follower].bootstrap, 0).topics[0].partitions[0].leader_id == controller
    out = subprocess.run(
        [sys.executable, "-m", "fastlog", "cluster", "status", "--bootstrap-server", cluster.nodes[follower].bootstrap],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert f"controller {controller}" in out.stdout and "metadata quorum: leader" in out.stdout
    assert "offline partitions (no live leader): 0" in out.stdout


def test_a_single_node_answers_describe_quorum_as_a_quorum_of_one(broker) -> None:
    state = describe_quorum(broker.bootstrap).topics[0].partitions[0]
    assert (state.error_code, state.leader_id, [v.replica_id for v in state.current_voters]) == (0, 0, [0])


def test_kafkas_stock_single_voter_kraft_config_runs_a_single_node_as_before(tmp_path) -> None:
    # config/kraft/server.properties of Kafka 3.x: one voter, this node; its topics stay its own
    node = BrokerProcess(tmp_path / "data")
    controller_port = free_port()
    node.overrides.update({
        "node.id": "1", "process.roles": "broker,controller", "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
    })
    node.start()
    try:
        admin = AdminClient({"bootstrap.servers": node.bootstrap})
        from confluent_kafka.admin import NewTopic

        admin.create_topics([NewTopic("kept", 1, 1)])["kept"].result(timeout=20)
        node.restart()
        assert "kept" in AdminClient({"bootstrap.servers": node.bootstrap}).list_topics(timeout=10).topics
        assert "metadata quorum" not in node.log_text()
    finally:
        node.stop()


def test_the_metadata_log_name_is_reserved(cluster) -> None:
    from confluent_kafka.admin import NewTopic

    wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the cluster settles")
    admin = AdminClient({"bootstrap.servers": cluster.nodes[1].bootstrap})
    with pytest.raises(Exception) as refused:
        admin.create_topics([NewTopic("__cluster_metadata", 1, 1)])["__cluster_metadata"].result(timeout=20)
    assert "reserved" in str(refused.value)


def test_the_cluster_metrics_show_the_controller_and_a_fenced_broker(cluster) -> None:
    import urllib.request

    wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the cluster settles")
    _, controller = cluster.view(1)

    def scrape(node: int) -> dict[str, float]:
        port = int(cluster.nodes[node].log_text().split("metrics at http://127.0.0.1:")[1].split("/")[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            lines = answer.read().decode().splitlines()
        return {line.split()[0]: float(line.split()[1]) for line in lines if line.startswith(("fastlog_controller", "fastlog_quorum", "fastlog_fenced"))}

    assert scrape(controller)["fastlog_controller_active"] == 1
    survivor = next(n for n in (1, 2, 3) if n != controller)
    assert scrape(survivor)["fastlog_controller_active"] == 0 and scrape(survivor)["fastlog_quorum_leader"] == controller
    cluster.nodes[controller].kill()
    wait_for(lambda: scrape(survivor)["fastlog_fenced_brokers"] == 1, "the killed controller counted as fenced")
    assert scrape(survivor)["fastlog_quorum_epoch"] >= 2


def test_snapshots_keep_the_quorum_log_small_and_a_node_that_missed_them_catches_up(tmp_path) -> None:
    """metadata.log.max.record.bytes.between.snapshots: every node snapshots its image and its
    write-ahead file drops what the snapshot holds; a restarted node starts from its snapshot,
    and one that was down while the others compacted gets the leader's snapshot."""
    from confluent_kafka.admin import NewTopic

    with running_cluster(tmp_path, {"metadata.log.max.record.bytes.between.snapshots": "2000"}) as cluster:
        _, controller = cluster.view(1)
        behind = next(n for n in (1, 2, 3) if n != controller)
        cluster.nodes[behind].kill()
        others = [n for n in (1, 2, 3) if n != behind]
        bootstrap = ",".join(cluster.nodes[n].bootstrap for n in others)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        names = [f"snap-{i}" for i in range(30)]
        for future in admin.create_topics([NewTopic(n, 2, 2) for n in names]).values():
            future.result(timeout=30)
        for n in others:
            wait_for(lambda: "metadata snapshot at" in cluster.nodes[n].log_text(), f"node {n} takes a snapshot")
            wal = cluster.nodes[n].data_dir / "__cluster_metadata-0" / "quorum.wal"
            assert wal.stat().st_size < 20_000, "the log holds only what came after the snapshot"
        cluster.nodes[behind].start()
        wait_for(lambda: "loaded from a snapshot" in cluster.nodes[behind].log_text(), "the node that was down gets the leader's snapshot")
        wait_for(lambda: set(names) <= set(AdminClient({"bootstrap.servers": cluster.nodes[behind].bootstrap}).list_topics(timeout=5).topics),
                 "it knows every topic created while it was down")
        restarted = others[0]
        cluster.nodes[restarted].stop()
        cluster.nodes[restarted].start()
        assert "loaded from a snapshot" in cluster.nodes[restarted].log_text()
        wait_for(lambda: set(names) <= set(AdminClient({"bootstrap.servers": cluster.nodes[restarted].bootstrap}).list_topics(timeout=5).topics),
                 "a node restarted from its own snapshot knows every topic")
