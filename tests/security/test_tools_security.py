"""fastlog's own tools on secured listeners (`--command-config FILE`, Kafka's client settings):
SASL_SSL with PLAIN and with SCRAM, SSL with a client certificate, and what a wrong password,
an untrusted broker certificate or a bad settings file do (exit 1, one line saying why)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.security.certs import PASSWORD
from tests.security.conftest import PLAIN_USERS, SCRAM_USERS, SecureBroker


def fastlog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastlog", *args], capture_output=True, text=True, timeout=60)


def settings_file(tmp_path: Path, lines: dict[str, str]) -> str:
    path = tmp_path / "client.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return str(path)


def plain_jaas(user: str, password: str) -> str:
    return f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{user}" password="{password}";'


def cases(broker: SecureBroker) -> dict[str, tuple[str, dict[str, str]]]:
    user, password = SCRAM_USERS["SCRAM-SHA-512"]
    return {
        "sasl_ssl_plain_pkcs12_truststore": ("SASL_SSL", {
            "security.protocol": "SASL_SSL", "ssl.truststore.location": str(broker.ca.p12), "ssl.truststore.password": PASSWORD,
            "ssl.truststore.type": "PKCS12", "sasl.mechanism": "PLAIN", "sasl.jaas.config": plain_jaas("admin", PLAIN_USERS["admin"]),
        }),
        "sasl_ssl_scram_pem_ca": ("SASL_SSL", {
            "security.protocol": "SASL_SSL", "ssl.ca.location": str(broker.ca.pem), "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user, "sasl.password": password,
        }),
        "sasl_plaintext_scram": ("SASL_PLAINTEXT", {
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.jaas.config": f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{password}";',
        }),
        "ssl_client_certificate": ("SSL", {
            "security.protocol": "SSL", "ssl.truststore.location": str(broker.ca.pem), "ssl.keystore.location": str(broker.client.p12),
            "ssl.keystore.password": PASSWORD,
        }),
    }


@pytest.mark.parametrize("case", ["sasl_ssl_plain_pkcs12_truststore", "sasl_ssl_scram_pem_ca", "sasl_plaintext_scram", "ssl_client_certificate"])
def test_tools_work_over_secured_listeners(secure_broker: SecureBroker, tmp_path: Path, case: str) -> None:
    protocol, lines = cases(secure_broker)[case]
    topic = f"tools-{case.replace('_', '-')}"
    config = settings_file(tmp_path, lines)
    common = ["--bootstrap-server", secure_broker.address(protocol), "--command-config", config]
    created = fastlog("topics", "create", "--topic", topic, "--partitions", "2", *common)
    assert created.returncode == 0, created.stderr
    listed = fastlog("topics", "list", *common)
    assert listed.returncode == 0, listed.stderr
    assert topic in listed.stdout


def test_a_wrong_password_is_reported(secure_broker: SecureBroker, tmp_path: Path) -> None:
    config = settings_file(tmp_path, {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.jaas.config": plain_jaas("admin", "wrong")})
    done = fastlog("topics", "list", "--bootstrap-server", secure_broker.address("SASL_PLAINTEXT"), "--command-config", config)
    assert done.returncode == 1
    assert "SASL_AUTHENTICATION_FAILED" in done.stderr, done.stderr


def test_a_wrong_scram_password_is_reported(secure_broker: SecureBroker, tmp_path: Path) -> None:
    user, _ = SCRAM_USERS["SCRAM-SHA-256"]
    config = settings_file(tmp_path, {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user, "sasl.password": "nope"})
    done = fastlog("topics", "list", "--bootstrap-server", secure_broker.address("SASL_PLAINTEXT"), "--command-config", config)
    assert done.returncode == 1
    assert "SASL_AUTHENTICATION_FAILED" in done.stderr, done.stderr


def test_an_untrusted_broker_certificate_is_refused(secure_broker: SecureBroker, tmp_path: Path) -> None:
    config = settings_file(tmp_path, {"security.protocol": "SSL"})  # the system's CAs: not the test CA
    done = fastlog("topics", "list", "--bootstrap-server", secure_broker.address("SSL"), "--command-config", config)
    assert done.returncode == 1
    assert "TLS" in done.stderr and "certificate" in done.stderr.lower(), done.stderr


@pytest.mark.parametrize("lines, message", [
    ({"security.protocol": "KERBEROS"}, "security.protocol"),
    ({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "GSSAPI", "sasl.username": "a", "sasl.password": "b"}, "sasl.mechanism"),
    ({"security.protocol": "SASL_PLAINTEXT"}, "sasl.jaas.config"),
    ({"security.protocol": "SSL", "ssl.truststore.location": "/nonexistent.pem"}, "TLS settings"),
])
def test_bad_settings_are_refused_before_connecting(tmp_path: Path, lines: dict[str, str], message: str) -> None:
    done = fastlog("topics", "list", "--bootstrap-server", "127.0.0.1:1", "--command-config", settings_file(tmp_path, lines))
    assert done.returncode == 1
    assert message in done.stderr, done.stderr


def test_the_built_in_schema_registry_reaches_a_sasl_listener_under_acls(tmp_path: Path) -> None:
    """No PLAINTEXT listener: the registry logs in over SASL_PLAINTEXT as a super user
    (`schema.registry.kafkastore.*`), with the authorizer on, and keeps schemas."""
    import httpx

    from tests.conftest import free_port
    from tests.schema_registry.conftest import RegistryBroker

    port = free_port()
    jaas = tmp_path / "jaas.conf"
    jaas.write_text('KafkaServer {\n  org.apache.kafka.common.security.plain.PlainLoginModule required\n'
                    '    user_registry="registry-secret";\n};\n')
    broker = RegistryBroker(
        tmp_path / "data", **{
            "listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}", "sasl.enabled.mechanisms": "PLAIN", "java.security.auth.login.config": str(jaas),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "super.users": "User:registry",
            "schema.registry.kafkastore.security.protocol": "SASL_PLAINTEXT", "schema.registry.kafkastore.sasl.mechanism": "PLAIN",
            "schema.registry.kafkastore.sasl.jaas.config": plain_jaas("registry", "registry-secret"),
        })
    broker.port = port
    broker.start()
    try:
        schema = {"schema": '{"type": "string"}'}
        created = httpx.post(f"{broker.url}/subjects/orders-value/versions", json=schema, timeout=10)
        assert created.status_code == 200, created.text
        assert httpx.get(f"{broker.url}/subjects", timeout=10).json() == ["orders-value"]
    finally:
        broker.stop()
