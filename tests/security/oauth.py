"""OAuth material made at test time for SASL/OAUTHBEARER: signing keys (RSA, EC, Ed25519), a
JWKS (RFC 7517) as a dict or a file, JWTs signed with PyJWT carrying the claims a test
chooses, the forgeries a broker must refuse (`alg: none`, HMAC keyed with a public key), the
client's first message (RFC 7628) and a JWKS served over http from a thread."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey]
CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
DROP = object()  # a claim given this value is left out of the token


@dataclass
class SigningKey:
    """A private key with its key id and algorithm; its public half goes into a JWKS."""

    kid: str
    alg: str
    private: PrivateKey

    def jwk(self) -> dict:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            key = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            key = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            key = OKPAlgorithm.to_jwk(public, as_dict=True)
        return {**key, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims: dict, headers: Optional[dict] = None, kid: Optional[str] = None) -> str:
        """A JWT of `claims` signed with this key; the header names `kid` (this key's unless given)."""
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": kid or self.kid, **(headers or {})})


def rsa_key(kid: str, alg: str = "RS256", bits: int = 2048) -> SigningKey:
    assert alg[:2] in ("RS", "PS"), alg
    return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=bits))


def ec_key(kid: str, alg: str = "ES256") -> SigningKey:
    return SigningKey(kid, alg, ec.generate_private_key(CURVES[alg]()))


def ed25519_key(kid: str) -> SigningKey:
    return SigningKey(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate())


def jwks(*keys: SigningKey) -> dict:
    return {"keys": [k.jwk() for k in keys]}


def write_jwks(path: Path, *keys: SigningKey) -> None:
    """Writes the JWKS of `keys` as a rotation would: a new file renamed over the old one, with
    a modification time other than the old file's (a rewrite within one tick of a coarse
    filesystem clock would otherwise look unchanged)."""
    previous = path.stat().st_mtime_ns if path.exists() else 0
    staged = path.with_name(path.name + ".new")
    staged.write_text(json.dumps(jwks(*keys), indent=1))
    stamp = max(time.time_ns(), previous + 1_000_000_000)
    os.utime(staged, ns=(stamp, stamp))
    os.replace(staged, path)


@dataclass
class Issuer:
    """An identity provider: its issuer name, the audience its tokens are for, and its keys."""

    issuer: str
    audience: str
    keys: list[SigningKey] = field(default_factory=list)

    def claims(self, sub: Any = "alice", lifetime: float = 300, **overrides: Any) -> dict:
        """Claims of a token for `sub` that expires in `lifetime` seconds; an override set to
        DROP removes that claim (sub=DROP: a token without a subject)."""
        now = int(time.time())
        claims: dict[str, Any] = {"sub": sub, "aud": self.audience, "iss": self.issuer, "iat": now, "exp": int(now + lifetime),
                                  "scope": "kafka.read kafka.write"}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not DROP}

    def token(self, sub: Any = "alice", lifetime: float = 300, key: Optional[SigningKey] = None, headers: Optional[dict] = None,
              kid: Optional[str] = None, **overrides: Any) -> str:
        return (key or self.keys[0]).sign(self.claims(sub, lifetime, **overrides), headers=headers, kid=kid)

    def issue(self, sub: str = "alice", lifetime: float = 300) -> tuple[str, int]:
        """A token and its exp (whole epoch seconds): what a client's token callback returns, so
        the client refreshes by the token's real expiry, not a rounder one."""
        claims = self.claims(sub, lifetime)
        return self.keys[0].sign(claims), claims["exp"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict, claims: dict) -> str:
    return b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + b64url(json.dumps(claims, separators=(",", ":")).encode())


def unsigned_token(claims: dict, kid: Optional[str] = None) -> str:
    """`alg: none` (RFC 7519 section 6): no signature at all."""
    header = {"alg": "none", "typ": "JWT", **({"kid": kid} if kid else {})}
    return _segments(header, claims) + "."


def hmac_token(claims: dict, secret: bytes, kid: Optional[str] = None, alg: str = "HS256") -> str:
    """An HMAC-signed token; with a public key's PEM as `secret`, the algorithm-confusion
    forgery a verifier that trusts the token's `alg` would accept. Made by hand: PyJWT
    rightly refuses to key an HMAC with an asymmetric key."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = _segments({"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}, claims)
    return signing_input + "." + b64url(hmac.new(secret, signing_input.encode(), digest).digest())


def client_first_message(token: str, authzid: str = "", extensions: Optional[dict[str, str]] = None) -> bytes:
    """The OAUTHBEARER client's one message (RFC 7628 section 3.1, as Kafka's clients send it):
    `n,[a=authzid],^Aauth=Bearer <token>^A[key=value^A...]^A`."""
    pairs = "".join(f"{k}={v}\x01" for k, v in (extensions or {}).items())
    return f"n,{'a=' + authzid if authzid else ''},\x01auth=Bearer {token}\x01{pairs}\x01".encode()


class LoopbackServer:
    """An HTTP server on 127.0.0.1 in a thread (a `with` block runs it): subclasses answer a
    request with `answer(method, path, headers, body)` -> (status, JSON-able body) or None (404)."""

    PATH = "/"

    def __init__(self) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                answer = outer.answer(method, self.path, self.headers, body) if self.path == outer.PATH else None
                if answer is None or answer[0] != 200:
                    self.send_error(answer[0] if answer else 404)
                    return
                data = json.dumps(answer[1]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's names)
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def answer(self, method: str, path: str, headers: Any, body: bytes) -> Optional[tuple[int, Any]]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.PATH}"

    def __enter__(self) -> Any:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class JwksServer(LoopbackServer):
    """A JWKS endpoint: `keys` may be changed at any time; `fetches` counts the GETs."""

    PATH = "/.well-known/jwks.json"

    def __init__(self, *keys: SigningKey) -> None:
        super().__init__()
        self.keys = list(keys)
        self.fetches = 0
        self._lock = threading.Lock()

    def answer(self, method: str, path: str, headers: Any, body: bytes) -> Optional[tuple[int, Any]]:
        if method != "GET":
            return None
        with self._lock:
            self.fetches += 1
            return 200, jwks(*self.keys)

    def set_keys(self, *keys: SigningKey) -> None:
        with self._lock:
            self.keys = list(keys)

    def fetch_count(self) -> int:
        with self._lock:
            return self.fetches


class TokenEndpoint(LoopbackServer):
    """An OAuth 2 token endpoint (client credentials grant): what librdkafka's
    `sasl.oauthbearer.method=oidc` asks for tokens. It checks the client's id and secret (HTTP
    Basic) and answers a JWT the issuer signs for that client."""

    PATH = "/oauth2/token"

    def __init__(self, issuer: "Issuer", clients: dict[str, str], lifetime: float = 300) -> None:
        super().__init__()
        self.issuer, self.clients, self.lifetime = issuer, clients, lifetime
        self.issued = 0

    def answer(self, method: str, path: str, headers: Any, body: bytes) -> Optional[tuple[int, Any]]:
        scheme, _, encoded = (headers.get("Authorization") or "").partition(" ")
        client_id, _, secret = base64.b64decode(encoded or "").decode(errors="replace").partition(":") if scheme == "Basic" else ("", "", "")
        if method != "POST" or self.clients.get(client_id) != secret:
            return 401, None
        self.issued += 1
        token = self.issuer.token(sub=client_id, lifetime=self.lifetime)
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": int(self.lifetime)}
