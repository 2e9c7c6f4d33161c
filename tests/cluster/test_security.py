"""Security in a cluster (issue 17): SCRAM credentials go through the metadata quorum, so a
user set through one node logs in at every node, also after a restart; each broker registers
an endpoint per listener, so a client on the SASL listener is sent to the other brokers' SASL
listeners (and produces to leaders there)."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

from tests.cluster.helpers import Cluster, agreed, wait_for
from tests.conftest import free_port

TIMEOUT = 20


def sasl_conf(port: int, password: str = "frank-secret") -> dict:
    return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": "frank", "sasl.password": password}


def logs_in(port: int) -> bool:
    try:
        AdminClient(sasl_conf(port)).list_topics(timeout=5)
        return True
    except Exception:
        return False


def test_scram_users_and_sasl_endpoints_across_the_cluster(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    sasl_ports = {}
    for node, process in cluster.nodes.items():
        sasl_ports[node] = free_port()
        process.overrides["listeners"] += f",SASL_PLAINTEXT://127.0.0.1:{sasl_ports[node]}"
    cluster.start()
    try:
        wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the cluster settles")
        admin = AdminClient({"bootstrap.servers": cluster.nodes[1].bootstrap})
        upsert = UserScramCredentialUpsertion("frank", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"frank-secret")
        admin.alter_user_scram_credentials([upsert])["frank"].result(TIMEOUT)
        wait_for(lambda: all(logs_in(p) for p in sasl_ports.values()), "every node takes the new user's login")

        metadata = AdminClient(sasl_conf(sasl_ports[2])).list_topics(timeout=TIMEOUT)
        assert {b.port for b in metadata.brokers.values()} == set(sasl_ports.values())
        producer = Producer({**sasl_conf(sasl_ports[3]), "acks": "all"})
        for i in range(30):
            producer.produce("secure-orders", str(i).encode(), partition=-1)
        assert producer.flush(TIMEOUT) == 0

        cluster.nodes[3].restart()
        wait_for(lambda: logs_in(sasl_ports[3]), "the restarted node takes the user's login")
        assert not any(b"frank-secret" in p.read_bytes() for node in cluster.nodes.values() for p in node.data_dir.rglob("*") if p.is_file())
    finally:
        cluster.stop()
