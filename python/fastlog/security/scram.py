"""SCRAM credentials (RFC 5802, RFC 7677): what the broker keeps of a user's password, and
where it keeps it.

A credential is the salt, the iteration count, StoredKey = H(HMAC(SaltedPassword, "Client
Key")) and ServerKey = HMAC(SaltedPassword, "Server Key"): enough to check a client's proof
and to prove the broker's identity, and not enough to log in as the user. Clients send the
salted password (AlterUserScramCredentials); the broker keeps only the derived keys.

A single node keeps them in `scram-credentials.json` in its data directory (written
atomically, mode 0600); a cluster keeps them in the replicated metadata, so every broker
checks the same credentials (`set_scram_credential`, `delete_scram_credential` records).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import trio

from fastlog.config import ConfigError
from fastlog.log_manager import write_atomically

if TYPE_CHECKING:
    from fastlog.broker import Broker

# AlterUserScramCredentials' mechanism codes (Kafka's ScramMechanism).
MECHANISM_CODES = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
CODES = {name: code for code, name in MECHANISM_CODES.items()}
HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MAX_ITERATIONS = 16384  # Kafka's upper bound
FILE_NAME = "scram-credentials.json"


@dataclass(frozen=True)
class ScramCredential:
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    def to_json(self) -> dict[str, Any]:
        return {
            "salt": base64.b64encode(self.salt).decode(),
            "stored_key": base64.b64encode(self.stored_key).decode(),
            "server_key": base64.b64encode(self.server_key).decode(),
            "iterations": self.iterations,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ScramCredential":
        b64 = base64.b64decode
        return cls(b64(data["salt"]), b64(data["stored_key"]), b64(data["server_key"]), int(data["iterations"]))


def credential_from_salted_password(mechanism: str, salt: bytes, salted_password: bytes, iterations: int) -> ScramCredential:
    digest = HASHES[mechanism]
    client_key = hmac.new(salted_password, b"Client Key", digest).digest()
    stored_key = hashlib.new(digest, client_key).digest()
    server_key = hmac.new(salted_password, b"Server Key", digest).digest()
    return ScramCredential(salt, stored_key, server_key, iterations)


def salted_password(mechanism: str, password: str, salt: bytes, iterations: int) -> bytes:
    """Hi(password, salt, i) of RFC 5802: what a client sends in AlterUserScramCredentials."""
    return hashlib.pbkdf2_hmac(HASHES[mechanism], password.encode(), salt, iterations)


def new_salt() -> bytes:
    return secrets.token_bytes(32)


class LocalScramStore:
    """A single node's credentials, in its data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self._users: dict[str, dict[str, ScramCredential]] = {}
        self._changing = trio.Lock()
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                self._users = {
                    user: {mech: ScramCredential.from_json(c) for mech, c in mechs.items()} for user, mechs in raw["users"].items()
                }
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise ConfigError(f"{self.path} does not hold readable SCRAM credentials ({type(e).__name__}: {e}); restore it, or move it away to start without SCRAM users") from None

    def get(self, user: str, mechanism: str) -> Optional[ScramCredential]:
        return self._users.get(user, {}).get(mechanism)

    def users(self) -> dict[str, dict[str, ScramCredential]]:
        return self._users

    async def change(self, upserts: list[tuple[str, str, ScramCredential]], deletions: list[tuple[str, str]], timeout: float) -> None:
        async with self._changing:  # one change at a time: each starts from the last one's result
            users = {user: dict(mechs) for user, mechs in self._users.items()}
            for user, mechanism in deletions:
                users.get(user, {}).pop(mechanism, None)
            for user, mechanism, credential in upserts:
                users.setdefault(user, {})[mechanism] = credential
            users = {user: mechs for user, mechs in users.items() if mechs}
            text = json.dumps({"version": 1, "users": {u: {m: c.to_json() for m, c in ms.items()} for u, ms in users.items()}}, indent=1)
            await trio.to_thread.run_sync(write_atomically, self.path, text, 0o600)
            self._users = users


class ClusterScramStore:
    """A cluster's credentials: in the metadata image, changed through the quorum."""

    def __init__(self, broker: "Broker") -> None:
        assert broker.controller is not None
        self.controller = broker.controller

    def get(self, user: str, mechanism: str) -> Optional[ScramCredential]:
        raw = self.controller.image.scram.get(user, {}).get(mechanism)
        return ScramCredential.from_json(raw) if raw else None

    def users(self) -> dict[str, dict[str, ScramCredential]]:
        return {u: {m: ScramCredential.from_json(c) for m, c in ms.items()} for u, ms in self.controller.image.scram.items()}

    async def change(self, upserts: list[tuple[str, str, ScramCredential]], deletions: list[tuple[str, str]], timeout: float) -> None:
        """One record for the whole request, applied once the quorum commits it."""
        image = self.controller.image
        wanted = [(u, m, c.to_json()) for u, m, c in upserts]
        record = {
            "type": "alter_scram_credentials", "deletions": [list(d) for d in deletions],
            "upserts": [{"user": u, "mechanism": m, **c} for u, m, c in wanted],
        }

        def applied() -> bool:
            gone = all(m not in image.scram.get(u, {}) for u, m in deletions)
            return gone and all(image.scram.get(u, {}).get(m) == c for u, m, c in wanted)

        await self.controller.propose_and_wait(record, applied, timeout)


def scram_store(broker: "Broker") -> LocalScramStore | ClusterScramStore:
    return ClusterScramStore(broker) if broker.controller is not None else LocalScramStore(broker.logs.data_dir)
