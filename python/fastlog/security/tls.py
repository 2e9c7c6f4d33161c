"""TLS for SSL and SASL_SSL listeners: the server context from Kafka's `ssl.*` settings, the
principal of a client certificate, and certificate reload without a restart.

Keystores and truststores are PKCS12 or PEM files (or PEM inline, `ssl.keystore.type=PEM`).
A `JKS`-typed file is read by its content: Java 9+'s keytool writes PKCS12 whatever the name,
and a real JKS file is refused with the command that converts it. Python's `ssl` loads keys
from files only, so a key that is not already a PEM file is written, encrypted with a
one-time password, to a private temporary file that is removed once loaded.

A listener's files are checked for changes at most once a second, when a connection is
accepted: a renewed certificate is used by new connections from then on, and a file that no
longer loads is logged while the previous context stays in use.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import trio

from fastlog.config import ConfigError

if TYPE_CHECKING:
    from fastlog.config import BrokerConfig

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 1.0
JKS_MAGIC = b"\xfe\xed\xfe\xed"
CLIENT_AUTH = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
TLS_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


HANDSHAKE_SECONDS = 10


class ListenerTls:
    """One listener's TLS settings and its current server context."""

    def __init__(self, config: "BrokerConfig", listener: str) -> None:
        self.listener = listener
        self.setting: Callable[[str], object] = lambda key: config.listener_setting(listener, key)
        try:
            self.context = self._build()
        except ConfigError:
            raise
        except (OSError, ValueError, ssl.SSLError) as e:
            raise ConfigError(f"listener {listener}: its TLS key or certificates do not load: {e}") from None
        self._rebuilding = threading.Lock()  # network loops accept connections in several threads
        self._files = self._file_stamps()
        self._checked = time.monotonic()
        rules = str(self.setting("ssl.principal.mapping.rules"))
        self.principal_rules = parse_mapping_rules(rules)
        self._client: Optional[ssl.SSLContext] = None  # for outgoing connections, built when first needed
        self._client_stamps: dict[str, tuple[int, int]] = {}

    def current(self) -> ssl.SSLContext:
        """The context for a new connection, rebuilt first if a certificate file changed."""
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK_SECONDS or not self._rebuilding.acquire(blocking=False):
            return self.context  # checked lately, or another loop is checking now
        try:
            self._checked = now
            stamps = self._file_stamps()
            if stamps != self._files:
                self._files = stamps
                try:
                    self.context = self._build()
                    log.info("listener %s: TLS certificates reloaded", self.listener)
                except (ConfigError, OSError, ValueError, ssl.SSLError) as e:
                    log.error("listener %s: TLS certificates changed but do not load (%s); the previous ones stay in use", self.listener, e)
        finally:
            self._rebuilding.release()
        return self.context

    def current_client(self) -> ssl.SSLContext:
        """`client_context()`, built again when a certificate file changed (a renewed keystore
        reaches this broker's outgoing connections too, without a restart); one that does not
        load is logged and the previous context stays."""
        stamps = self._file_stamps()
        if self._client is None or stamps != self._client_stamps:
            try:
                self._client, self._client_stamps = self.client_context(), stamps
            except ConfigError as e:
                if self._client is None:
                    raise
                self._client_stamps = stamps
                log.error("listener %s: TLS certificates changed but do not load for outgoing connections (%s); the previous ones stay in use", self.listener, e)
        return self._client

    def client_context(self) -> ssl.SSLContext:
        """For this broker's connections to the same listener of another broker (a follower
        fetching over a TLS inter-broker listener): its keystore is the client certificate,
        its truststore checks the leader's, and ssl.endpoint.identification.algorithm=https
        checks the leader's host name."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        versions = [TLS_VERSIONS[v] for v in str(self.setting("ssl.enabled.protocols")).split(",")]
        context.minimum_version, context.maximum_version = min(versions), max(versions)
        context.check_hostname = str(self.setting("ssl.endpoint.identification.algorithm")).strip().lower() == "https"
        try:
            self._load_keystore(context)
            self._load_truststore(context, ssl.Purpose.SERVER_AUTH)
        except (OSError, ValueError, ssl.SSLError) as e:
            raise ConfigError(f"listener {self.listener}: its TLS key or certificates do not load for inter-broker connections: {e}") from None
        return context

    def _file_stamps(self) -> dict[str, tuple[int, int]]:
        stamps = {}
        for key in ("ssl.keystore.location", "ssl.truststore.location"):
            path = self.setting(key)
            if path:
                try:
                    st = os.stat(str(path))
                    stamps[key] = (st.st_mtime_ns, st.st_size)
                except OSError:
                    stamps[key] = (0, -1)
        return stamps

    def _build(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        versions = [TLS_VERSIONS[v] for v in str(self.setting("ssl.enabled.protocols")).split(",")]
        context.minimum_version, context.maximum_version = min(versions), max(versions)
        ciphers = str(self.setting("ssl.cipher.suites")).strip()
        if ciphers:
            try:
                context.set_ciphers(openssl_cipher_names(ciphers))
            except ssl.SSLError as e:
                raise ConfigError(f"ssl.cipher.suites: none of {ciphers!r} is a cipher suite OpenSSL knows ({e})") from None
        self._load_keystore(context)
        context.verify_mode = CLIENT_AUTH[str(self.setting("ssl.client.auth"))]
        if context.verify_mode != ssl.CERT_NONE:
            self._load_truststore(context)
        return context

    def _load_keystore(self, context: ssl.SSLContext) -> None:
        kind = str(self.setting("ssl.keystore.type"))
        location = self.setting("ssl.keystore.location")
        chain, key = self.setting("ssl.keystore.certificate.chain"), self.setting("ssl.keystore.key")
        key_password = self.setting("ssl.key.password") or self.setting("ssl.keystore.password")
        if chain or key:
            if kind != "PEM" or not (chain and key):
                raise ConfigError(f"listener {self.listener}: ssl.keystore.certificate.chain and ssl.keystore.key go together, with ssl.keystore.type=PEM")
            load_pem_pair(context, str(chain).encode(), str(key).encode(), key_password)
            return
        if not location:
            raise ConfigError(f"listener {self.listener} uses TLS: set ssl.keystore.location (or ssl.keystore.certificate.chain and ssl.keystore.key)")
        data = Path(str(location)).read_bytes()
        if data.startswith(b"-----") or kind == "PEM" and not data.startswith(JKS_MAGIC):
            load_pem_pair(context, data, data, key_password)
            return
        check_not_jks(data, str(location))
        from cryptography.hazmat.primitives.serialization import pkcs12

        password = self.setting("ssl.keystore.password")
        try:
            private_key, cert, extra = pkcs12.load_key_and_certificates(data, str(password).encode() if password else None)
        except ValueError as e:
            raise ConfigError(f"ssl.keystore.location {location}: cannot read it as PKCS12 with ssl.keystore.password ({e})") from None
        if private_key is None or cert is None:
            raise ConfigError(f"ssl.keystore.location {location}: no private key with its certificate in it")
        load_key_objects(context, private_key, [cert, *extra])

    def _load_truststore(self, context: ssl.SSLContext, purpose: ssl.Purpose = ssl.Purpose.CLIENT_AUTH) -> None:
        location = self.setting("ssl.truststore.location")
        inline = self.setting("ssl.truststore.certificates")
        if inline:
            context.load_verify_locations(cadata=str(inline))
        elif location:
            data = Path(str(location)).read_bytes()
            if data.startswith(b"-----") or str(self.setting("ssl.truststore.type")) == "PEM":
                context.load_verify_locations(cafile=str(location))
            else:
                check_not_jks(data, str(location))
                context.load_verify_locations(cadata=pkcs12_certificates_pem(data, self.setting("ssl.truststore.password"), str(location)))
        else:
            context.load_default_certs(purpose)


def check_not_jks(data: bytes, location: str) -> None:
    if data.startswith(JKS_MAGIC):
        raise ConfigError(
            f"{location} is a JKS keystore, which fastlog cannot read: convert it with "
            f"`keytool -importkeystore -srckeystore {location} -destkeystore store.p12 -deststoretype PKCS12`"
        )


def pkcs12_certificates_pem(data: bytes, password: object, location: str) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

    try:
        store = pkcs12.load_pkcs12(data, str(password).encode() if password else None)
    except ValueError as e:
        raise ConfigError(f"ssl.truststore.location {location}: cannot read it as PKCS12 with ssl.truststore.password ({e})") from None
    certs = [c.certificate for c in store.additional_certs] + ([store.cert.certificate] if store.cert else [])
    if not certs:
        raise ConfigError(f"ssl.truststore.location {location}: no certificate in it")
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)


def load_pem_pair(context: ssl.SSLContext, chain_pem: bytes, key_pem: bytes, password: object) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
        key = load_pem_private_key(pem_block(key_pem, b"PRIVATE KEY"), str(password).encode() if password else None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"the keystore's PEM certificate chain or private key does not load ({e})") from None
    load_key_objects(context, key, certs)


def pem_block(data: bytes, kind: bytes) -> bytes:
    """The first PEM block whose label ends in `kind` (`PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`, ...)."""
    match = re.search(rb"-----BEGIN ([A-Z ]*" + kind + rb")-----.*?-----END \1-----", data, re.S)
    if match is None:
        raise ValueError(f"no {kind.decode()} PEM block")
    return match.group(0)


def load_key_objects(context: ssl.SSLContext, key: object, certs: list) -> None:
    """Loads a key and its chain through a private temporary file, the key encrypted with a
    one-time password (ssl loads keys from files only)."""
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, Encoding, PrivateFormat

    one_time = secrets.token_bytes(32)
    pem = b"".join(c.public_bytes(Encoding.PEM) for c in certs)
    pem += key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(one_time))  # type: ignore[attr-defined]
    fd, path = tempfile.mkstemp(prefix="fastlog-tls-", suffix=".pem")
    try:
        os.write(fd, pem)
        os.close(fd)
        context.load_cert_chain(path, password=one_time)
    finally:
        os.unlink(path)


# TLS 1.2 suites as Kafka (Java) names them -> OpenSSL's names, for the common ECDHE/DHE ones.
_IANA_WORDS = [("TLS_", ""), ("_WITH_", "-"), ("ECDHE_ECDSA", "ECDHE-ECDSA"), ("ECDHE_RSA", "ECDHE-RSA"), ("DHE_RSA", "DHE-RSA"),
               ("AES_128_GCM", "AES128-GCM"), ("AES_256_GCM", "AES256-GCM"), ("CHACHA20_POLY1305", "CHACHA20-POLY1305"),
               ("AES_128_CBC", "AES128"), ("AES_256_CBC", "AES256")]


def openssl_cipher_names(suites: str) -> str:
    """`ssl.cipher.suites` for OpenSSL: IANA names (Kafka's) translated, OpenSSL names kept;
    TLS 1.3's suites are always on in OpenSSL and are left out."""
    names = []
    for suite in (s.strip() for s in suites.split(",")):
        if suite in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256") or not suite:
            continue
        if suite.startswith("TLS_"):
            for iana, openssl in _IANA_WORDS:
                suite = suite.replace(iana, openssl)
            suite = re.sub(r"_SHA(\d*)$", lambda m: "-SHA" + m.group(1), suite)
        names.append(suite)
    return ":".join(names) or "DEFAULT"


@dataclass(frozen=True)
class MappingRule:
    """One of `ssl.principal.mapping.rules`: `RULE:pattern/replacement/[L|U]`, or DEFAULT."""

    pattern: Optional[re.Pattern]  # None: DEFAULT, the whole distinguished name
    replacement: str = ""
    case: str = ""

    def apply(self, name: str) -> Optional[str]:
        if self.pattern is None:
            return name
        if self.pattern.fullmatch(name) is None:
            return None
        result = self.pattern.sub(self.replacement, name)
        return result.lower() if self.case == "L" else result.upper() if self.case == "U" else result


_RULE = re.compile(r"\s*(?:(DEFAULT)|RULE:((?:\\/|[^/])*)/((?:\\/|[^/])*)/([LU]?))\s*(?:,|$)")


def parse_mapping_rules(text: str) -> list[MappingRule]:
    rules, at = [], 0
    text = text.strip()
    while at < len(text):
        match = _RULE.match(text, at)
        if match is None:
            raise ConfigError(f"ssl.principal.mapping.rules: cannot read {text[at:]!r} (RULE:pattern/replacement/[LU] or DEFAULT)")
        at = match.end()
        if match.group(1):
            rules.append(MappingRule(None))
            continue
        try:
            pattern = re.compile(match.group(2).replace("\\/", "/"))
        except re.error as e:
            raise ConfigError(f"ssl.principal.mapping.rules: {match.group(2)!r} is not a regular expression ({e})") from None
        replacement = re.sub(r"\$(\d)", r"\\\1", match.group(3).replace("\\/", "/"))
        rules.append(MappingRule(pattern, replacement, match.group(4)))
    return rules or [MappingRule(None)]


def certificate_principal(ssl_object: Any, rules: list[MappingRule]) -> Optional[str]:
    """The principal name of the client's certificate: its subject as RFC 2253 writes it
    (`CN=alice,OU=eng,O=acme`), through the mapping rules; None without a certificate."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    from cryptography import x509

    subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    for rule in rules:
        name = rule.apply(subject)
        if name is not None:
            return name
    raise ValueError(f"no rule of ssl.principal.mapping.rules applies to {subject!r}")


class QuorumTls:
    """TLS on the metadata quorum's connections (the controller listener is SSL): the node's
    keystore on both ends (a voter serving, a voter or broker connecting), the controller
    listener's ssl.* settings. Client certificates are required: the quorum's records are the
    cluster's ACLs and credentials, so only nodes with a certificate the truststore trusts
    (and, with an authorizer, whose principal is a super user) take part."""

    def __init__(self, config: "BrokerConfig") -> None:
        name = config.controller_listener_name
        self.listener = ListenerTls(config, name)
        if self.listener.context.verify_mode != ssl.CERT_REQUIRED:
            raise ConfigError(f"the metadata quorum is SSL: set listener.name.{name.lower()}.ssl.client.auth=required (its nodes prove who they are)")
        self.listener.current_client()  # loads now: a bad keystore stops the start

    def principal(self, stream: trio.SSLStream) -> Optional[str]:
        """The peer's certificate principal, mapped by ssl.principal.mapping.rules."""
        try:
            return certificate_principal(stream, self.listener.principal_rules)
        except ValueError:
            return None

    async def accept(self, stream: trio.SocketStream) -> trio.SSLStream:
        """The server side's handshake, bounded in time; trio.BrokenResourceError if it fails."""
        wrapped = trio.SSLStream(stream, self.listener.current(), server_side=True)
        with trio.fail_after(HANDSHAKE_SECONDS):
            await wrapped.do_handshake()
        return wrapped

    async def connect(self, stream: trio.SocketStream, host: str) -> trio.SSLStream:
        wrapped = trio.SSLStream(stream, self.listener.current_client(), server_hostname=host)
        with trio.fail_after(HANDSHAKE_SECONDS):
            await wrapped.do_handshake()
        return wrapped
