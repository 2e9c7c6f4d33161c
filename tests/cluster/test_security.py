"""Security in a cluster (issue 17): SCRAM credentials and ACLs go through the metadata quorum,
so a user set through one node logs in at every node, and an ACL created or deleted through one
node is enforced at every node, also after a restart; each broker registers an endpoint per
listener, so a client on the SASL listener is sent to the other brokers' SASL listeners (and
produces to leaders there). The PLAINTEXT listener (followers fetch on it, as ANONYMOUS) is a
super user, as Kafka needs for a PLAINTEXT inter-broker listener."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

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


def writes(port: int, topic: str) -> bool:
    """Whether frank's produce to `topic` through the broker at `port` is accepted."""
    outcome: list = []
    producer = Producer({**sasl_conf(port), "message.timeout.ms": 5000})
    producer.produce(topic, b"x", on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(10)
    return bool(outcome) and outcome[0] is None


def frank_acl(operation: AclOperation) -> AclBinding:
    return AclBinding(ResourceType.TOPIC, "secure-", ResourcePatternType.PREFIXED, "User:frank", "*", operation, AclPermissionType.ALLOW)


def test_scram_users_acls_and_sasl_endpoints_across_the_cluster(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    sasl_ports = {}
    for node, process in cluster.nodes.items():
        sasl_ports[node] = free_port()
        process.overrides["listeners"] += f",SASL_PLAINTEXT://127.0.0.1:{sasl_ports[node]}"
        process.overrides["authorizer.class.name"] = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        process.overrides["super.users"] = "User:ANONYMOUS"
    cluster.start()
    try:
        wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the cluster settles")
        admin = AdminClient({"bootstrap.servers": cluster.nodes[1].bootstrap})
        upsert = UserScramCredentialUpsertion("frank", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"frank-secret")
        admin.alter_user_scram_credentials([upsert])["frank"].result(TIMEOUT)
        wait_for(lambda: all(logs_in(p) for p in sasl_ports.values()), "every node takes the new user's login")
        assert not writes(sasl_ports[2], "secure-orders")  # no ACL yet: denied
        for future in admin.create_acls([frank_acl(AclOperation.WRITE), frank_acl(AclOperation.CREATE)]).values():
            future.result(TIMEOUT)

        metadata = AdminClient(sasl_conf(sasl_ports[2])).list_topics(timeout=TIMEOUT)
        assert {b.port for b in metadata.brokers.values()} == set(sasl_ports.values())
        producer = Producer({**sasl_conf(sasl_ports[3]), "acks": "all"})
        for i in range(30):
            producer.produce("secure-orders", str(i).encode(), partition=-1)
        assert producer.flush(TIMEOUT) == 0

        assert not writes(sasl_ports[3], "orders")  # outside the prefix

        cluster.nodes[3].restart()
        wait_for(lambda: logs_in(sasl_ports[3]), "the restarted node takes the user's login")
        restarted = AdminClient({"bootstrap.servers": cluster.nodes[3].bootstrap})  # kept: a dropped client cancels its calls
        described = restarted.describe_acls(
            AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY)
        ).result(TIMEOUT)
        assert sorted(str(b.operation) for b in described) == sorted(str(o) for o in (AclOperation.WRITE, AclOperation.CREATE))
        assert writes(sasl_ports[3], "secure-orders")
        gone = AclBindingFilter(ResourceType.TOPIC, None, ResourcePatternType.ANY, "User:frank", None, AclOperation.WRITE, AclPermissionType.ANY)
        for future in admin.delete_acls([gone]).values():
            future.result(TIMEOUT)
        wait_for(lambda: not writes(sasl_ports[3], "secure-orders"), "the deleted ACL stops frank's writes at another node")
        assert not any(b"frank-secret" in p.read_bytes() for node in cluster.nodes.values() for p in node.data_dir.rglob("*") if p.is_file())
    finally:
        cluster.stop()


def test_followers_replicate_over_a_sasl_ssl_inter_broker_listener(tmp_path: Path) -> None:
    """inter.broker.listener.name is SASL_SSL with client certificates required: followers do
    TLS (the broker's keystore as their certificate) and log in with PLAIN
    (sasl.mechanism.inter.broker.protocol, the listener's JAAS username and password), so an
    acks=all produce to three in-sync replicas succeeds; the brokers log the followers' logins."""
    from confluent_kafka.admin import NewTopic

    from tests.security.certs import PASSWORD, CertificateAuthority

    ca = CertificateAuthority(tmp_path / "pki")
    server = ca.issue("broker", server=True)
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="broker-secret" '
            'user_broker="broker-secret";')
    cluster = Cluster(tmp_path)
    for process in cluster.nodes.values():
        port = free_port()
        process.overrides.update({
            "listeners": process.overrides["listeners"] + f",REPLICATION://127.0.0.1:{port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,REPLICATION:SASL_SSL",
            "inter.broker.listener.name": "REPLICATION",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "listener.name.replication.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.replication.plain.sasl.jaas.config": jaas,
            "listener.name.replication.ssl.client.auth": "required",
            "ssl.keystore.location": str(server.p12), "ssl.keystore.password": PASSWORD, "ssl.keystore.type": "PKCS12",
            "ssl.truststore.location": str(ca.pem), "ssl.truststore.type": "PEM",
        })
    cluster.start()
    try:
        wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the cluster settles")
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        admin.create_topics([NewTopic("replicated", 2, 3, config={"min.insync.replicas": "3"})])["replicated"].result(TIMEOUT)
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "message.timeout.ms": TIMEOUT * 1000})
        delivered: list = []
        for i in range(50):
            producer.produce("replicated", str(i).encode(), on_delivery=lambda err, msg: delivered.append(err))
        assert producer.flush(TIMEOUT) == 0
        assert delivered == [None] * 50  # all three replicas in sync: the followers fetch

        logs = "".join(process.log_text() for process in cluster.nodes.values())
        assert "REPLICATION authenticated broker from" in logs
    finally:
        cluster.stop()


def test_the_metadata_quorum_over_ssl_with_client_certificates(tmp_path: Path) -> None:
    """controller.listener.names maps to SSL with ssl.client.auth=required and an authorizer
    whose super.users names the nodes' certificate: two voters and a broker-only node (it takes
    the protocol from listener.security.protocol.map) agree on the metadata over TLS and topics
    are created through them; a plaintext peer on the controller port fails the handshake, and
    a peer with a certificate the CA signed but a principal that is not a super user is cut off
    (the quorum's records are the ACLs themselves)."""
    import socket
    import ssl

    from confluent_kafka.admin import NewTopic

    from tests.security.certs import PASSWORD, CertificateAuthority

    ca = CertificateAuthority(tmp_path / "pki")
    node_cert = ca.issue("node", server=True)
    intruder = ca.issue("intruder")
    cluster = Cluster(tmp_path, roles={3: "broker"})
    for process in cluster.nodes.values():
        process.overrides.update({
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
            "listener.name.controller.ssl.client.auth": "required",
            "ssl.keystore.location": str(node_cert.p12), "ssl.keystore.password": PASSWORD, "ssl.keystore.type": "PKCS12",
            "ssl.truststore.location": str(ca.pem), "ssl.truststore.type": "PEM",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{node_cert.subject};User:ANONYMOUS",  # ANONYMOUS: this test's PLAINTEXT admin client
        })
    cluster.start()
    try:
        wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the cluster settles over TLS")
        controller_port = int(cluster.nodes[1].overrides["listeners"].rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", controller_port), timeout=5) as plain:
            plain.sendall(b"\x00\x00\x00\x10" + b"\x00" * 16)  # a quorum frame without TLS
            while plain.recv(100):  # a TLS alert, perhaps, then the close
                pass
        context = ssl.create_default_context(cafile=str(ca.pem))
        context.load_cert_chain(str(intruder.cert), str(intruder.key))
        with context.wrap_socket(socket.create_connection(("127.0.0.1", controller_port), timeout=5), server_hostname="127.0.0.1") as tls:
            try:
                tls.sendall(b"\x00\x00\x00\x10" + b"\x00" * 16)
                while tls.recv(100):
                    pass
            except (ssl.SSLError, ConnectionError):
                pass
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        admin.create_topics([NewTopic("over-tls", 3, 3)])["over-tls"].result(TIMEOUT)
        wait_for(lambda: all("over-tls" in AdminClient({"bootstrap.servers": cluster.nodes[n].bootstrap}).list_topics(timeout=5).topics
                             for n in (1, 2, 3)), "every node sees the topic")
        log = cluster.nodes[1].log_text()
        assert "TLS handshake with a peer failed" in log
        assert f"refused a peer: User:{intruder.subject} is not in super.users" in log
    finally:
        cluster.stop()
