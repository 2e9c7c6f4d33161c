"""SASL and TLS at the byte level: what a client that does it wrong gets (Kafka's error, a
closed connection), what the broker keeps on disk, re-authentication, certificate reload, and
a bounded fuzz of both handshakes. After each refusal the broker still serves others."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import socket
import ssl
import struct
import time
from pathlib import Path

import pytest

from fastlog import protocol
from fastlog.protocol import ErrorCode
from tests.broker.wire import WireClient
from tests.conftest import BrokerProcess, free_port
from tests.security.certs import PASSWORD, CertificateAuthority
from tests.security.conftest import PLAIN_USERS, SCRAM_USERS, SecureBroker, add_scram_users, secure_overrides

FUZZ_CASES = 300


def still_serves(broker: SecureBroker) -> None:
    with WireClient(broker.address("PLAINTEXT")) as client:
        assert client.request(protocol.ApiVersionsRequest(), 0).error_code == 0


def handshake(client: WireClient, mechanism: str, version: int = 1):
    return client.request(protocol.SaslHandshakeRequest(mechanism=mechanism), version)


def plain_token(user: str, password: str) -> bytes:
    return b"\0" + user.encode() + b"\0" + password.encode()


def test_a_request_before_authentication_closes_the_connection(secure_broker: SecureBroker) -> None:
    with WireClient(secure_broker.address("SASL_PLAINTEXT")) as client:
        assert client.request(protocol.ApiVersionsRequest(), 0).error_code == 0  # allowed first
        client.send_frame(client.encode(protocol.MetadataRequest(topics=None), 1))
        assert client.recv_frame() is None
    assert "unexpected Metadata request during SASL authentication" in secure_broker.process.log_text()
    still_serves(secure_broker)


def test_unknown_mechanism_is_answered_then_closed(secure_broker: SecureBroker) -> None:
    with WireClient(secure_broker.address("SASL_PLAINTEXT")) as client:
        response = handshake(client, "GSSAPI")
        assert response.error_code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
        assert set(response.mechanisms) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
        assert client.recv_frame() is None
    still_serves(secure_broker)


@pytest.mark.parametrize("mechanism, token", [
    ("PLAIN", b"garbage"), ("PLAIN", b"\0\0"), ("PLAIN", plain_token("alice", "wrong")), ("PLAIN", b"x\0alice\0alice-secret"),
    ("SCRAM-SHA-256", b"\xff\xfe"), ("SCRAM-SHA-256", b"n,,n=bob"), ("SCRAM-SHA-512", b"p=tls-unique,,n=carol,r=abc"),
])
def test_bad_sasl_tokens_get_authentication_failed(secure_broker: SecureBroker, mechanism: str, token: bytes) -> None:
    with WireClient(secure_broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client, mechanism).error_code == 0
        response = client.request(protocol.SaslAuthenticateRequest(auth_bytes=token), 1)
        assert response.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert response.error_message.startswith(("Authentication failed", "Invalid SASL/PLAIN response"))
        assert client.recv_frame() is None
    still_serves(secure_broker)


def test_an_oversized_frame_before_authentication_is_not_read(secure_broker: SecureBroker) -> None:
    with WireClient(secure_broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client, "PLAIN").error_code == 0
        client.sock.sendall(struct.pack(">i", 600_000))  # over sasl.server.max.receive.size (512 KiB)
        assert client.recv_frame() is None
    still_serves(secure_broker)


def test_plain_v1_then_requests_flow(secure_broker: SecureBroker) -> None:
    with WireClient(secure_broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client, "PLAIN").error_code == 0
        response = client.request(protocol.SaslAuthenticateRequest(auth_bytes=plain_token("alice", PLAIN_USERS["alice"])), 2)
        assert response.error_code == 0 and response.session_lifetime_ms == 0
        assert client.request(protocol.MetadataRequest(topics=None), 1).brokers[0].port == secure_broker.ports["SASL_PLAINTEXT"]
        again = client.request(protocol.SaslHandshakeRequest(mechanism="PLAIN"), 1)  # no re-authentication configured
        assert again.error_code == ErrorCode.ILLEGAL_SASL_STATE


def test_v0_handshake_takes_bare_tokens(secure_broker: SecureBroker) -> None:
    """SaslHandshake v0 (old clients): the token is a bare size-prefixed frame, so is the reply."""
    with WireClient(secure_broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client, "PLAIN", version=0).error_code == 0
        client.send_frame(plain_token("admin", PLAIN_USERS["admin"]))
        assert client.recv_frame() == b""
        assert client.request(protocol.ApiVersionsRequest(), 0).error_code == 0
    with WireClient(secure_broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client, "PLAIN", version=0).error_code == 0
        client.send_frame(plain_token("admin", "wrong"))
        assert client.recv_frame() is None  # Kafka closes without an answer
    still_serves(secure_broker)


def test_sasl_requests_on_a_plaintext_listener_are_illegal(secure_broker: SecureBroker) -> None:
    with WireClient(secure_broker.address("PLAINTEXT")) as client:
        assert handshake(client, "PLAIN").error_code == ErrorCode.ILLEGAL_SASL_STATE
        response = client.request(protocol.SaslAuthenticateRequest(auth_bytes=b"x"), 1)
        assert response.error_code == ErrorCode.ILLEGAL_SASL_STATE


def test_plaintext_to_a_tls_listener_and_tls_to_a_plaintext_one(secure_broker: SecureBroker) -> None:
    with WireClient(secure_broker.address("SSL")) as client:
        client.send_frame(client.encode(protocol.ApiVersionsRequest(), 0))
        assert client.recv_frame() is None
    context = ssl.create_default_context(cafile=str(secure_broker.ca.pem))
    with socket.create_connection(("127.0.0.1", secure_broker.ports["PLAINTEXT"]), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            context.wrap_socket(raw, server_hostname="127.0.0.1").do_handshake()
    assert "a TLS handshake on a listener without TLS" in secure_broker.process.log_text()
    still_serves(secure_broker)


def test_a_certificate_from_another_ca_is_refused(secure_broker: SecureBroker, tmp_path: Path) -> None:
    stranger = CertificateAuthority(tmp_path / "other", name="stranger CA").issue("mallory")
    context = ssl.create_default_context(cafile=str(secure_broker.ca.pem))
    context.load_cert_chain(str(stranger.cert), str(stranger.key))
    request = encode_request(protocol.ApiVersionsRequest(), 0)
    with socket.create_connection(("127.0.0.1", secure_broker.ports["SSL"]), timeout=10) as raw:
        try:  # TLS 1.3: the client learns of the refusal once it reads
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(struct.pack(">i", len(request)) + request)
                assert tls.recv(4) == b""
        except (ssl.SSLError, ConnectionError):
            pass
    assert "TLS handshake failed on SSL" in secure_broker.process.log_text()
    still_serves(secure_broker)


def test_credentials_are_not_stored_in_clear_text(secure_broker: SecureBroker) -> None:
    stored = secure_broker.process.data_dir / "scram-credentials.json"
    assert stored.exists() and stored.stat().st_mode & 0o077 == 0  # the broker's user only
    secrets = [password.encode() for _, password in SCRAM_USERS.values()]
    for path in secure_broker.process.data_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(s in content for s in secrets), f"a password in clear in {path}"
            for user, password in SCRAM_USERS.values():  # nor a bare hash of it
                assert hashlib.sha256(password.encode()).hexdigest().encode() not in content


def test_scram_credentials_api_errors(secure_broker: SecureBroker) -> None:
    R = protocol.AlterUserScramCredentialsRequest
    with WireClient(secure_broker.address("PLAINTEXT")) as client:
        described = client.request(protocol.DescribeUserScramCredentialsRequest(users=[
            protocol.DescribeUserScramCredentialsRequest.UserName(name="nobody"),
            protocol.DescribeUserScramCredentialsRequest.UserName(name="bob"),
            protocol.DescribeUserScramCredentialsRequest.UserName(name="bob"),
        ]), 0)
        codes = {r.user: r.error_code for r in described.results}
        assert codes == {"nobody": ErrorCode.RESOURCE_NOT_FOUND, "bob": ErrorCode.DUPLICATE_RESOURCE}
        altered = client.request(R(
            deletions=[R.ScramCredentialDeletion(name="ghost", mechanism=1), R.ScramCredentialDeletion(name="x", mechanism=9)],
            upsertions=[
                R.ScramCredentialUpsertion(name="", mechanism=1, iterations=4096, salt=b"s" * 16, salted_password=b"p" * 32),
                R.ScramCredentialUpsertion(name="few", mechanism=2, iterations=10, salt=b"s" * 16, salted_password=b"p" * 64),
                R.ScramCredentialUpsertion(name="twice", mechanism=1, iterations=4096, salt=b"s" * 16, salted_password=b"p" * 32),
                R.ScramCredentialUpsertion(name="twice", mechanism=1, iterations=4096, salt=b"s" * 16, salted_password=b"p" * 32),
            ],
        ), 0)
        codes = {r.user: r.error_code for r in altered.results}
        assert codes == {
            "ghost": ErrorCode.RESOURCE_NOT_FOUND, "x": ErrorCode.UNSUPPORTED_SASL_MECHANISM, "": ErrorCode.UNACCEPTABLE_CREDENTIAL,
            "few": ErrorCode.UNACCEPTABLE_CREDENTIAL, "twice": ErrorCode.DUPLICATE_RESOURCE,
        }
        listed = client.request(protocol.DescribeUserScramCredentialsRequest(users=None), 0)
        assert {r.user for r in listed.results} == {"bob", "carol"}  # nothing of the refused ones was stored


def encode_request(body, version: int) -> bytes:
    header = protocol.RequestHeader(request_api_key=body.API_KEY, request_api_version=version, correlation_id=1, client_id="fuzz")
    return protocol.encode_request(header, body).getvalue()


def test_handshake_fuzz(secure_broker: SecureBroker) -> None:
    """Mutated SaslHandshake/SaslAuthenticate frames and random bytes into the SASL and TLS
    listeners: each connection gets an answer or is closed, and the broker stays up."""
    rng = random.Random(17)
    seeds = [encode_request(protocol.SaslHandshakeRequest(mechanism="SCRAM-SHA-256"), 1),
             encode_request(protocol.SaslAuthenticateRequest(auth_bytes=b"n,,n=bob,r=abcdef"), 2)]
    deadline = time.monotonic() + 120
    for case in range(FUZZ_CASES):
        if time.monotonic() > deadline:
            break
        listener = rng.choice(["SASL_PLAINTEXT", "SASL_SSL", "SSL"])
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        payload = struct.pack(">i", len(data)) + bytes(data) if rng.random() < 0.7 else os.urandom(rng.randint(1, 300))
        with socket.create_connection(("127.0.0.1", secure_broker.ports[listener]), timeout=5) as raw:
            if listener == "SASL_PLAINTEXT" and rng.random() < 0.5:  # a valid handshake first
                raw.sendall(struct.pack(">i", len(seeds[0])) + seeds[0])
            raw.sendall(payload)
            raw.shutdown(socket.SHUT_WR)
            try:
                while raw.recv(65536):
                    pass
            except (ConnectionError, socket.timeout):
                pass
    still_serves(secure_broker)
    assert secure_broker.process.process.poll() is None


@pytest.fixture
def reauth_broker(tmp_path: Path):
    ca = CertificateAuthority(tmp_path / "pki")
    server = ca.issue("broker", server=True)
    ports = {p: free_port() for p in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")}
    overrides = {**secure_overrides(tmp_path, ports, ca, server), "connections.max.reauth.ms": "1500"}
    process = BrokerProcess(tmp_path / "data", overrides)
    process.port = ports["PLAINTEXT"]
    process.start()
    add_scram_users(process.bootstrap)
    yield SecureBroker(process, ports, ca, server, ca.issue("alice", ou="eng"))
    process.stop()


def test_session_expires_without_reauthentication(reauth_broker: SecureBroker) -> None:
    with WireClient(reauth_broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client, "PLAIN").error_code == 0
        response = client.request(protocol.SaslAuthenticateRequest(auth_bytes=plain_token("alice", PLAIN_USERS["alice"])), 1)
        assert response.error_code == 0 and response.session_lifetime_ms == 1500
        assert client.request(protocol.ApiVersionsRequest(), 0).error_code == 0
        # Re-authentication on the same connection, same principal:
        assert handshake(client, "PLAIN").error_code == 0
        assert client.request(protocol.SaslAuthenticateRequest(auth_bytes=plain_token("alice", PLAIN_USERS["alice"])), 1).error_code == 0
        time.sleep(1.7)
        client.send_frame(client.encode(protocol.ApiVersionsRequest(), 0))
        assert client.recv_frame() is None
    assert "ended (connections.max.reauth.ms=1500) without re-authentication" in reauth_broker.process.log_text()


def test_librdkafka_reauthenticates(reauth_broker: SecureBroker) -> None:
    from confluent_kafka import Producer

    user, password = SCRAM_USERS["SCRAM-SHA-256"]
    errors: list = []
    producer = Producer({"bootstrap.servers": reauth_broker.address("SASL_SSL"), "security.protocol": "SASL_SSL",
                         "ssl.ca.location": str(reauth_broker.ca.pem), "sasl.mechanism": "SCRAM-SHA-256",
                         "sasl.username": user, "sasl.password": password, "error_cb": errors.append})
    delivered: list = []
    end = time.monotonic() + 5  # over three session lifetimes
    while time.monotonic() < end:
        producer.produce("reauth", b"x", on_delivery=lambda err, msg: delivered.append(err))
        producer.poll(0.1)
    assert producer.flush(15) == 0
    assert delivered and all(err is None for err in delivered), delivered[:3]
    assert "reauthentication_expired" not in reauth_broker.process.log_text()


def test_certificates_reload_without_restart(reauth_broker: SecureBroker) -> None:
    def served_subject() -> str:
        context = ssl.create_default_context(cafile=str(reauth_broker.ca.pem))
        with socket.create_connection(("127.0.0.1", reauth_broker.ports["SSL"]), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return dict(item[0] for item in tls.getpeercert()["subject"])["commonName"]

    assert served_subject() == "broker"
    renewed = reauth_broker.ca.issue("broker-renewed", server=True)
    keystore = Path(reauth_broker.process.overrides["ssl.keystore.location"])
    shutil.copyfile(renewed.p12, keystore.with_suffix(".new"))
    os.replace(keystore.with_suffix(".new"), keystore)
    deadline = time.monotonic() + 10
    while served_subject() != "broker-renewed":
        assert time.monotonic() < deadline, "the renewed certificate was not served"
        time.sleep(0.3)
    assert "TLS certificates reloaded" in reauth_broker.process.log_text()
    assert PASSWORD  # the keystore's password is unchanged, as a renewal keeps it


@pytest.mark.parametrize("problem", ["missing keystore", "wrong keystore password", "JKS keystore", "unreadable JAAS", "corrupt credentials"])
def test_bad_security_files_stop_the_start_with_a_message(tmp_path: Path, problem: str) -> None:
    """A broker that cannot read its key, its JAAS config or its SCRAM credentials refuses to
    start with exit code 2 and a line naming the problem (not a traceback)."""
    import subprocess
    import sys

    ca = CertificateAuthority(tmp_path / "pki")
    server = ca.issue("broker", server=True)
    ports = {p: free_port() for p in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")}
    overrides = {**secure_overrides(tmp_path, ports, ca, server), "log.dirs": str(tmp_path / "data"), "metrics.port": "-1", "schema.registry.listeners": "-1"}
    expected = {"missing keystore": "do not load", "wrong keystore password": "cannot read it as PKCS12", "JKS keystore": "JKS keystore",
                "unreadable JAAS": "cannot read the JAAS entry", "corrupt credentials": "does not hold readable SCRAM credentials"}[problem]
    if problem == "missing keystore":
        overrides["ssl.keystore.location"] = str(tmp_path / "nowhere.p12")
    elif problem == "wrong keystore password":
        overrides["ssl.keystore.password"] = "wrong"
    elif problem == "JKS keystore":
        (tmp_path / "store.jks").write_bytes(b"\xfe\xed\xfe\xed" + os.urandom(64))
        overrides["ssl.keystore.location"] = str(tmp_path / "store.jks")
    elif problem == "unreadable JAAS":
        (tmp_path / "jaas.conf").write_text("KafkaServer { this is not a login module };")
    else:
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "scram-credentials.json").write_text('{"users": {"bob": {"SCRAM-SHA-256": {"salt": ')
    args = [sys.executable, "-m", "fastlog", "serve"] + [a for k, v in overrides.items() for a in ("--override", f"{k}={v}")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "configuration error" in done.stderr and expected in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
