"""SASL authentication on SASL_PLAINTEXT and SASL_SSL listeners, as Kafka's
SaslServerAuthenticator does it.

A connection starts unauthenticated. It may ask ApiVersions (answered as usual) and then
sends SaslHandshake naming a mechanism. After a v1 handshake each SASL token comes in a
SaslAuthenticate request; after a v0 handshake (old clients) the tokens come as bare
size-prefixed frames without a request header, and the replies go back the same way. Any
other request before authentication closes the connection (Kafka's IllegalSaslState), and
until then no frame may exceed `sasl.server.max.receive.size`.

Mechanisms: PLAIN (users from the JAAS config, `jaas.py`), SCRAM-SHA-256/512 (RFC 5802,
credentials from `scram.py`) and OAUTHBEARER (JWTs checked against a JWKS, `oauthbearer.py`). A failed authentication is answered with
SASL_AUTHENTICATION_FAILED after `connection.failed.authentication.delay.ms`, logged with the
peer, and the connection closes; the delay slows password guessing from one peer.

With `connections.max.reauth.ms` (KIP-368), SaslAuthenticate tells the client how long its
session lasts; a client re-authenticates on the same connection (SaslHandshake and
SaslAuthenticate again, same mechanism and principal), and a request after the session
expired closes the connection. An OAUTHBEARER session also ends when its token expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING, Optional

import trio

from fastlog import protocol
from fastlog.framing import SIZE, ConnectionClosed
from fastlog.protocol import CodecError, ErrorCode
from fastlog.security import jaas
from fastlog.security.oauthbearer import OAuthBearerServer, TokenValidator
from fastlog.security.scram import HASHES, ScramCredential

if TYPE_CHECKING:
    from fastlog.broker import Broker
    from fastlog.config import BrokerConfig, Listener

log = logging.getLogger(__name__)

SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
API_VERSIONS = 18


class AuthenticationFailed(Exception):
    """The client's credentials were refused; the message is what the client is told."""


class PlainServer:
    """PLAIN (RFC 4616): one message, `authzid NUL authcid NUL password`."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def step(self, token: bytes) -> tuple[bytes, Optional[str]]:
        parts = token.split(b"\0")
        if len(parts) != 3:
            raise AuthenticationFailed(f"Invalid SASL/PLAIN response: expected 3 tokens, got {len(parts)}")
        authzid, user, password = (p.decode("utf-8", "replace") for p in parts)
        if not user or not password:
            raise AuthenticationFailed("Authentication failed: username or password not specified")
        if authzid and authzid != user:
            raise AuthenticationFailed("Authentication failed: Client requested an authorization id that is different from username")
        expected = self.users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            raise AuthenticationFailed("Authentication failed: Invalid username or password")
        return b"", user


class ScramServer:
    """SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802), server side: client-first, server-first,
    client-final, server-final. Written here rather than taken from a library because Kafka's
    server is lenient where RFC-exact libraries are not: the client-final nonce only has to
    end with the server's nonce (librdkafka 1.x sends its own nonce twice), and extensions
    after the nonce (`tokenauth=...`) are carried along."""

    def __init__(self, mechanism: str, broker: "Broker") -> None:
        self.mechanism = mechanism
        self.digest = HASHES[mechanism]
        self.broker = broker
        self.user: Optional[str] = None
        self._credential: Optional[ScramCredential] = None
        self._auth_prefix = ""  # client-first-bare "," server-first
        self._nonce = ""

    @property
    def _invalid(self) -> AuthenticationFailed:
        return AuthenticationFailed(f"Authentication failed during authentication due to invalid credentials with SASL mechanism {self.mechanism}")

    def step(self, token: bytes) -> tuple[bytes, Optional[str]]:
        try:
            message = token.decode("utf-8")
        except UnicodeDecodeError:
            raise self._invalid from None
        if self._credential is None:
            return self._first(message), None
        return self._final(message), self.user

    def _first(self, message: str) -> bytes:
        match = CLIENT_FIRST.fullmatch(message)
        if match is None:
            log.debug("SCRAM client-first message not understood: %r", message[:200])
            raise self._invalid
        self.user = unescape_saslname(match.group("user"))
        authzid = match.group("authzid")
        if authzid and unescape_saslname(authzid) != self.user:
            raise AuthenticationFailed("Authentication failed: Client requested an authorization id that is different from username")
        self._credential = self.broker.scram.get(self.user, self.mechanism)
        if self._credential is None:
            raise self._invalid
        self._nonce = match.group("nonce") + secrets.token_urlsafe(24)
        server_first = f"r={self._nonce},s={base64.b64encode(self._credential.salt).decode()},i={self._credential.iterations}"
        self._auth_prefix = f"{match.group('bare')},{server_first}"
        return server_first.encode()

    def _final(self, message: str) -> bytes:
        assert self._credential is not None
        without_proof, _, proof_text = message.rpartition(",p=")
        match = CLIENT_FINAL.fullmatch(without_proof)
        if match is None or not match.group("nonce").endswith(self._nonce):
            log.debug("SCRAM client-final message refused: %r", message[:200])
            raise self._invalid
        try:
            proof = base64.b64decode(proof_text, validate=True)
        except ValueError:
            raise self._invalid from None
        auth_message = f"{self._auth_prefix},{without_proof}".encode()
        client_signature = hmac.new(self._credential.stored_key, auth_message, self.digest).digest()
        if len(proof) != len(client_signature):
            raise self._invalid
        client_key = bytes(a ^ b for a, b in zip(proof, client_signature))
        if not hmac.compare_digest(hashlib.new(self.digest, client_key).digest(), self._credential.stored_key):
            raise self._invalid
        server_signature = hmac.new(self._credential.server_key, auth_message, self.digest).digest()
        return f"v={base64.b64encode(server_signature).decode()}".encode()


# RFC 5802's messages, as far as a server needs to read them (Kafka's ScramMessages).
_VALUE = r"[^,]*"
CLIENT_FIRST = re.compile(rf"[ny],(?:a=(?P<authzid>{_VALUE}))?,(?P<bare>(?:m={_VALUE},)?n=(?P<user>{_VALUE}),r=(?P<nonce>[^,]+)(?:,.*)?)", re.S)
CLIENT_FINAL = re.compile(rf"c=(?P<binding>{_VALUE}),r=(?P<nonce>[^,]+)(?:,.*)?", re.S)


def unescape_saslname(name: str) -> str:
    return name.replace("=2C", ",").replace("=3D", "=")


class ListenerSasl:
    """A SASL listener's settings, read once at start: a bad JAAS config stops the start, and
    no login reads a file."""

    def __init__(self, config: "BrokerConfig", listener: str) -> None:
        self.mechanisms: list[str] = str(config.listener_setting(listener, "sasl.enabled.mechanisms")).split(",")
        self.reauth_ms = int(config.listener_setting(listener, "connections.max.reauth.ms"))
        self.max_receive = int(config.listener_setting(listener, "sasl.server.max.receive.size"))
        self.plain_users = jaas.plain_users(config, listener) if "PLAIN" in self.mechanisms else {}
        self.oauth = TokenValidator(config, listener) if "OAUTHBEARER" in self.mechanisms else None


class SaslAuthenticator:
    """One connection's SASL state."""

    def __init__(self, broker: "Broker", listener: "Listener", peer: str) -> None:
        self.broker = broker
        self.listener = listener
        self.peer = peer
        settings = broker.sasl[listener.name]
        self.mechanisms = settings.mechanisms
        self.reauth_ms = settings.reauth_ms
        self.max_receive = settings.max_receive
        self._plain_users = settings.plain_users
        self._oauth = settings.oauth
        self.session_lifetime_ms = 0  # of the session last authenticated (0: no end)
        self.principal: Optional[str] = None  # the user, once authenticated
        self.mechanism: Optional[str] = None
        self.expires_at: Optional[float] = None  # trio time the session ends (re-authentication)
        self._server: Optional[PlainServer | ScramServer | OAuthBearerServer] = None
        self._raw_tokens = False  # after a v0 handshake: tokens are bare frames
        self._in_exchange = False  # a handshake was answered; tokens are expected

    @property
    def authenticated(self) -> bool:
        return self.principal is not None and not self._in_exchange

    async def intercept(self, frame: bytes | bytearray, api_key: int) -> Optional[list]:
        """The answer to `frame` when it belongs to the SASL exchange; None when the request
        is to be handled as usual. Raises ConnectionClosed for a request not allowed now."""
        if self._in_exchange and self._raw_tokens:
            return await self._raw_token(bytes(frame))
        if self.authenticated:
            if api_key in (SASL_HANDSHAKE, SASL_AUTHENTICATE) and self.session_lifetime_ms > 0:
                return await self._request(frame, api_key)
            if self.expires_at is not None and trio.current_time() > self.expires_at:
                why = f"connections.max.reauth.ms={self.reauth_ms}" if self.session_lifetime_ms == self.reauth_ms else "its OAUTHBEARER token expired"
                raise ConnectionClosed(f"the SASL session of {self.principal} ended ({why}) without re-authentication", "reauthentication_expired")
            return None
        if api_key == API_VERSIONS and not self._in_exchange:
            return None
        if api_key in (SASL_HANDSHAKE, SASL_AUTHENTICATE):
            return await self._request(frame, api_key)
        name = protocol.API_BY_KEY[api_key].name if api_key in protocol.API_BY_KEY else f"api key {api_key}"
        raise ConnectionClosed(f"unexpected {name} request during SASL authentication (the client's security.protocol is not SASL?)", "illegal_sasl_state")

    async def _request(self, frame: bytes | bytearray, api_key: int) -> list:
        try:
            header, body, _ = protocol.decode_request(frame)
        except CodecError as e:
            raise ConnectionClosed(f"undecodable request during SASL authentication: {e}", "undecodable_request") from None
        version = header.request_api_version
        if api_key == SASL_HANDSHAKE:
            response = self._handshake(body, version)
            parts = protocol.encode_response(header.correlation_id, api_key, version, response).framed_parts()
            if response.error_code:
                raise ConnectionClosed(f"SASL mechanism {body.mechanism!r} is not enabled on listener {self.listener.name} (offered: {', '.join(self.mechanisms)})", "unsupported_sasl_mechanism", final=parts)
            return parts
        if not self._in_exchange or self._raw_tokens:
            R = protocol.SaslAuthenticateResponse
            response = R(error_code=ErrorCode.ILLEGAL_SASL_STATE, error_message="SaslAuthenticate before a SaslHandshake v1", auth_bytes=b"")
            parts = protocol.encode_response(header.correlation_id, api_key, version, response).framed_parts()
            raise ConnectionClosed("SaslAuthenticate before a SaslHandshake v1", "illegal_sasl_state", final=parts)
        return await self._authenticate(header, body, version)

    def _handshake(self, body: object, version: int) -> object:
        R = protocol.SaslHandshakeResponse
        mechanism = getattr(body, "mechanism", "")
        if mechanism not in self.mechanisms or self.principal is not None and mechanism != self.mechanism:
            return R(error_code=ErrorCode.UNSUPPORTED_SASL_MECHANISM, mechanisms=list(self.mechanisms))
        self.mechanism = mechanism
        self._server = self._new_server(mechanism)
        self._raw_tokens = version == 0
        self._in_exchange = True
        return R(error_code=0, mechanisms=list(self.mechanisms))

    def _new_server(self, mechanism: str) -> PlainServer | ScramServer | OAuthBearerServer:
        if mechanism == "PLAIN":
            return PlainServer(self._plain_users)
        if mechanism == "OAUTHBEARER":
            assert self._oauth is not None
            return OAuthBearerServer(self._oauth)
        assert mechanism in HASHES
        return ScramServer(mechanism, self.broker)

    async def _authenticate(self, header: object, body: object, version: int) -> list:
        R = protocol.SaslAuthenticateResponse
        correlation_id = header.correlation_id  # type: ignore[attr-defined]
        token = bytes(body.auth_bytes)  # type: ignore[attr-defined]
        await self._fresh_keys(token)
        try:
            reply, principal = self._step(token)
        except AuthenticationFailed as e:
            response = R(error_code=ErrorCode.SASL_AUTHENTICATION_FAILED, error_message=str(e), auth_bytes=b"")
            parts = protocol.encode_response(correlation_id, SASL_AUTHENTICATE, version, response).framed_parts()
            raise await self._failed(str(e), parts) from None
        response = R(error_code=0, auth_bytes=reply)
        if version >= 1:
            response.session_lifetime_ms = self.session_lifetime_ms if principal is not None else 0
        return protocol.encode_response(correlation_id, SASL_AUTHENTICATE, version, response).framed_parts()

    async def _raw_token(self, token: bytes) -> list:
        await self._fresh_keys(token)
        try:
            reply, _ = self._step(token)
        except AuthenticationFailed as e:
            raise await self._failed(str(e), None) from None  # v0: Kafka just closes
        return [SIZE.pack(len(reply)), reply]

    async def _fresh_keys(self, token: bytes) -> None:
        """OAUTHBEARER: reads the JWKS again first when it changed, is due, or lacks the token's key."""
        server = self._server
        if isinstance(server, OAuthBearerServer) and server.refused is None:
            keys, kid = server.validator.keys, server.kid_of(token)
            if keys.needs_refresh(kid):
                await trio.to_thread.run_sync(keys.refresh, kid)

    def _step(self, token: bytes) -> tuple[bytes, Optional[str]]:
        assert self._server is not None and self.mechanism is not None
        reply, principal = self._server.step(token)
        if principal is not None:
            if self.principal is not None and principal != self.principal:
                raise AuthenticationFailed(f"Cannot change principals during re-authentication from {self.principal} to {principal}")
            first = self.principal is None
            self.principal = principal
            self._in_exchange = False
            self.session_lifetime_ms = self._session_lifetime_ms()
            self.expires_at = trio.current_time() + self.session_lifetime_ms / 1000 if self.session_lifetime_ms > 0 else None
            self.broker.metrics.count_authentication(self.listener.name, self.mechanism, True)
            log.log(logging.DEBUG if not first else logging.INFO, "%s authenticated %s from %s with %s", self.listener.name, principal, self.peer, self.mechanism,
                    extra={"peer": self.peer, "principal": principal})
        return reply, principal

    def _session_lifetime_ms(self) -> int:
        """How long the session lasts (0: no end): connections.max.reauth.ms, or less when an
        OAUTHBEARER token expires sooner; as Kafka, a token's expiry ends the session even
        without connections.max.reauth.ms."""
        limits = [self.reauth_ms] if self.reauth_ms > 0 else []
        expires_at = getattr(self._server, "expires_at", None)
        if expires_at is not None:
            limits.append(max(1, int((expires_at - time.time()) * 1000)))
        return min(limits, default=0)

    async def _failed(self, message: str, final: Optional[list]) -> ConnectionClosed:
        """Counts the failure and waits the failed-authentication delay; the connection then
        closes after sending `final`."""
        mechanism = self.mechanism or "?"
        self.broker.metrics.count_authentication(self.listener.name, mechanism, False)
        await trio.sleep(self.broker.config["connection.failed.authentication.delay.ms"] / 1000)
        return ConnectionClosed(f"failed authentication with {mechanism} on {self.listener.name}: {message}", "authentication_failed", final=final)
