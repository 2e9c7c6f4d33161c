"""SASL/OAUTHBEARER (RFC 7628, Kafka's KIP-255): the client sends a JWT, checked against the
keys of a JWKS (KIP-768's `sasl.oauthbearer.*` settings).

The client's one message is `n,[a=<authzid>],\\x01auth=Bearer <token>\\x01[key=value\\x01...]\\x01`.
A token is accepted when its signature verifies with a key of the JWKS (by its `kid`; only
asymmetric algorithms, never `none` or a shared secret), it has not expired (`exp` required,
`sasl.oauthbearer.clock.skew.seconds` of leeway), its audience and issuer are the expected
ones where those are set, and it names a principal (`sasl.oauthbearer.sub.claim.name`, `sub`)
and when it was issued (`iat`, as Kafka requires).
A refused token gets Kafka's answer: a JSON challenge `{"status":"invalid_token"}`, then, once
the client acknowledges it with `\\x01`, SASL_AUTHENTICATION_FAILED.

The JWKS comes from `sasl.oauthbearer.jwks.endpoint.url`: a `file:` URL is re-read when the
file changes, an `http(s):` one fetched every `sasl.oauthbearer.jwks.endpoint.refresh.ms` and
again (at most once a second) when a token names a key not seen yet, so a rotated key works
without a restart. Fetches run in a worker thread. Unlike Kafka, fastlog has no validator of
unsigned tokens: OAUTHBEARER without a JWKS URL stops the start.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any, Optional

import jwt

from fastlog.config import ConfigError

if TYPE_CHECKING:
    from fastlog.config import BrokerConfig

log = logging.getLogger(__name__)

MECHANISM = "OAUTHBEARER"
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
FETCH_TIMEOUT_SECONDS = 10.0
UNKNOWN_KID_REFETCH_SECONDS = 1.0
INVALID_TOKEN = json.dumps({"status": "invalid_token"}, separators=(",", ":")).encode()
CONTROL_A = b"\x01"
# RFC 7628's client initial response: the GS2 header, then key=value pairs each ended by ^A.
GS2_HEADER = re.compile(rb"^n,(?:a=([^,]*))?,\x01")
KEY = re.compile(rb"^[A-Za-z]+$")


class InvalidToken(Exception):
    """Why a token was refused (logged; the client is told only `invalid_token`)."""


class JwksKeys:
    """The signing keys of a JWKS file or endpoint, by key id."""

    def __init__(self, url: str, refresh_ms: int) -> None:
        self.url = url
        self.refresh_seconds = refresh_ms / 1000
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("file", "http", "https"):
            raise ConfigError(f"sasl.oauthbearer.jwks.endpoint.url={url}: a file:, http: or https: URL")
        self.path = urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else None
        self._keys: dict[Optional[str], jwt.PyJWK] = {}
        self._loaded_at = float("-inf")  # time.monotonic() of the last fetch (or file read)
        self._file_stamp: Optional[tuple[int, int]] = None
        self._lock = threading.Lock()  # network loops' threads share one listener's keys
        if self.path is not None:  # a file that cannot be read now stops the start
            try:
                self._load()
            except (OSError, ValueError, TypeError, AttributeError, KeyError, jwt.PyJWTError) as e:
                raise ConfigError(f"sasl.oauthbearer.jwks.endpoint.url={url}: {type(e).__name__}: {e}") from None

    def needs_refresh(self, kid: Optional[str]) -> bool:
        """Whether the keys should be read again before checking a token signed by `kid`."""
        age = time.monotonic() - self._loaded_at
        if self.path is not None:
            return self._file_stamp != _stamp(self.path)
        if age >= self.refresh_seconds:
            return True
        return kid not in self._keys and age >= UNKNOWN_KID_REFETCH_SECONDS

    def refresh(self, kid: Optional[str] = None) -> None:
        """Reads the JWKS again if still due (blocking: call it from a worker thread). One read
        at a time: a login that finds one under way goes on with the keys there are, so many
        logins naming unknown keys cost one fetch, not one each. A failure is logged and the
        keys read before are kept."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if not self.needs_refresh(kid):  # another login's read just did it
                return
            self._load()
        except (OSError, ValueError, TypeError, AttributeError, KeyError, jwt.PyJWTError) as e:  # not a JWKS at all
            self._loaded_at = time.monotonic()  # retried after the refetch interval
            log.warning("could not read the JWKS at %s (%s: %s); keeping %d keys", self.url, type(e).__name__, e, len(self._keys))
        finally:
            self._lock.release()

    def key(self, kid: Optional[str]) -> Optional[jwt.PyJWK]:
        if kid is None and len(self._keys) == 1:  # a JWKS of one key, a token without kid
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def _load(self) -> None:
        if self.path is not None:
            stamp = _stamp(self.path)
            with open(self.path, "rb") as f:
                raw = f.read()
        else:
            stamp = None
            with urllib.request.urlopen(self.url, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310 (http(s) checked above)
                raw = response.read(1 << 20)
        keys = {}
        for key in jwt.PyJWKSet.from_json(raw.decode()).keys:
            if getattr(key, "public_key_use", None) in (None, "sig") and key.key_type != "oct":
                keys[key.key_id] = key
        self._keys, self._file_stamp, self._loaded_at = keys, stamp, time.monotonic()
        log.info("read %d signing keys from the JWKS at %s", len(keys), self.url)


def _stamp(path: str) -> Optional[tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class TokenValidator:
    """A listener's OAUTHBEARER settings and JWKS, read once at start."""

    def __init__(self, config: "BrokerConfig", listener: str) -> None:
        def setting(key: str) -> Any:
            return config.listener_setting(listener, key)

        url = setting("sasl.oauthbearer.jwks.endpoint.url")
        if not url:
            raise ConfigError(
                f"listener {listener}: OAUTHBEARER needs sasl.oauthbearer.jwks.endpoint.url (a JWKS file: or https: URL); "
                "fastlog does not accept unsigned tokens"
            )
        self.keys = JwksKeys(url, setting("sasl.oauthbearer.jwks.endpoint.refresh.ms"))
        audience = setting("sasl.oauthbearer.expected.audience") or ""
        self.audience = [a.strip() for a in audience.split(",") if a.strip()] or None
        self.issuer = setting("sasl.oauthbearer.expected.issuer") or None
        self.sub_claim = setting("sasl.oauthbearer.sub.claim.name")
        self.scope_claim = setting("sasl.oauthbearer.scope.claim.name")
        self.leeway = setting("sasl.oauthbearer.clock.skew.seconds")

    def validate(self, token: str) -> tuple[str, float]:
        """(the principal, when the token expires (epoch seconds)); InvalidToken if refused."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise InvalidToken(f"not a JWT: {e}") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise InvalidToken(f"algorithm {algorithm!r} is not accepted (only signatures by a JWKS key: {', '.join(ALGORITHMS)})")
        key = self.keys.key(header.get("kid"))
        if key is None:
            raise InvalidToken(f"no key {header.get('kid')!r} in the JWKS")
        try:
            claims = jwt.decode(
                token, key=key.key, algorithms=[algorithm], audience=self.audience, issuer=self.issuer, leeway=self.leeway,
                options={"require": ["exp", "iat", self.sub_claim], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as e:
            raise InvalidToken(str(e)) from None
        except (TypeError, ValueError) as e:  # a key of another type than the algorithm's
            raise InvalidToken(f"the key {header.get('kid')!r} cannot check a {algorithm} signature ({e})") from None
        principal = claims[self.sub_claim]
        if not isinstance(principal, str) or not principal.strip():
            raise InvalidToken(f"claim {self.sub_claim!r} is not a non-empty string")
        return principal, float(claims["exp"])


def parse_initial_response(message: bytes) -> tuple[Optional[str], str, dict[str, str]]:
    """(authzid or None, the token, extensions) of the client's message; ValueError if malformed."""
    header = GS2_HEADER.match(message)
    if header is None or not message.endswith(CONTROL_A + CONTROL_A):
        raise ValueError("not an OAUTHBEARER client response (n,[a=...],^Aauth=Bearer ...^A^A)")
    pairs = message[header.end() : -2].split(CONTROL_A)
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition(b"=")
        if not sep or not KEY.match(key):
            raise ValueError(f"malformed key=value pair {pair[:40]!r}")
        values[key.decode()] = value.decode("utf-8", "strict")
    auth = values.pop("auth", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ValueError("no auth=Bearer <token>")
    authzid = header.group(1).decode() if header.group(1) else None
    return authzid, token.strip(), values


class OAuthBearerServer:
    """One exchange: the client's token, and after a refusal the client's ^A."""

    def __init__(self, validator: TokenValidator) -> None:
        self.validator = validator
        self.refused: Optional[str] = None  # why the token was refused, once the challenge is sent
        self.expires_at: Optional[float] = None  # epoch seconds the accepted token expires

    def kid_of(self, token_message: bytes) -> Optional[str]:
        """The key id the client's token names (to refresh the JWKS first), or None."""
        try:
            _, token, _ = parse_initial_response(token_message)
            return jwt.get_unverified_header(token).get("kid")
        except (ValueError, UnicodeDecodeError, jwt.PyJWTError):
            return None

    def step(self, message: bytes) -> tuple[bytes, Optional[str]]:
        from fastlog.security.sasl import AuthenticationFailed

        if self.refused is not None:
            if message == CONTROL_A:
                raise AuthenticationFailed(INVALID_TOKEN.decode())
            raise AuthenticationFailed("expected ^A after the invalid_token challenge")
        try:
            authzid, token, _extensions = parse_initial_response(message)
        except (ValueError, UnicodeDecodeError) as e:  # as Kafka: refused at once, no challenge
            raise AuthenticationFailed(f"Invalid OAUTHBEARER client first message: {e}") from None
        try:
            principal, expires_at = self.validator.validate(token)
        except InvalidToken as e:
            self.refused = str(e)
            log.info("OAUTHBEARER token refused: %s", e)
            return INVALID_TOKEN, None
        if authzid is not None and authzid != principal:
            raise AuthenticationFailed(f"Authentication failed: Client requested an authorization id ({authzid}) that is different from the token's principal name ({principal})")
        self.expires_at = expires_at
        return b"", principal
