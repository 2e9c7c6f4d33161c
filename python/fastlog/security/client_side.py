"""The client side of TLS and SASL, for fastlog's own connections to brokers: the command-line
tools (`--command-config`, as Kafka's tools take one) and a follower fetching from its leader
over a secured inter-broker listener.

`ClientSecurity` holds what a connection needs, read from Kafka's (or librdkafka's) client
settings: `security.protocol`; `ssl.truststore.location` (PEM or PKCS12, with
`ssl.truststore.password`) or `ssl.ca.location`; a client certificate from
`ssl.keystore.location` (PKCS12) or `ssl.certificate.location` + `ssl.key.location` (PEM);
`ssl.endpoint.identification.algorithm` (`https`, the default, checks the broker's host name;
empty does not); `sasl.mechanism` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) with the user and
password from `sasl.jaas.config` (`PlainLoginModule`/`ScramLoginModule` `username=`,
`password=`) or `sasl.username` / `sasl.password`.

The SASL exchanges are sans-I/O (`sasl_exchange` yields the tokens to send and takes the
answers), so the blocking tools client and the Trio follower share them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Generator, Mapping, Optional

from fastlog.config import ConfigError, read_properties
from fastlog.security.jaas import login_credentials, parse_entries
from fastlog.security.scram import HASHES, MAX_ITERATIONS, salted_password

if TYPE_CHECKING:
    from fastlog.config import BrokerConfig
    from fastlog.security.tls import ListenerTls

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
MIN_ITERATIONS = 4096  # Kafka's ScramMechanism minimum


class SaslFailed(Exception):
    """The broker refused the login, or answered outside the mechanism."""


@dataclass
class ClientSecurity:
    protocol: str = "PLAINTEXT"
    tls: Optional[ssl.SSLContext] = None
    mechanism: Optional[str] = None
    username: str = ""
    password: str = ""
    # Where the TLS context comes from when it follows certificate files (a broker's own
    # listener): asked for each new connection.
    tls_source: Optional[Callable[[], ssl.SSLContext]] = None

    def tls_context(self) -> Optional[ssl.SSLContext]:
        return self.tls_source() if self.tls_source is not None else self.tls

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @classmethod
    def from_settings(cls, settings: Mapping[str, str], source: str = "client config") -> "ClientSecurity":
        protocol = settings.get("security.protocol", "PLAINTEXT").strip().upper()
        if protocol not in PROTOCOLS:
            raise ConfigError(f"{source}: security.protocol={protocol} is not one of {', '.join(PROTOCOLS)}")
        security = cls(protocol)
        if protocol in ("SSL", "SASL_SSL"):
            security.tls = client_tls_context(settings, source)
        if security.uses_sasl:
            security.mechanism = settings.get("sasl.mechanism", settings.get("sasl.mechanisms", "PLAIN")).strip().upper()
            if security.mechanism not in MECHANISMS:
                raise ConfigError(f"{source}: sasl.mechanism={security.mechanism}: fastlog's tools speak {', '.join(MECHANISMS)}")
            security.username, security.password = credentials(settings, source)
        return security

    @classmethod
    def from_file(cls, path: str) -> "ClientSecurity":
        return cls.from_settings(read_properties(path), path)


def inter_broker_security(config: "BrokerConfig", tls: "Mapping[str, ListenerTls]") -> ClientSecurity:
    """How this broker connects to its leaders' inter-broker listener (`inter.broker.listener.name`,
    else the first client listener): TLS with its own keystore and truststore, SASL with
    `sasl.mechanism.inter.broker.protocol` and the listener's JAAS username and password."""
    name = config["inter.broker.listener.name"] or config.client_listeners[0].name
    listener = next(l for l in config.client_listeners if l.name == name)
    security = ClientSecurity(listener.protocol)
    if listener.uses_tls:
        security.tls = tls[listener.name].current_client()  # loads now: a bad keystore stops the start
        security.tls_source = tls[listener.name].current_client
    if listener.uses_sasl:
        mechanism = str(config["sasl.mechanism.inter.broker.protocol"]).strip().upper()
        if mechanism not in MECHANISMS:
            raise ConfigError(f"the inter-broker listener {name} is {listener.protocol}: set sasl.mechanism.inter.broker.protocol to one of "
                              f"{', '.join(MECHANISMS)} (it is {mechanism})")
        security.mechanism = mechanism
        security.username, security.password = login_credentials(config, listener.name, mechanism)
    return security


def credentials(settings: Mapping[str, str], source: str) -> tuple[str, str]:
    """(user, password) from sasl.jaas.config's login module options, or sasl.username/password."""
    jaas = settings.get("sasl.jaas.config")
    if jaas:
        for _module, options in parse_entries(jaas, f"{source}: sasl.jaas.config"):
            if "username" in options and "password" in options:
                return options["username"], options["password"]
        raise ConfigError(f"{source}: sasl.jaas.config has no username=\"...\" password=\"...\"")
    if "sasl.username" in settings and "sasl.password" in settings:
        return settings["sasl.username"], settings["sasl.password"]
    raise ConfigError(f"{source}: SASL needs sasl.jaas.config (username, password) or sasl.username and sasl.password")


def client_tls_context(settings: Mapping[str, str], source: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = settings.get("ssl.endpoint.identification.algorithm", "https").strip().lower() == "https"
    trusted = settings.get("ssl.truststore.location") or settings.get("ssl.ca.location")
    try:
        if trusted:
            context.load_verify_locations(cadata=_pem_certificates(trusted, settings.get("ssl.truststore.password")))
        else:
            context.load_default_certs()
        keystore = settings.get("ssl.keystore.location")
        if keystore:
            _load_pkcs12_identity(context, keystore, settings.get("ssl.keystore.password"), settings.get("ssl.key.password"))
        elif settings.get("ssl.certificate.location"):
            context.load_cert_chain(settings["ssl.certificate.location"], settings.get("ssl.key.location"), settings.get("ssl.key.password"))
    except (OSError, ssl.SSLError, ValueError) as e:
        raise ConfigError(f"{source}: TLS settings do not load: {e}") from None
    return context


def _pem_certificates(path: str, password: Optional[str]) -> str:
    data = Path(path).read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return data.decode()
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

    store = pkcs12.load_pkcs12(data, password.encode() if password else None)
    certificates = [c.certificate for c in store.additional_certs] + ([store.cert.certificate] if store.cert else [])
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certificates)


def _load_pkcs12_identity(context: ssl.SSLContext, path: str, password: Optional[str], key_password: Optional[str]) -> None:
    """A PKCS12 keystore's key and chain (the ssl module reads PEM files only: written to a
    private temporary file for the call)."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12

    store = pkcs12.load_pkcs12(Path(path).read_bytes(), (password or key_password or "").encode() or None)
    if store.key is None or store.cert is None:
        raise ValueError(f"{path} holds no private key and certificate")
    pem = store.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    pem += b"".join(c.public_bytes(Encoding.PEM) for c in [store.cert.certificate, *(a.certificate for a in store.additional_certs)])
    with tempfile.NamedTemporaryFile(suffix=".pem") as f:  # created 0600, deleted on close
        f.write(pem)
        f.flush()
        context.load_cert_chain(f.name)


# -- SASL exchanges --------------------------------------------------------------------------

Exchange = Generator[bytes, bytes, None]  # yields each token to send; is sent each answer


def sasl_exchange(mechanism: str, username: str, password: str) -> Exchange:
    """The client's side of one login; raises SaslFailed when the broker's answer is wrong."""
    if mechanism == "PLAIN":
        yield f"\0{username}\0{password}".encode()
        return
    yield from _scram(mechanism, username, password)


def _scram(mechanism: str, username: str, password: str) -> Exchange:
    digest = HASHES[mechanism]
    nonce = base64.b64encode(secrets.token_bytes(24)).decode()
    name = username.replace("=", "=3D").replace(",", "=2C")
    client_first_bare = f"n={name},r={nonce}"
    server_first = (yield f"n,,{client_first_bare}".encode()).decode()
    fields = dict(part.split("=", 1) for part in server_first.split(",") if "=" in part)
    if not fields.get("r", "").startswith(nonce) or "s" not in fields or not fields.get("i", "").isdigit():
        raise SaslFailed(f"unexpected SCRAM server-first message {server_first[:100]!r}")
    if not MIN_ITERATIONS <= int(fields["i"]) <= MAX_ITERATIONS:  # Kafka's bounds: a server cannot make us hash for minutes
        raise SaslFailed(f"SCRAM iterations {fields['i']} outside {MIN_ITERATIONS}-{MAX_ITERATIONS}")
    salted = salted_password(mechanism, password, base64.b64decode(fields["s"]), int(fields["i"]))
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    signature = hmac.new(hashlib.new(digest, client_key).digest(), auth_message, digest).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    server_final = (yield f"{without_proof},p={proof}".encode()).decode()
    server_key = hmac.new(salted, b"Server Key", digest).digest()
    expected = "v=" + base64.b64encode(hmac.new(server_key, auth_message, digest).digest()).decode()
    if not hmac.compare_digest(server_final.encode(), expected.encode()):
        raise SaslFailed("the broker's SCRAM signature does not verify (not the broker that holds this user's credential)")
