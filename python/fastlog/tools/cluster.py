"""`fastlog cluster --nodes 3 [--data DIR]`: a local cluster on loopback, for trying a client's
behaviour with several brokers (and a controller that can fail over) without Docker; and
`fastlog cluster status`: the brokers, the controller, the metadata quorum and the partitions
without a live leader, of any cluster (over the Kafka protocol: Metadata and DescribeQuorum).

Starts one `fastlog serve` process per node, each a combined broker and controller with its
data in DIR/node-N, client ports from `--base-port` (9092, 9093, ...) and controller ports
after them; prints the bootstrap list and waits. Ctrl-C (or SIGTERM) stops every node cleanly;
a node that exits on its own is reported and the others are stopped too.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from fastlog import protocol
from fastlog.client import Client, ClientError
from fastlog.tools import add_common, command, connect, print_json, print_table

STOP_SECONDS = 30
REGISTRY_BASE_PORT = 8081


def register(commands: "argparse._SubParsersAction") -> None:
    parser = commands.add_parser(
        "cluster",
        help="run a local cluster of several nodes",
        description="Run a local cluster: one combined broker/controller process per node, on loopback.",
    )
    parser.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    parser.add_argument("--data", default="fastlog-cluster", help="data directory (default ./fastlog-cluster)")
    parser.add_argument("--base-port", type=int, default=9092, help="first client port (default 9092)")
    parser.add_argument(
        "--override", metavar="KEY=VALUE", action="append", default=[], help="a config key for every node (repeatable)"
    )
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="cluster_command", metavar="ACTION")
    status_parser = command(actions, "status", status, full_name="cluster status", help="show a cluster's brokers, controller, quorum, offline and under-replicated partitions")
    add_common(status_parser)


def quorum_of(client: Client) -> Optional[Any]:
    """The DescribeQuorum answer for the metadata partition, or None if the broker has none."""
    Q = protocol.DescribeQuorumRequest
    request = Q(topics=[Q.TopicData(topic_name="__cluster_metadata", partitions=[Q.PartitionData(partition_index=0)])])
    try:
        answer = client.controller().request(request)
    except (ClientError, KeyError):  # a broker without DescribeQuorum
        return None
    return answer.topics[0].partitions[0] if answer.topics and answer.topics[0].partitions else None


def status(args: argparse.Namespace) -> int:
    with connect(args) as client:
        cluster = client.metadata()
        quorum = quorum_of(client)
    partitions = [p for t in cluster.topics.values() for p in t.partitions.values()]
    offline = sorted((p.topic, p.index) for p in partitions if p.leader < 0)
    under_replicated = sorted((p.topic, p.index) for p in partitions if p.leader >= 0 and len(p.isr) < len(p.replicas))
    report = {
        "cluster_id": cluster.cluster_id,
        "controller": cluster.controller_id,
        "brokers": [{"id": i, "host": h, "port": p} for i, (h, p) in sorted(cluster.brokers.items())],
        "quorum": None if quorum is None else {
            "leader": quorum.leader_id, "epoch": quorum.leader_epoch, "high_watermark": quorum.high_watermark,
            "voters": [{"id": v.replica_id, "log_end_offset": v.log_end_offset} for v in quorum.current_voters],
        },
        "offline_partitions": [f"{t}-{i}" for t, i in offline],
        "under_replicated_partitions": [f"{t}-{i}" for t, i in under_replicated],
    }
    if args.json:
        print_json(report)
        return 0
    print(f"cluster {cluster.cluster_id}, controller {cluster.controller_id}")
    print_table([(b["id"], f"{b['host']}:{b['port']}", "controller" if b["id"] == cluster.controller_id else "") for b in report["brokers"]], ["BROKER", "ADDRESS", "ROLE"])
    if quorum is not None:
        lag = [(v.replica_id, v.log_end_offset, "" if v.log_end_offset < 0 else quorum.high_watermark - v.log_end_offset) for v in quorum.current_voters]
        print(f"metadata quorum: leader {quorum.leader_id}, epoch {quorum.leader_epoch}, high watermark {quorum.high_watermark}")
        print_table(lag, ["VOTER", "LOG-END", "LAG"])
    print(f"offline partitions (no live leader): {len(offline)}" + (": " + ", ".join(report["offline_partitions"][:20]) if offline else ""))
    print(f"under-replicated partitions (ISR smaller than the replicas): {len(under_replicated)}"
          + (": " + ", ".join(report["under_replicated_partitions"][:20]) if under_replicated else ""))
    return 0


def node_overrides(node: int, nodes: int, base_port: int, data: Path) -> list[str]:
    client_port = base_port + node - 1
    voters = ",".join(f"{n}@127.0.0.1:{base_port + nodes + n - 1}" for n in range(1, nodes + 1))
    return [
        f"node.id={node}",
        f"listeners=PLAINTEXT://127.0.0.1:{client_port},CONTROLLER://127.0.0.1:{base_port + nodes + node - 1}",
        f"controller.quorum.voters={voters}",
        f"log.dirs={data / f'node-{node}'}",
        "metrics.port=0",
        # each node's schema registry: 8081, 8082, ...; they share the cluster's _schemas
        f"schema.registry.listeners=http://127.0.0.1:{REGISTRY_BASE_PORT + node - 1}",
    ]


def start_nodes(args: argparse.Namespace) -> list[subprocess.Popen]:
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    processes = []
    for node in range(1, args.nodes + 1):
        command = [sys.executable, "-m", "fastlog", "serve"]
        for item in node_overrides(node, args.nodes, args.base_port, data) + args.override:
            command += ["--override", item]
        log_file = open(data / f"node-{node}.log", "a")
        processes.append(subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        log_file.close()
    return processes


def stop_nodes(processes: list[subprocess.Popen]) -> int:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    worst = 0
    for process in processes:
        try:
            worst = max(worst, process.wait(max(0.1, deadline - time.monotonic())) or 0)
        except subprocess.TimeoutExpired:
            process.kill()
            worst = 1
    return worst


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= 9:
        print("fastlog cluster: --nodes must be 1 to 9", file=sys.stderr)
        return 2
    processes = start_nodes(args)
    bootstrap = ",".join(f"127.0.0.1:{args.base_port + i}" for i in range(args.nodes))
    print(f"{args.nodes} nodes started; logs in {Path(args.data).resolve()}/node-N.log", flush=True)
    print(f"bootstrap servers: {bootstrap}", flush=True)
    registries = ",".join(f"http://127.0.0.1:{REGISTRY_BASE_PORT + i}" for i in range(args.nodes))
    print(f"schema registries: {registries}", flush=True)
    stopped: Optional[str] = None

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopped
        stopped = signal.Signals(signum).name

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while stopped is None:
            exited = [i + 1 for i, p in enumerate(processes) if p.poll() is not None]
            if exited:
                print(f"fastlog cluster: node {exited[0]} exited; stopping the others", file=sys.stderr)
                stop_nodes(processes)
                return 1
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"{stopped}: stopping {args.nodes} nodes", flush=True)
    return stop_nodes(processes)
