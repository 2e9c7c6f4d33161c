"""A cluster of real `fastlog serve` processes on loopback for the cluster tests."""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Optional

from confluent_kafka.admin import AdminClient

from tests.conftest import BrokerProcess, free_port
from tests.delivery.proxy import ChaosProxy

SESSION_TIMEOUT_MS = 2000
ELECTION_TIMEOUT_MS = 500
SETTLE_SECONDS = 20


class Cluster:
    """`size` nodes; with `replication_proxies`, followers fetch from each broker through a
    `ChaosProxy` in front of its REPLICATION listener (`inter.broker.listener.name`), so a test
    can cut a leader off from its followers while clients still reach it."""

    def __init__(
        self, root: Path, size: int = 3, replication_proxies: bool = False, roles: Optional[dict[int, str]] = None, bootstrap_only: frozenset[int] = frozenset()
    ) -> None:
        """`roles`: process.roles of some nodes (the rest are combined); the voters are the nodes
        with the controller role; broker-only nodes in `bootstrap_only` are given the
        controllers as controller.quorum.bootstrap.servers instead of the voters."""
        roles = {node: (roles or {}).get(node, "broker,controller") for node in range(1, size + 1)}
        controller_ports = {node: free_port() for node, role in roles.items() if "controller" in role}
        voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in controller_ports.items())
        self.roles = roles
        self.nodes: dict[int, BrokerProcess] = {}
        self.proxies: dict[int, ChaosProxy] = {}
        for node, role in roles.items():
            process = BrokerProcess(root / f"node-{node}")
            listeners = [f"PLAINTEXT://127.0.0.1:{process.port}"] if "broker" in role else []
            if node in controller_ports:
                listeners.append(f"CONTROLLER://127.0.0.1:{controller_ports[node]}")
            if role == "controller":  # no client port: the test waits for the controller port
                process.port = controller_ports[node]
            process.overrides.update({
                "node.id": str(node),
                "process.roles": role,
                "listeners": ",".join(listeners),
                "broker.session.timeout.ms": str(SESSION_TIMEOUT_MS),
                "controller.quorum.election.timeout.ms": str(ELECTION_TIMEOUT_MS),
            })
            if node in bootstrap_only:
                process.overrides["controller.quorum.bootstrap.servers"] = ",".join(f"127.0.0.1:{p}" for p in controller_ports.values())
            else:
                process.overrides["controller.quorum.voters"] = voters
            if replication_proxies:
                replication_port = free_port()
                proxy = self.proxies[node] = ChaosProxy(replication_port)
                process.overrides.update({
                    "listeners": f"{process.overrides['listeners']},REPLICATION://127.0.0.1:{replication_port}",
                    "advertised.listeners": f"PLAINTEXT://127.0.0.1:{process.port},REPLICATION://127.0.0.1:{proxy.port}",
                    "inter.broker.listener.name": "REPLICATION",
                })
            self.nodes[node] = process

    @property
    def brokers(self) -> list[int]:
        return [node for node, role in self.roles.items() if "broker" in role]

    def start(self) -> "Cluster":
        for proxy in self.proxies.values():
            proxy.start()
        """Starts every node at once: a node serves clients once it hears a leader, which takes
        a majority of the nodes running."""
        try:
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                for started in [pool.submit(process.start) for process in self.nodes.values()]:
                    started.result()
        except BaseException:  # one node did not start: the others are stopped, not left running
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in self.nodes.values():
            if process.process and process.process.poll() is None:
                process.stop()
        for proxy in self.proxies.values():
            proxy.close()
        self.proxies = {}

    @property
    def bootstrap(self) -> str:
        return ",".join(self.nodes[n].bootstrap for n in self.brokers)

    def view(self, node: int) -> tuple[set[int], int]:
        """(broker ids, controller id) that node `node` gives a client."""
        metadata = AdminClient({"bootstrap.servers": self.nodes[node].bootstrap}).list_topics(timeout=5)
        return set(metadata.brokers), metadata.controller_id


def wait_for(condition: Callable[[], bool], what: str, seconds: float = SETTLE_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # a node not answering yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds}s: {what}")


def agreed(cluster: Cluster, nodes: list[int], brokers: set[int]) -> bool:
    views = [cluster.view(n) for n in nodes]
    return all(v == views[0] for v in views) and views[0][0] == brokers and views[0][1] in brokers


@contextlib.contextmanager
def running_cluster(root: Path, overrides: Optional[dict[str, str]] = None, replication_proxies: bool = False) -> Iterator[Cluster]:
    """Three nodes with `overrides` each, started and settled (every node agrees on the
    brokers and the controller); stopped at the end."""
    cluster = Cluster(root, replication_proxies=replication_proxies)
    for node in cluster.nodes.values():
        node.overrides.update(overrides or {})
    cluster.start()
    try:
        wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the cluster settles")
        yield cluster
    finally:
        cluster.stop()
