"""A broker with every security protocol: PLAINTEXT, SSL (client certificates requested),
SASL_PLAINTEXT and SASL_SSL, PLAIN users from a JAAS file and SCRAM users made through
AlterUserScramCredentials; certificates made for the test run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import BrokerProcess, free_port
from tests.security.certs import PASSWORD, Issued, CertificateAuthority

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
PLAIN_USERS = {"admin": "admin-secret", "alice": "alice-secret"}
SCRAM_USERS = {"SCRAM-SHA-256": ("bob", "bob-secret"), "SCRAM-SHA-512": ("carol", "carol-secret")}
JAAS_FILE = """KafkaServer {
  org.apache.kafka.common.security.plain.PlainLoginModule required
    username="admin" password="admin-secret"
%s;
};
"""


@dataclass
class SecureBroker:
    process: BrokerProcess
    ports: dict[str, int]
    ca: CertificateAuthority
    server: Issued
    client: Issued  # a client certificate the CA signed (CN=alice,OU=eng)

    def address(self, protocol: str) -> str:
        return f"127.0.0.1:{self.ports[protocol]}"


def secure_overrides(tmp: Path, ports: dict[str, int], ca: CertificateAuthority, server: Issued) -> dict[str, str]:
    jaas = tmp / "jaas.conf"
    jaas.write_text(JAAS_FILE % "\n".join(f'    user_{u}="{p}"' for u, p in PLAIN_USERS.items()))
    return {
        "listeners": ",".join(f"{p}://127.0.0.1:{ports[p]}" for p in PROTOCOLS),
        "ssl.keystore.location": str(server.p12),
        "ssl.keystore.password": PASSWORD,
        "ssl.keystore.type": "PKCS12",
        "ssl.truststore.location": str(ca.p12),
        "ssl.truststore.password": PASSWORD,
        "ssl.truststore.type": "PKCS12",
        "ssl.client.auth": "requested",
        "java.security.auth.login.config": str(jaas),
        "connection.failed.authentication.delay.ms": "20",
    }


def add_scram_users(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    admin = AdminClient({"bootstrap.servers": bootstrap})
    mechanisms = {"SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256, "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512}
    upserts = [UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanisms[m], 4096), password.encode()) for m, (user, password) in SCRAM_USERS.items()]
    for future in admin.alter_user_scram_credentials(upserts).values():
        future.result(timeout=30)


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    tmp = tmp_path_factory.mktemp("secure")
    ca = CertificateAuthority(tmp / "pki")
    server = ca.issue("broker", server=True)
    client = ca.issue("alice", ou="eng")
    ports = {p: free_port() for p in PROTOCOLS}
    process = BrokerProcess(tmp / "data", secure_overrides(tmp, ports, ca, server))
    process.port = ports["PLAINTEXT"]
    process.start()
    add_scram_users(process.bootstrap)
    yield SecureBroker(process, ports, ca, server, client)
    process.stop()
