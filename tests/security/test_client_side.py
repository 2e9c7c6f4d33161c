"""The client side of SASL and the settings fastlog's own connections take
(`security/client_side.py`): its SCRAM exchange against the broker's SCRAM server, in process,
and the settings it refuses."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fastlog.config import ConfigError
from fastlog.security.client_side import ClientSecurity, SaslFailed, sasl_exchange
from fastlog.security.sasl import AuthenticationFailed, PlainServer, ScramServer
from fastlog.security.scram import credential_from_salted_password, new_salt, salted_password


def scram_server(mechanism: str, user: str, password: str) -> ScramServer:
    salt = new_salt()
    credential = credential_from_salted_password(mechanism, salt, salted_password(mechanism, password, salt, 4096), 4096)
    store = SimpleNamespace(get=lambda u, m: credential if (u, m) == (user, mechanism) else None)
    return ScramServer(mechanism, SimpleNamespace(scram=store))


def run(exchange, server) -> str:
    """Plays the exchange against the server; the principal it authenticated."""
    token, principal = next(exchange), None
    while True:
        answer, principal = server.step(token)
        try:
            token = exchange.send(answer)
        except StopIteration:
            return principal


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_logs_in_and_checks_the_server(mechanism: str) -> None:
    assert run(sasl_exchange(mechanism, "al,ice=", "pw"), scram_server(mechanism, "al,ice=", "pw")) == "al,ice="
    with pytest.raises(AuthenticationFailed):
        run(sasl_exchange(mechanism, "alice", "wrong"), scram_server(mechanism, "alice", "pw"))


def test_a_server_that_does_not_hold_the_credential_is_caught() -> None:
    exchange = sasl_exchange("SCRAM-SHA-256", "alice", "pw")
    server = scram_server("SCRAM-SHA-256", "alice", "pw")
    server_first, _ = server.step(next(exchange))
    exchange.send(server_first)
    with pytest.raises(SaslFailed, match="signature"):
        exchange.send(b"v=" + b"A" * 44)
    with pytest.raises(SaslFailed, match="server-first"):
        bad = sasl_exchange("SCRAM-SHA-256", "alice", "pw")
        next(bad)
        bad.send(b"r=not-my-nonce,s=AAAA,i=4096")


def test_plain() -> None:
    assert run(sasl_exchange("PLAIN", "alice", "pw"), PlainServer({"alice": "pw"})) == "alice"


@pytest.mark.parametrize("settings, message", [
    ({"security.protocol": "GSSAPI_ONLY"}, "security.protocol"),
    ({"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER", "sasl.username": "a", "sasl.password": "b"}, "sasl.mechanism"),
    ({"security.protocol": "SASL_PLAINTEXT", "sasl.jaas.config": "Module required nothing=\"x\";"}, "username"),
    ({"security.protocol": "SSL", "ssl.ca.location": "/nonexistent"}, "TLS settings"),
])
def test_bad_settings(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ClientSecurity.from_settings(settings)


def test_settings_read() -> None:
    jaas = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="bob" password="p w";'
    security = ClientSecurity.from_settings({"security.protocol": "sasl_plaintext", "sasl.mechanism": "scram-sha-512", "sasl.jaas.config": jaas})
    assert (security.protocol, security.mechanism, security.username, security.password, security.tls) == ("SASL_PLAINTEXT", "SCRAM-SHA-512", "bob", "p w", None)
    assert ClientSecurity.from_settings({}).protocol == "PLAINTEXT"


@pytest.mark.parametrize("protocol, refused", [("SASL_SSL", True), ("SASL_PLAINTEXT", True), ("SSL", False), ("PLAINTEXT", False)])
def test_the_quorum_speaks_plaintext_or_ssl(protocol: str, refused: bool) -> None:
    from fastlog.config import BrokerConfig

    settings = {"node.id": "1", "process.roles": "broker,controller", "controller.quorum.voters": "1@127.0.0.1:9093,2@127.0.0.1:9094",
                "listeners": "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
                "listener.security.protocol.map": f"PLAINTEXT:PLAINTEXT,CONTROLLER:{protocol}"}
    if refused:
        with pytest.raises(ConfigError, match="PLAINTEXT or SSL"):
            BrokerConfig(settings)
    else:
        assert BrokerConfig(settings).controller_protocol == protocol


def test_outgoing_tls_follows_a_renewed_keystore(tmp_path) -> None:
    """The context of the broker's own outgoing connections (followers, quorum peers) is built
    again when the keystore file changes; a file that does not load keeps the previous one."""
    import os

    from fastlog.config import BrokerConfig
    from fastlog.security.tls import ListenerTls
    from tests.security.certs import PASSWORD, CertificateAuthority

    ca = CertificateAuthority(tmp_path / "pki")
    keystore = tmp_path / "broker.p12"
    keystore.write_bytes(ca.issue("broker", server=True).p12.read_bytes())
    config = BrokerConfig({"listeners": "SSL://127.0.0.1:9093", "ssl.keystore.location": str(keystore), "ssl.keystore.password": PASSWORD,
                           "ssl.keystore.type": "PKCS12", "ssl.truststore.location": str(ca.pem), "ssl.truststore.type": "PEM"})
    tls = ListenerTls(config, "SSL")
    first = tls.current_client()
    assert tls.current_client() is first  # unchanged files: the same context
    keystore.write_bytes(ca.issue("broker-renewed", server=True).p12.read_bytes())
    os.utime(keystore, ns=(0, 1_000_000_000))
    renewed = tls.current_client()
    assert renewed is not first
    keystore.write_bytes(b"not a keystore")
    assert tls.current_client() is renewed
