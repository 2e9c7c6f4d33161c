"""SASL/OAUTHBEARER (KIP-255, KIP-768): JWTs checked against a JWKS.

A broker with PLAINTEXT, SASL_PLAINTEXT and SASL_SSL listeners offers PLAIN and OAUTHBEARER;
its JWKS is a `file:` URL holding an RSA, an RSA-PSS, an EC and an Ed25519 key, and it expects
one of two audiences and one issuer. Real clients (confluent-kafka with `oauth_cb`,
kafka-python and aiokafka with token providers, and the old versions from
`bash scripts/clients/python.sh` through secure_client.py) produce and consume with tokens.
At the byte level: every kind of bad token gets Kafka's `{"status":"invalid_token"}`
challenge, then SASL_AUTHENTICATION_FAILED once the client answers `\\x01`; each refusal is
counted in fastlog_authentications_total, and the broker serves others after it.

Other brokers: one whose JWKS is served over http (a key added there is fetched when a token
names it; per-listener mechanisms; `sasl.oauthbearer.sub.claim.name`), one with the
StandardAuthorizer (ACLs see the token's subject), and one with `connections.max.reauth.ms`
(the session lasts the shorter of that and the token's life; librdkafka re-authenticates).
OAUTHBEARER without a JWKS URL stops the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, AdminClient, NewTopic, ResourcePatternType, ResourceType

from fastlog import protocol
from fastlog.protocol import ErrorCode
from tests.broker.wire import WireClient
from tests.clients.test_python_clients import VENVS
from tests.conftest import BrokerProcess, free_port
from tests.security.certs import CertificateAuthority
from tests.security.conftest import secure_overrides
from tests.security.oauth import (
    DROP,
    Issuer,
    JwksServer,
    SigningKey,
    TokenEndpoint,
    client_first_message,
    ec_key,
    ed25519_key,
    hmac_token,
    rsa_key,
    unsigned_token,
    write_jwks,
)

pytestmark = pytest.mark.timeout(60)

MECHANISM = "OAUTHBEARER"
ISSUER = "https://idp.fastlog.test/realms/kafka"
AUDIENCE = "fastlog-brokers"
OTHER_AUDIENCE = "fastlog-tools"  # the broker accepts either
TIMEOUT = 15.0  # the most any one client call may take
RECORDS = 5
LISTENERS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")  # secure_overrides wants all four
SCRIPT = Path(__file__).with_name("secure_client.py")
BOUNDED = {"socket.timeout.ms": 10_000, "socket.connection.setup.timeout.ms": 10_000}


# -- brokers -----------------------------------------------------------------------------------------


@dataclass
class OAuthBroker:
    process: BrokerProcess
    ports: dict[str, int]
    ca: CertificateAuthority
    idp: Issuer
    keys: dict[str, SigningKey]  # by algorithm: RS256, PS256, ES256, EdDSA
    jwks_path: Path
    metrics_port: int

    def address(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    def log_tail(self) -> str:
        return self.process.log_text()[-3000:]


def oauth_settings(jwks_url: str) -> dict[str, str]:
    return {
        "sasl.oauthbearer.jwks.endpoint.url": jwks_url,
        "sasl.oauthbearer.expected.audience": f"{AUDIENCE},{OTHER_AUDIENCE}",
        "sasl.oauthbearer.expected.issuer": ISSUER,
        "connection.failed.authentication.delay.ms": "20",
        "group.initial.rebalance.delay.ms": "0",
    }


def start_broker(tmp: Path, overrides: dict[str, str], plaintext_port: int) -> BrokerProcess:
    process = BrokerProcess(tmp / "data", overrides)
    process.port = plaintext_port
    return process.start()


@pytest.fixture(scope="module")
def oauth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthBroker]:
    tmp = tmp_path_factory.mktemp("oauth")
    ca = CertificateAuthority(tmp / "pki")
    server = ca.issue("broker", server=True)
    keys = {"RS256": rsa_key("rsa-1"), "PS256": rsa_key("pss-1", "PS256"), "ES256": ec_key("ec-1"), "EdDSA": ed25519_key("ed-1")}
    jwks_path = tmp / "jwks.json"
    write_jwks(jwks_path, *keys.values())
    ports = {p: free_port() for p in LISTENERS}
    metrics_port = free_port()
    overrides = {
        **secure_overrides(tmp, ports, ca, server),
        **oauth_settings(jwks_path.as_uri()),
        "sasl.enabled.mechanisms": f"PLAIN,{MECHANISM}",
        "metrics.port": str(metrics_port),
    }
    process = start_broker(tmp, overrides, ports["PLAINTEXT"])
    try:
        yield OAuthBroker(process, ports, ca, Issuer(ISSUER, AUDIENCE, [keys["RS256"]]), keys, jwks_path, metrics_port)
    finally:
        process.stop()


# -- the SASL exchange at the byte level ---------------------------------------------------------------


def handshake(client: WireClient, mechanism: str = MECHANISM, version: int = 1) -> Any:
    return client.request(protocol.SaslHandshakeRequest(mechanism=mechanism), version)


def authenticate(client: WireClient, auth_bytes: bytes, version: int = 1) -> Any:
    return client.request(protocol.SaslAuthenticateRequest(auth_bytes=auth_bytes), version)


def accepted(broker: OAuthBroker, message: bytes, then_request: bool = True) -> Any:
    """Authenticates with `message` on SASL_PLAINTEXT, asserting success; the response."""
    with WireClient(broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client).error_code == 0
        response = authenticate(client, message)
        assert response.error_code == 0, f"{response.error_message}\n{broker.log_tail()}"
        assert response.auth_bytes == b""
        if then_request:  # authenticated: any request is served now
            assert client.request(protocol.MetadataRequest(topics=None), 1).brokers
    return response


def refused_with_challenge(broker: OAuthBroker, message: bytes) -> Any:
    """Kafka's refusal of a token: the challenge, `\\x01`, SASL_AUTHENTICATION_FAILED, closed."""
    with WireClient(broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client).error_code == 0
        challenge = authenticate(client, message)
        assert challenge.error_code == 0, f"expected the invalid_token challenge, got {challenge}"
        assert json.loads(challenge.auth_bytes)["status"] == "invalid_token", challenge.auth_bytes
        final = authenticate(client, b"\x01")
        assert final.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED, final
        assert client.recv_frame() is None
    return final


def refused_somehow(broker: OAuthBroker, message: bytes) -> str:
    """A refusal Kafka answers without a challenge (a malformed message, an authzid other than
    the subject); fastlog may challenge first. Either way the exchange ends in
    SASL_AUTHENTICATION_FAILED and a closed connection: which path it took."""
    with WireClient(broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client).error_code == 0
        response = authenticate(client, message)
        path = "direct"
        if response.error_code == 0:
            assert json.loads(response.auth_bytes)["status"] == "invalid_token", response
            response, path = authenticate(client, b"\x01"), "challenge"
        assert response.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED, response
        assert client.recv_frame() is None
    return path


def authentications(broker: OAuthBroker, listener: str, result: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.metrics_port}/metrics", timeout=TIMEOUT) as answer:
        text = answer.read().decode()
    for labels, value in re.findall(r"^fastlog_authentications_total\{([^}]*)\} (\S+)$", text, re.MULTILINE):
        if dict(re.findall(r'(\w+)="([^"]*)"', labels)) == {"listener": listener, "mechanism": MECHANISM, "result": result}:
            return float(value)
    return 0.0


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def serves_others(broker: OAuthBroker) -> None:
    with WireClient(broker.address("PLAINTEXT")) as client:
        assert client.request(protocol.ApiVersionsRequest(), 0).error_code == 0
    accepted(broker, client_first_message(broker.idp.token()))


def test_handshake_offers_oauthbearer(oauth_broker: OAuthBroker) -> None:
    with WireClient(oauth_broker.address("SASL_PLAINTEXT")) as client:
        response = handshake(client, "GSSAPI")
        assert response.error_code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
        assert set(response.mechanisms) == {"PLAIN", MECHANISM}
    with WireClient(oauth_broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client).error_code == 0


@pytest.mark.parametrize("case", ["RS256", "PS256", "ES256", "EdDSA", "second audience", "audience list", "within clock skew",
                                  "authzid equal to sub", "extensions", "scope list", "no scope"])
def test_good_tokens_are_accepted(oauth_broker: OAuthBroker, case: str) -> None:
    idp, keys = oauth_broker.idp, oauth_broker.keys
    token, authzid, extensions = idp.token(), "", None
    if case in keys:
        token = idp.token(key=keys[case])
    elif case == "second audience":
        token = idp.token(aud=OTHER_AUDIENCE)
    elif case == "audience list":
        token = idp.token(aud=["some-api", AUDIENCE])
    elif case == "within clock skew":  # expired 10 s ago; sasl.oauthbearer.clock.skew.seconds is 30
        token = idp.token(lifetime=-10)
    elif case == "authzid equal to sub":
        authzid = "alice"
    elif case == "extensions":  # Kafka's default validator accepts any extension
        extensions = {"traceId": "abc123", "tenant": "blue"}
    elif case == "scope list":
        token = idp.token(scope=["kafka.read", "kafka.write"])
    elif case == "no scope":
        token = idp.token(scope=DROP)
    # A token already past its exp has no session left to make requests in (Kafka ends it at once).
    accepted(oauth_broker, client_first_message(token, authzid, extensions), then_request=case != "within clock skew")


def forged(broker: OAuthBroker, case: str) -> str:
    """A token the broker must refuse, by the name of what is wrong with it."""
    idp, rsa = broker.idp, broker.keys["RS256"]
    claims = idp.claims()
    if case == "expired":  # past exp by more than the 30 s clock skew
        return idp.token(lifetime=-120)
    if case == "wrong audience":
        return idp.token(aud="another-service")
    if case == "audience list without ours":
        return idp.token(aud=["another-service", "yet-another"])
    if case == "no audience":
        return idp.token(aud=DROP)
    if case == "wrong issuer":
        return idp.token(iss="https://evil.example/realms/kafka")
    if case == "no issuer":
        return idp.token(iss=DROP)
    if case == "unknown key":  # a known kid, signed by another key
        return rsa_key("stranger").sign(claims, kid=rsa.kid)
    if case == "unknown kid":
        return rsa_key("stranger").sign(claims)
    if case == "alg none":
        return unsigned_token(claims, kid=rsa.kid)
    if case == "HS256 keyed with the public key":  # the algorithm-confusion forgery
        return hmac_token(claims, rsa.public_pem(), kid=rsa.kid)
    if case == "HS256":
        return hmac_token(claims, b"a-shared-secret-of-32-bytes-long", kid="hmac-1")
    if case == "no sub":
        return idp.token(sub=DROP)
    if case == "empty sub":
        return idp.token(sub="")
    if case == "no exp":
        return idp.token(exp=DROP)
    if case == "no iat":  # Kafka's validator requires it (setRequireIssuedAt)
        return idp.token(iat=DROP)
    if case == "not yet valid":  # nbf beyond the clock skew
        return idp.token(nbf=int(time.time()) + 600)
    if case == "tampered payload":  # a valid signature over other claims
        header, _, signature = idp.token(sub="alice").split(".")
        other = idp.token(sub="admin").split(".")[1]
        return f"{header}.{other}.{signature}"
    # Kafka's jose4j picks the key by kid and key type: a signature of another type finds none.
    if case == "EC signature under an RSA key's kid":
        return broker.keys["ES256"].sign(claims, kid=rsa.kid)
    if case == "RSA signature under an EC key's kid":
        return rsa.sign(claims, kid=broker.keys["ES256"].kid)
    if case == "EdDSA signature under an RSA key's kid":
        return broker.keys["EdDSA"].sign(claims, kid=rsa.kid)
    if case == "garbage":
        return "not-a-jwt"
    raise AssertionError(case)


REFUSALS = ["expired", "wrong audience", "audience list without ours", "no audience", "wrong issuer", "no issuer", "unknown key",
            "unknown kid", "alg none", "HS256 keyed with the public key", "HS256", "no sub", "empty sub", "no exp", "no iat",
            "not yet valid", "tampered payload", "EC signature under an RSA key's kid", "RSA signature under an EC key's kid",
            "EdDSA signature under an RSA key's kid", "garbage"]


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_tokens_get_the_challenge_then_authentication_failed(oauth_broker: OAuthBroker, case: str) -> None:
    failed = authentications(oauth_broker, "SASL_PLAINTEXT", "failed")
    refused_with_challenge(oauth_broker, client_first_message(forged(oauth_broker, case)))
    assert wait_until(lambda: authentications(oauth_broker, "SASL_PLAINTEXT", "failed") >= failed + 1), \
        f"the refusal was not counted\n{oauth_broker.log_tail()}"
    assert f"failed authentication with {MECHANISM} on SASL_PLAINTEXT" in oauth_broker.process.log_text()
    serves_others(oauth_broker)


def test_successes_are_counted(oauth_broker: OAuthBroker) -> None:
    succeeded = authentications(oauth_broker, "SASL_PLAINTEXT", "succeeded")
    accepted(oauth_broker, client_first_message(oauth_broker.idp.token()))
    assert wait_until(lambda: authentications(oauth_broker, "SASL_PLAINTEXT", "succeeded") >= succeeded + 1)


@pytest.mark.parametrize("message", [
    b"", b"garbage", b"n,,\x01\x01", b"y,,\x01auth=Bearer TOKEN\x01\x01", b"n,,\x01auth=Basic TOKEN\x01\x01",
    b"n,,\x01auth=BearerTOKEN\x01\x01", b"n,,\x01auth=Bearer TOKEN\x01bad key=x\x01\x01", b"\xff\xfe\x01",
], ids=["empty", "no gs2 header", "no auth", "channel binding flag y", "basic scheme", "no space", "bad extension key", "not utf-8"])
def test_malformed_first_messages_are_refused(oauth_broker: OAuthBroker, message: bytes) -> None:
    refused_somehow(oauth_broker, message.replace(b"TOKEN", oauth_broker.idp.token().encode()))
    serves_others(oauth_broker)


def test_authzid_must_be_the_subject(oauth_broker: OAuthBroker) -> None:
    """Kafka's OAuthBearerSaslServer: an authzid other than the token's principal fails the
    exchange at once ("Client requested an authorization id (...) that is different from the
    token's principal name")."""
    path = refused_somehow(oauth_broker, client_first_message(oauth_broker.idp.token(sub="alice"), authzid="admin"))
    assert path == "direct", "Kafka fails an authzid mismatch without the invalid_token challenge"
    serves_others(oauth_broker)


def test_v0_handshake_takes_bare_tokens(oauth_broker: OAuthBroker) -> None:
    """SaslHandshake v0: the client message and the broker's answers are bare frames; a
    refusal after the `\\x01` is a closed connection."""
    with WireClient(oauth_broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client, version=0).error_code == 0
        client.send_frame(client_first_message(oauth_broker.idp.token()))
        assert client.recv_frame() == b""
        assert client.request(protocol.ApiVersionsRequest(), 0).error_code == 0
    with WireClient(oauth_broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client, version=0).error_code == 0
        client.send_frame(client_first_message(oauth_broker.idp.token(lifetime=-120)))
        assert json.loads(client.recv_frame() or b"{}").get("status") == "invalid_token"
        client.send_frame(b"\x01")
        assert client.recv_frame() is None
    serves_others(oauth_broker)


def test_the_token_bounds_the_session_without_reauth_configured(oauth_broker: OAuthBroker) -> None:
    """connections.max.reauth.ms is 0 here; as Kafka (SaslServerAuthenticator), the token's
    expiry still ends the session: SaslAuthenticate gives its remaining life, and the client
    may re-authenticate on the connection."""
    with WireClient(oauth_broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client).error_code == 0
        response = authenticate(client, client_first_message(oauth_broker.idp.token(lifetime=120)))
        assert response.error_code == 0
        assert 100_000 < response.session_lifetime_ms <= 120_000
        assert handshake(client).error_code == 0
        assert authenticate(client, client_first_message(oauth_broker.idp.token(lifetime=120))).error_code == 0


# -- the JWKS file ---------------------------------------------------------------------------------------


def test_a_key_added_to_the_jwks_file_works_without_restart(oauth_broker: OAuthBroker) -> None:
    rotated = rsa_key("rsa-2")
    token = client_first_message(oauth_broker.idp.token(key=rotated))
    refused_with_challenge(oauth_broker, token)  # not in the JWKS yet
    current = list(oauth_broker.keys.values())
    write_jwks(oauth_broker.jwks_path, *current, rotated)
    try:
        assert wait_until(lambda: try_authenticate(oauth_broker, token), timeout=10, interval=0.3), \
            f"a token signed with the new key was refused\n{oauth_broker.log_tail()}"
        accepted(oauth_broker, client_first_message(oauth_broker.idp.token()))  # the old key still works
        # ... and a key taken out of the file is no longer trusted.
        write_jwks(oauth_broker.jwks_path, *current)
        assert wait_until(lambda: not try_authenticate(oauth_broker, token), timeout=10, interval=0.3), \
            "a token signed with a key removed from the JWKS file was still accepted"
    finally:
        write_jwks(oauth_broker.jwks_path, *current)
        wait_until(lambda: try_authenticate(oauth_broker, client_first_message(oauth_broker.idp.token())), timeout=10)


@pytest.mark.parametrize("broken", ['{"keys": [', "[]", '{"keys": [{"kty": "RSA", "kid": "half"}]}', '{"keys": "none"}'],
                         ids=["not JSON", "not an object", "a key without its numbers", "keys not a list"])
def test_a_broken_jwks_file_does_not_stop_the_broker(oauth_broker: OAuthBroker, broken: str) -> None:
    """A JWKS file rewritten with something other than a JWKS (a rotation gone wrong): logins
    are answered (with the keys read before, or refused), not dropped, and the broker serves
    others; once the file is good again, tokens work."""
    current = list(oauth_broker.keys.values())
    token = client_first_message(oauth_broker.idp.token())
    log_start = len(oauth_broker.process.log_text())
    try:
        staged = oauth_broker.jwks_path.with_name("broken.json")
        staged.write_text(broken)
        os.replace(staged, oauth_broker.jwks_path)
        for _ in range(3):
            try_authenticate(oauth_broker, token)  # either answer will do, a dropped connection will not
            time.sleep(0.1)
        with WireClient(oauth_broker.address("PLAINTEXT")) as client:
            assert client.request(protocol.ApiVersionsRequest(), 0).error_code == 0
    finally:
        write_jwks(oauth_broker.jwks_path, *current)
    assert wait_until(lambda: try_authenticate(oauth_broker, token), timeout=10, interval=0.3), oauth_broker.log_tail()
    assert "Traceback" not in oauth_broker.process.log_text()[log_start:], oauth_broker.log_tail()


def try_authenticate(broker: Any, message: bytes, listener: str = "SASL_PLAINTEXT") -> bool:
    """True when `message` authenticates; False when it is refused (by either path)."""
    with WireClient(broker.address(listener)) as client:
        assert handshake(client).error_code == 0
        response = authenticate(client, message)
        if response.error_code == 0 and response.auth_bytes == b"":
            return True
        if response.error_code == 0:
            assert json.loads(response.auth_bytes)["status"] == "invalid_token"
            response = authenticate(client, b"\x01")
        assert response.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED, response
        return False


# -- clients in this environment -----------------------------------------------------------------------------------


def confluent_conf(broker: Any, listener: str, oauth_cb: Callable, **extra: Any) -> dict:
    conf = {"bootstrap.servers": broker.address(listener), "security.protocol": listener, "sasl.mechanism": MECHANISM,
            "oauth_cb": oauth_cb, **BOUNDED, **extra}
    if listener == "SASL_SSL":
        conf["ssl.ca.location"] = str(broker.ca.pem)
    return conf


def confluent_round_trip(conf: dict, topic: str, count: int = RECORDS) -> list[str]:
    """Produces `count` records with confluent-kafka and reads them back in a group."""
    errors: list[Any] = []
    delivered: list[Any] = []
    producer = Producer({**conf, "error_cb": errors.append, "message.timeout.ms": int(TIMEOUT * 1000)})
    for i in range(count):
        producer.produce(topic, f"value-{i}".encode(), on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(TIMEOUT) == 0, f"records not delivered: {errors[-3:]}"
    assert delivered == [None] * count, (delivered, errors[-3:])
    consumer = Consumer({**conf, "group.id": topic, "auto.offset.reset": "earliest", "error_cb": errors.append})
    consumer.subscribe([topic])
    values: list[str] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                values.append(message.value().decode())
    finally:
        consumer.close()
    return values


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("listener, form", [("SASL_PLAINTEXT", "token, expiry"), ("SASL_SSL", "token, expiry, principal, extensions")])
def test_confluent_kafka_produces_and_consumes(oauth_broker: OAuthBroker, listener: str, form: str) -> None:
    calls: list[Any] = []

    def oauth_cb(config: Any) -> tuple:
        calls.append(config)
        token, expiry = oauth_broker.idp.issue(sub="alice")
        return (token, expiry) if form == "token, expiry" else (token, expiry, "alice", {"traceId": "abc123"})

    topic = unique(f"oauth-confluent-{listener.lower()}")
    values = confluent_round_trip(confluent_conf(oauth_broker, listener, oauth_cb), topic)
    assert sorted(values) == [f"value-{i}" for i in range(RECORDS)], oauth_broker.log_tail()
    assert calls, "oauth_cb was never called"


def test_confluent_kafka_reports_a_refused_token(oauth_broker: OAuthBroker) -> None:
    """librdkafka answers the challenge with `\\x01` and reports the failure as an
    authentication error; the broker serves a good client meanwhile."""
    errors: list[Any] = []
    expired = oauth_broker.idp.token(lifetime=-120)
    # librdkafka only takes a token it believes unexpired, so the client side is told otherwise.
    producer = Producer(confluent_conf(oauth_broker, "SASL_PLAINTEXT", lambda _: (expired, time.time() + 300), error_cb=errors.append))

    def reported() -> bool:
        producer.poll(0.1)  # serves error_cb
        return any(e.code() == KafkaError._AUTHENTICATION for e in errors)

    assert wait_until(reported, timeout=10), errors
    with pytest.raises(KafkaException):
        producer.list_topics(timeout=1)
    serves_others(oauth_broker)


def kafka_python_token_provider_base() -> type:
    """kafka-python's AbstractTokenProvider: kafka.net.sasl.oauth (3.x), kafka.sasl.oauth (2.1
    to 2.2) or kafka.oauth.abstract (2.0)."""
    import importlib

    for module in ("kafka.net.sasl.oauth", "kafka.sasl.oauth", "kafka.oauth.abstract"):
        try:
            return importlib.import_module(module).AbstractTokenProvider
        except ImportError:
            continue
    raise AssertionError("no AbstractTokenProvider in this kafka-python")


def kafka_python_provider(make_token: Callable[[], str]) -> Any:
    class Provider(kafka_python_token_provider_base()):  # type: ignore[misc]
        def token(self) -> str:
            return make_token()

    return Provider()


def test_kafka_python_produces_and_consumes(oauth_broker: OAuthBroker) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    conf = {"bootstrap_servers": oauth_broker.address("SASL_SSL"), "security_protocol": "SASL_SSL", "ssl_cafile": str(oauth_broker.ca.pem),
            "sasl_mechanism": MECHANISM, "sasl_oauth_token_provider": kafka_python_provider(lambda: oauth_broker.idp.token(sub="bob")),
            "request_timeout_ms": 10_000}
    topic = unique("oauth-kafka-python")
    producer = KafkaProducer(max_block_ms=10_000, **conf)
    try:
        for i in range(RECORDS):
            producer.send(topic, f"value-{i}".encode()).get(timeout=TIMEOUT)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(topic, group_id=topic, auto_offset_reset="earliest", consumer_timeout_ms=int(TIMEOUT * 1000), **conf)
    values: list[str] = []
    try:
        for message in consumer:
            values.append(message.value.decode())
            if len(values) == RECORDS:
                break
    finally:
        consumer.close()
    assert sorted(values) == [f"value-{i}" for i in range(RECORDS)], oauth_broker.log_tail()


@contextlib.contextmanager
def kafka_python_logs_as_text() -> Iterator[list[str]]:
    """kafka-python logs its failed connections with their tracebacks; pytest's log capture
    would keep those records (and the sockets their frames hold) past the test, for the
    collector to find unclosed at the end of the session. Its lines are kept as text instead."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    logger, handler = logging.getLogger("kafka"), Keep()
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def test_kafka_python_is_refused_a_bad_token(oauth_broker: OAuthBroker) -> None:
    """kafka-python answers the challenge with `\x01`; its bootstrap then fails."""
    from kafka import KafkaProducer

    log_start = len(oauth_broker.process.log_text())
    provider = kafka_python_provider(lambda: oauth_broker.idp.token(aud="another-service"))
    conf: dict[str, Any] = {"bootstrap_servers": oauth_broker.address("SASL_PLAINTEXT"), "security_protocol": "SASL_PLAINTEXT",
                            "sasl_mechanism": MECHANISM, "sasl_oauth_token_provider": provider, "max_block_ms": 3000,
                            "request_timeout_ms": 3000, "reconnect_backoff_max_ms": 500}
    if "bootstrap_timeout_ms" in KafkaProducer.DEFAULT_CONFIG:  # kafka-python 3: the constructor bootstraps (30 s by default)
        conf["bootstrap_timeout_ms"] = 3000
    failure = ""
    with kafka_python_logs_as_text() as lines:
        try:
            producer = KafkaProducer(**conf)
            try:
                producer.send(unique("never"), b"x").get(timeout=5)
            finally:
                producer.close(timeout=1)
        except Exception as e:  # NoBrokersAvailable or a timeout, by version
            failure = type(e).__name__
    assert failure, "kafka-python produced with a token for another audience\n" + "\n".join(lines[-20:])
    # kafka-python 3 leaves its sockets to the collector when its constructor fails.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert f"failed authentication with {MECHANISM} on SASL_PLAINTEXT" in oauth_broker.process.log_text()[log_start:]
    serves_others(oauth_broker)


def test_aiokafka_produces_and_consumes(oauth_broker: OAuthBroker) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.abc import AbstractTokenProvider
    from aiokafka.helpers import create_ssl_context

    class Provider(AbstractTokenProvider):
        async def token(self) -> str:
            return oauth_broker.idp.token(sub="carol")

    topic = unique("oauth-aiokafka")

    async def main() -> list[str]:
        conf: dict[str, Any] = {"bootstrap_servers": oauth_broker.address("SASL_SSL"), "security_protocol": "SASL_SSL",
                                "ssl_context": create_ssl_context(cafile=str(oauth_broker.ca.pem)), "sasl_mechanism": MECHANISM,
                                "sasl_oauth_token_provider": Provider()}
        producer = AIOKafkaProducer(**conf)
        await producer.start()
        try:
            for i in range(RECORDS):
                await producer.send_and_wait(topic, f"value-{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, group_id=topic, auto_offset_reset="earliest", **conf)
        await consumer.start()
        values: list[str] = []
        try:
            while len(values) < RECORDS:
                batches = await consumer.getmany(timeout_ms=500)
                values += [m.value.decode() for messages in batches.values() for m in messages]
        finally:
            await consumer.stop()
        return values

    values = asyncio.run(asyncio.wait_for(main(), 40))
    assert sorted(values) == [f"value-{i}" for i in range(RECORDS)], oauth_broker.log_tail()


# -- old client versions, through secure_client.py in their own interpreters ---------------------------------


@pytest.mark.parametrize("client, venv, listener", [
    ("confluent-kafka", "confluent-kafka-1.9.2", "SASL_SSL"),
    ("confluent-kafka", "confluent-kafka-2.3.0", "SASL_PLAINTEXT"),
    ("kafka-python", "kafka-python-2.0.2", "SASL_PLAINTEXT"),
    ("aiokafka", "aiokafka-0.8.1", "SASL_SSL"),
], ids=["confluent-kafka-1.9.2-SASL_SSL", "confluent-kafka-2.3.0-SASL_PLAINTEXT", "kafka-python-2.0.2-SASL_PLAINTEXT", "aiokafka-0.8.1-SASL_SSL"])
def test_old_clients_authenticate_with_tokens(oauth_broker: OAuthBroker, client: str, venv: str, listener: str) -> None:
    python = VENVS / venv / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no virtualenv {venv}: run `bash scripts/clients/python.sh` first")
    lifetime = 600  # the old clients cannot sign; they are handed a token good for the run
    options = {"bootstrap": oauth_broker.address(listener), "protocol": listener, "mechanism": MECHANISM,
               "token": oauth_broker.idp.token(sub="dave", lifetime=lifetime), "token_expiry": time.time() + lifetime,
               "username": None, "password": None, "ca": str(oauth_broker.ca.pem), "cert": None, "key": None,
               "topic": unique(f"oauth-{venv}"), "records": RECORDS}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([str(python), str(SCRIPT), client, json.dumps(options)], capture_output=True, text=True, timeout=50, env=env,
                          stdin=subprocess.DEVNULL)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from {client}: rc {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert result["ok"], f"{result['error']}\n{result.get('trace', '')}\n{oauth_broker.log_tail()}"
    assert sorted(result["values"]) == [f"value-{i}" for i in range(RECORDS)]


# -- a JWKS over http ----------------------------------------------------------------------------------------


@dataclass
class HttpJwksBroker:
    process: BrokerProcess
    ports: dict[str, int]
    idp: Issuer
    server: JwksServer

    def address(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    def log_tail(self) -> str:
        return self.process.log_text()[-3000:]


@pytest.fixture(scope="module")
def http_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpJwksBroker]:
    """OAUTHBEARER on the SASL_PLAINTEXT listener alone (listener.name.sasl_plaintext.*), the
    JWKS fetched over http at most hourly (so a fetch after a rotation is the unknown kid's
    doing), the principal from the client_id claim."""
    tmp = tmp_path_factory.mktemp("oauth-http")
    key = rsa_key("http-1")
    with JwksServer(key) as server:
        ports = {p: free_port() for p in ("PLAINTEXT", "SASL_PLAINTEXT")}
        overrides = {
            "listeners": f"PLAINTEXT://127.0.0.1:{ports['PLAINTEXT']},SASL_PLAINTEXT://127.0.0.1:{ports['SASL_PLAINTEXT']}",
            **oauth_settings(server.url),
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms": MECHANISM,
            "sasl.oauthbearer.jwks.endpoint.refresh.ms": "3600000",
            "sasl.oauthbearer.sub.claim.name": "client_id",
        }
        process = start_broker(tmp, overrides, ports["PLAINTEXT"])
        try:
            yield HttpJwksBroker(process, ports, Issuer(ISSUER, AUDIENCE, [key]), server)
        finally:
            process.stop()


def test_http_jwks_per_listener_mechanisms(http_broker: HttpJwksBroker) -> None:
    with WireClient(http_broker.address("SASL_PLAINTEXT")) as client:
        response = handshake(client, "PLAIN")
        assert response.error_code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
        assert list(response.mechanisms) == [MECHANISM]


def test_http_jwks_token_and_sub_claim_name(http_broker: HttpJwksBroker) -> None:
    token = http_broker.idp.token(sub="someone-else", client_id="svc-orders")
    assert try_authenticate(http_broker, client_first_message(token)), http_broker.log_tail()
    assert http_broker.server.fetch_count() >= 1
    assert re.search(r"authenticated (User:)?svc-orders from", http_broker.process.log_text()), http_broker.log_tail()
    # The sub claim is not the principal here; a token without the client_id claim names none.
    assert not try_authenticate(http_broker, client_first_message(http_broker.idp.token(sub="alice")))
    # ... and the authzid is checked against the configured claim.
    assert try_authenticate(http_broker, client_first_message(token, authzid="svc-orders")), http_broker.log_tail()


def test_http_jwks_unknown_kid_is_fetched_anew(http_broker: HttpJwksBroker) -> None:
    """A key added at the endpoint is fetched when a token names its kid, long before the
    hourly refresh. (Kafka refuses that first token and refreshes in the background, so a
    client's retry succeeds; a broker that fetches before answering accepts the first.)"""
    rotated = rsa_key("http-2")
    server = http_broker.server
    server.set_keys(*http_broker.idp.keys, rotated)
    before = server.fetch_count()
    token = client_first_message(http_broker.idp.token(key=rotated, client_id="svc-orders"))
    assert wait_until(lambda: try_authenticate(http_broker, token), timeout=10, interval=0.3), http_broker.log_tail()
    assert server.fetch_count() > before
    assert try_authenticate(http_broker, client_first_message(http_broker.idp.token(client_id="svc-orders")))  # the first key still works


def test_http_jwks_unknown_kids_do_not_fetch_per_login(http_broker: HttpJwksBroker) -> None:
    """Tokens naming kids the endpoint does not have are refused, and the endpoint is not
    fetched once per login (Kafka: at most one expedited refresh per kid in flight)."""
    server = http_broker.server
    before = server.fetch_count()
    stranger = rsa_key("nowhere")
    for i in range(6):
        token = stranger.sign(http_broker.idp.claims(client_id="svc-orders"), kid=f"nowhere-{i % 2}")
        assert not try_authenticate(http_broker, client_first_message(token))
    assert server.fetch_count() - before <= 3, f"{server.fetch_count() - before} fetches for 6 logins with unknown kids"


# -- ACLs see the token's subject --------------------------------------------------------------------------


@dataclass
class TokenBroker:
    """A broker with PLAINTEXT and an OAUTHBEARER-only SASL_PLAINTEXT listener."""

    process: BrokerProcess
    ports: dict[str, int]
    idp: Issuer

    def address(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    def conf(self, sub: str, **extra: Any) -> dict:
        return confluent_conf(self, "SASL_PLAINTEXT", lambda _: self.idp.issue(sub=sub), **extra)


@contextlib.contextmanager
def token_broker(tmp: Path, key: SigningKey, **settings: str) -> Iterator[TokenBroker]:
    """A broker with PLAINTEXT and an OAUTHBEARER-only SASL_PLAINTEXT listener trusting `key`."""
    jwks_path = tmp / "jwks.json"
    write_jwks(jwks_path, key)
    ports = {p: free_port() for p in ("PLAINTEXT", "SASL_PLAINTEXT")}
    overrides = {
        "listeners": f"PLAINTEXT://127.0.0.1:{ports['PLAINTEXT']},SASL_PLAINTEXT://127.0.0.1:{ports['SASL_PLAINTEXT']}",
        **oauth_settings(jwks_path.as_uri()),
        "sasl.enabled.mechanisms": MECHANISM,
        **settings,
    }
    process = start_broker(tmp, overrides, ports["PLAINTEXT"])
    try:
        yield TokenBroker(process, ports, Issuer(ISSUER, AUDIENCE, [key]))
    finally:
        process.stop()


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenBroker]:
    with token_broker(tmp_path_factory.mktemp("oauth-acls"), ec_key("acl-ec-1"), **{
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin",
        "allow.everyone.if.no.acl.found": "false",
    }) as broker:
        yield broker


def produce_as(broker: TokenBroker, sub: str, topic: str) -> list[Optional[str]]:
    """One record produced as `sub`: [None] when delivered, else [the error's name]."""
    outcome: list[Optional[str]] = []
    producer = Producer(broker.conf(sub, **{"message.timeout.ms": 8000, "retry.backoff.ms": 100}))
    producer.produce(topic, b"x", on_delivery=lambda err, msg: outcome.append(err.name() if err else None))
    assert producer.flush(TIMEOUT) == 0, "the record was neither delivered nor failed"
    return outcome


def test_acls_see_the_subject_of_the_token(acl_broker: TokenBroker) -> None:
    admin = AdminClient(acl_broker.conf("admin"))  # a super user by its token's sub
    topic = unique("oauth-acl")
    for future in admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=TIMEOUT).values():
        future.result(timeout=TIMEOUT)
    assert produce_as(acl_broker, "alice", topic) == ["TOPIC_AUTHORIZATION_FAILED"]
    allow = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
    for future in admin.create_acls([allow]).values():
        future.result(timeout=TIMEOUT)
    assert produce_as(acl_broker, "alice", topic) == [None], acl_broker.process.log_text()[-3000:]
    assert produce_as(acl_broker, "bob", topic) == ["TOPIC_AUTHORIZATION_FAILED"]  # the ACL is alice's alone
    # (librdkafka asks Metadata first: bob is refused DESCRIBE before he could try WRITE.)
    assert re.search(rf"denied: principal User:bob from 127\.0\.0\.1:\d+ may not (WRITE|DESCRIBE) TOPIC '{topic}'", acl_broker.process.log_text())


# -- sessions: connections.max.reauth.ms and the token's life ---------------------------------------------------


@pytest.fixture(scope="module")
def reauth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenBroker]:
    with token_broker(tmp_path_factory.mktemp("oauth-reauth"), rsa_key("reauth-1"), **{"connections.max.reauth.ms": "2000"}) as broker:
        yield broker


def test_session_lifetime_is_the_shorter_of_reauth_and_token(reauth_broker: TokenBroker) -> None:
    idp = reauth_broker.idp
    with WireClient(reauth_broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client).error_code == 0
        response = authenticate(client, client_first_message(idp.token(sub="alice", lifetime=300)))
        assert response.error_code == 0 and response.session_lifetime_ms == 2000, response
        # Re-authentication on the same connection with a new token for the same subject ...
        assert handshake(client).error_code == 0
        assert authenticate(client, client_first_message(idp.token(sub="alice", lifetime=300))).error_code == 0
        # ... but not for another one.
        assert handshake(client).error_code == 0
        switched = authenticate(client, client_first_message(idp.token(sub="mallory", lifetime=300)))
        assert switched.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED, switched
        assert client.recv_frame() is None
    with WireClient(reauth_broker.address("SASL_PLAINTEXT")) as client:
        assert handshake(client).error_code == 0
        exp = int(time.time() + 1.5)  # the token ends in 0.5 to 1.5 s, before connections.max.reauth.ms
        response = authenticate(client, client_first_message(idp.token(sub="alice", exp=exp)))
        assert response.error_code == 0, response
        assert 300 <= response.session_lifetime_ms <= 1500, response
        assert client.request(protocol.ApiVersionsRequest(), 0).error_code == 0
        time.sleep(response.session_lifetime_ms / 1000 + 0.3)
        client.send_frame(client.encode(protocol.ApiVersionsRequest(), 0))
        assert client.recv_frame() is None, "a request after the session ended was served"


def test_librdkafka_reauthenticates_with_new_tokens(reauth_broker: TokenBroker) -> None:
    """Sessions of 2 s and tokens of 4 s: librdkafka re-authenticates on its connections and
    asks oauth_cb for a new token before the old one expires; every record is delivered."""
    calls: list[float] = []

    def oauth_cb(_config: Any) -> tuple:
        calls.append(time.monotonic())
        return reauth_broker.idp.issue(sub="alice", lifetime=4)

    log_start = len(reauth_broker.process.log_text())
    errors: list[Any] = []
    delivered: list[Any] = []
    producer = Producer(confluent_conf(reauth_broker, "SASL_PLAINTEXT", oauth_cb, error_cb=errors.append))
    topic = unique("oauth-reauth")
    end = time.monotonic() + 5
    while time.monotonic() < end:
        producer.produce(topic, b"x", on_delivery=lambda err, msg: delivered.append(err))
        producer.poll(0.1)
    assert producer.flush(TIMEOUT) == 0
    assert delivered and all(err is None for err in delivered), delivered[:3]
    assert not [e for e in errors if e.code() == KafkaError._AUTHENTICATION], errors
    assert len(calls) >= 2, f"oauth_cb called {len(calls)} times in 5 s with 4 s tokens"
    log = reauth_broker.process.log_text()[log_start:]
    assert "without re-authentication" not in log, log[-3000:]
    # Re-authenticated on the same connections: at most the bootstrap and the broker's connection.
    assert len(re.findall(r"INFO .*authenticated alice from", log)) <= 3, log[-3000:]


# -- the start ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["no JWKS URL", "no JWKS URL, mechanism per listener", "missing JWKS file", "JWKS file not JSON"])
def test_oauthbearer_without_usable_jwks_stops_the_start(tmp_path: Path, problem: str) -> None:
    """fastlog has no validator of unsigned tokens (Kafka's default when no JWKS is set), so
    OAUTHBEARER without sasl.oauthbearer.jwks.endpoint.url is a configuration error; so is a
    JWKS file that cannot be read at start (Kafka's JwksFileVerificationKeyResolver fails its
    configure too)."""
    port = free_port()
    overrides = {"listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}", "log.dirs": str(tmp_path / "data"), "metrics.port": "-1",
                 "schema.registry.listeners": "-1", "sasl.enabled.mechanisms": MECHANISM}
    if problem == "no JWKS URL, mechanism per listener":
        del overrides["sasl.enabled.mechanisms"]
        overrides["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] = MECHANISM
    elif problem == "missing JWKS file":
        overrides["sasl.oauthbearer.jwks.endpoint.url"] = (tmp_path / "nowhere" / "jwks.json").as_uri()
    elif problem == "JWKS file not JSON":
        (tmp_path / "jwks.json").write_text('{"keys": [')
        overrides["sasl.oauthbearer.jwks.endpoint.url"] = (tmp_path / "jwks.json").as_uri()
    args = [sys.executable, "-m", "fastlog", "serve"] + [a for k, v in overrides.items() for a in ("--override", f"{k}={v}")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "sasl.oauthbearer.jwks.endpoint.url" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


# -- OIDC: clients that fetch their tokens from a token endpoint ----------------------------------


def oidc_settings(endpoint: TokenEndpoint, secret: str) -> dict[str, str]:
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": MECHANISM, "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.client.id": "alice", "sasl.oauthbearer.client.secret": secret,
            "sasl.oauthbearer.token.endpoint.url": endpoint.url}


def test_kcat_with_librdkafka_s_unsecured_tokens_is_refused(oauth_broker: OAuthBroker) -> None:
    """kcat (Debian's librdkafka has no OIDC) makes unsigned tokens from sasl.oauthbearer.config
    (`alg: none`, librdkafka's default method): refused with the invalid_token challenge, so
    kcat fails its login; the broker logs why."""
    settings = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", f"sasl.mechanisms={MECHANISM}", "-X", "sasl.oauthbearer.config=principal=alice",
                "-X", "enable.sasl.oauthbearer.unsecure.jwt=true"]
    done = subprocess.run(["kcat", "-b", oauth_broker.address("SASL_PLAINTEXT"), *settings, "-L", "-m", "5"], capture_output=True, timeout=60)
    assert done.returncode != 0
    assert "OAUTHBEARER token refused: algorithm 'none' is not accepted" in oauth_broker.log_tail()


def test_confluent_kafka_gets_its_token_from_an_oidc_endpoint(oauth_broker: OAuthBroker) -> None:
    topic = unique("oidc-confluent")
    with TokenEndpoint(oauth_broker.idp, {"alice": "alice-secret"}) as endpoint:
        conf = {"bootstrap.servers": oauth_broker.address("SASL_PLAINTEXT"), **oidc_settings(endpoint, "alice-secret")}
        producer = Producer({**conf, "message.timeout.ms": 20_000})
        for i in range(5):
            producer.produce(topic, f"v{i}".encode())
        assert producer.flush(30) == 0
        consumer = Consumer({**conf, "group.id": topic, "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        try:
            while len(values) < 5 and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is not None and not message.error():
                    values.append(message.value())
        finally:
            consumer.close()
        assert values == [f"v{i}".encode() for i in range(5)]
