"""Kafka's ACL model and its built-in authorizer's rules (StandardAuthorizer's).

An ACL (`AclBinding`) says that a principal (`User:alice`, or `User:*` for everyone), from a
host (an IP, or `*`), is ALLOWed or DENYed an operation on the resources a pattern names: a
LITERAL name (`*` is every resource of the type) or a PREFIXED one (every name that starts
with it). A request is decided as Kafka decides it:

1. a principal listed in `super.users` may do everything;
2. a matching DENY wins over any ALLOW;
3. a matching ALLOW allows; ALLOW of READ, WRITE, DELETE or ALTER implies DESCRIBE, and ALLOW
   of ALTER_CONFIGS implies DESCRIBE_CONFIGS (a DENY implies nothing beyond its own
   operation; ALL stands for every operation);
4. with no ACL on the resource at all, `allow.everyone.if.no.acl.found` decides (default:
   denied).

ACLs are kept by an `AclStore`: a single node's in `acls.json` in its data directory; a
cluster's in the metadata log (`create_acls` / `delete_acls` records), so every broker
decides alike. Decisions are cached until the ACLs change: the Produce path asks once per
topic and principal, not per request.
"""

from __future__ import annotations

import json
import logging
import time
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple, Optional

import trio

from fastlog.config import ConfigError
from fastlog.log_manager import write_atomically

if TYPE_CHECKING:
    from fastlog.broker import Broker
    from fastlog.config import BrokerConfig

log = logging.getLogger(__name__)

FILE_NAME = "acls.json"
CLUSTER_NAME = "kafka-cluster"  # the one name of the CLUSTER resource
WILDCARD = "*"
WILDCARD_PRINCIPAL = "User:*"
# authorizer.class.name values that mean the built-in authorizer (Kafka's KRaft and ZooKeeper
# class names, so an existing server.properties works unchanged).
BUILT_IN_AUTHORIZERS = frozenset({
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
    "kafka.security.auth.SimpleAclAuthorizer",
    "fastlog",
})
CACHED_DECISIONS = 100_000  # the cache is emptied when it holds more
DENIAL_LOG_SECONDS = 10.0  # one log line per (principal, operation, resource) this often


def host_of(peer: str) -> str:
    """The IP address of a `host:port` peer (what ACLs' hosts are matched against)."""
    return peer.rsplit(":", 1)[0]


class ResourceType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class Permission(IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


O = Operation
# The operations each resource type has (Kafka's AclEntry.supportedOperations): what the
# authorized-operations bit fields of Metadata, DescribeCluster and DescribeGroups range over.
OPERATIONS_OF = {
    ResourceType.TOPIC: (O.READ, O.WRITE, O.CREATE, O.DELETE, O.ALTER, O.DESCRIBE, O.DESCRIBE_CONFIGS, O.ALTER_CONFIGS),
    ResourceType.GROUP: (O.READ, O.DELETE, O.DESCRIBE),
    ResourceType.CLUSTER: (O.CREATE, O.ALTER, O.DESCRIBE, O.CLUSTER_ACTION, O.DESCRIBE_CONFIGS, O.ALTER_CONFIGS, O.IDEMPOTENT_WRITE),
    ResourceType.TRANSACTIONAL_ID: (O.WRITE, O.DESCRIBE),
    ResourceType.DELEGATION_TOKEN: (O.DESCRIBE,),
    ResourceType.USER: (O.CREATE_TOKENS, O.DESCRIBE_TOKENS),
}
# An ALLOW of any of these operations allows the key too.
IMPLIED_BY = {
    O.DESCRIBE: frozenset({O.DESCRIBE, O.READ, O.WRITE, O.DELETE, O.ALTER, O.ALL}),
    O.DESCRIBE_CONFIGS: frozenset({O.DESCRIBE_CONFIGS, O.ALTER_CONFIGS, O.ALL}),
}


def operations_bits(operations: Iterable[int]) -> int:
    """An authorized-operations field: bit n set for operation code n."""
    return sum(1 << int(op) for op in set(operations))


class AclBinding(NamedTuple):
    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission: int

    def describe(self) -> str:
        return (f"{Permission(self.permission).name} {self.principal} from {self.host} {Operation(self.operation).name} on "
                f"{ResourceType(self.resource_type).name} {PatternType(self.pattern_type).name} {self.resource_name!r}")

    def to_json(self) -> list:
        return list(self)

    @classmethod
    def from_json(cls, raw: list) -> "AclBinding":
        rt, name, pt, principal, host, op, perm = raw
        return cls(int(rt), str(name), int(pt), str(principal), str(host), int(op), int(perm))


class AclFilter(NamedTuple):
    """DescribeAcls' and DeleteAcls' filter: None (or ANY) matches everything in its place."""

    resource_type: int
    resource_name: Optional[str]
    pattern_type: int
    principal: Optional[str]
    host: Optional[str]
    operation: int
    permission: int

    def invalid(self) -> Optional[str]:
        """Why Kafka refuses this filter (INVALID_REQUEST), or None."""
        for value, kind in ((self.resource_type, ResourceType), (self.pattern_type, PatternType), (self.operation, Operation), (self.permission, Permission)):
            if value not in kind._value2member_map_ or value == 0:
                return f"unknown {kind.__name__} code {value}"
        return None

    def matches(self, acl: AclBinding) -> bool:
        if self.resource_type != ResourceType.ANY and acl.resource_type != self.resource_type:
            return False
        if not self._matches_pattern(acl):
            return False
        if self.principal is not None and acl.principal != self.principal:
            return False
        if self.host is not None and acl.host != self.host:
            return False
        if self.operation != Operation.ANY and acl.operation != self.operation:
            return False
        return self.permission == Permission.ANY or acl.permission == self.permission

    def _matches_pattern(self, acl: AclBinding) -> bool:
        if self.pattern_type == PatternType.MATCH:  # the ACLs that apply to the named resource
            if self.resource_name is None:
                return True
            if acl.pattern_type == PatternType.LITERAL:
                return acl.resource_name in (self.resource_name, WILDCARD)
            return self.resource_name.startswith(acl.resource_name)
        if self.pattern_type != PatternType.ANY and acl.pattern_type != self.pattern_type:
            return False
        return self.resource_name is None or acl.resource_name == self.resource_name


def invalid_binding(acl: AclBinding) -> Optional[str]:
    """Why Kafka refuses to create this ACL (INVALID_REQUEST), or None."""
    if acl.resource_type not in OPERATIONS_OF:
        return f"resource type {acl.resource_type} cannot have ACLs"
    if acl.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
        return "an ACL's pattern type is LITERAL or PREFIXED"
    if acl.operation not in Operation._value2member_map_ or acl.operation in (O.UNKNOWN, O.ANY):
        return f"invalid operation {acl.operation}"
    if acl.permission not in (Permission.ALLOW, Permission.DENY):
        return f"invalid permission type {acl.permission}"
    if not acl.resource_name:
        return "the resource name is empty"
    if acl.resource_type == ResourceType.CLUSTER and acl.resource_name != CLUSTER_NAME:
        return f"the only valid name for the CLUSTER resource is {CLUSTER_NAME}"
    if acl.pattern_type == PatternType.PREFIXED and acl.resource_name == WILDCARD:
        return "a PREFIXED pattern cannot be the wildcard '*'"
    kind, sep, name = acl.principal.partition(":")
    if not sep or not kind or not name:
        return f"principal {acl.principal!r} is not TYPE:NAME (User:alice)"
    if not acl.host:
        return "the host is empty (use * for every host)"
    return None


class _Index:
    """The ACLs of one resource type, arranged for lookups by resource name."""

    def __init__(self) -> None:
        self.literal: dict[str, list[AclBinding]] = {}
        self.prefixed: list[AclBinding] = []

    def add(self, acl: AclBinding) -> None:
        if acl.pattern_type == PatternType.LITERAL:
            self.literal.setdefault(acl.resource_name, []).append(acl)
        else:
            self.prefixed.append(acl)

    def applying_to(self, name: str) -> list[AclBinding]:
        found = list(self.literal.get(name, ())) + list(self.literal.get(WILDCARD, ()) if name != WILDCARD else ())
        found += [acl for acl in self.prefixed if name.startswith(acl.resource_name)]
        return found


class Authorizer:
    """Decides requests against the ACLs an `AclStore` keeps."""

    def __init__(self, store: "AclStore", super_users: Iterable[str], allow_if_no_acl: bool, on_denied: Optional[Callable[[str, str], None]] = None) -> None:
        self.store = store
        self.super_users = frozenset(super_users)
        self.allow_if_no_acl = allow_if_no_acl
        self.on_denied = on_denied  # (operation, resource type) of each logged denial, for the metrics
        # (store version, ACLs indexed by resource type, cached decisions), replaced as one:
        # network loops' threads decide at once, and a decision made on older ACLs must not
        # land in the cache of newer ones.
        self._state: tuple[int, dict[int, _Index], dict[tuple, bool]] = (-1, {}, {})
        self._denials_logged: dict[tuple, tuple[float, int]] = {}  # -> (when last logged, refusals not logged since)

    def _current(self) -> tuple[int, dict[int, _Index], dict[tuple, bool]]:
        state = self._state
        version = self.store.version
        if version != state[0]:
            index: dict[int, _Index] = {}
            for acl in self.store.bindings():
                index.setdefault(acl.resource_type, _Index()).add(acl)
            state = self._state = (version, index, {})
        return state

    def authorize(self, principal: str, host: str, operation: int, resource_type: int, name: str) -> bool:
        """Whether `User:<principal>` from `host` may do `operation` on the resource."""
        _, index, decisions = self._current()
        key = (principal, host, operation, resource_type, name)
        decision = decisions.get(key)
        if decision is None:
            decision = self._decide(index, f"User:{principal}", host, operation, resource_type, name)
            if len(decisions) >= CACHED_DECISIONS:
                decisions.clear()
            decisions[key] = decision
        return decision

    def _decide(self, indexes: dict[int, _Index], principal: str, host: str, operation: int, resource_type: int, name: str) -> bool:
        if principal in self.super_users:
            return True
        index = indexes.get(resource_type)
        acls = index.applying_to(name) if index is not None else []
        if not acls:
            return self.allow_if_no_acl
        allowed_by = IMPLIED_BY.get(Operation(operation), frozenset({operation, O.ALL}))
        allowed = False
        for acl in acls:
            if acl.principal not in (principal, WILDCARD_PRINCIPAL) or acl.host not in (host, WILDCARD):
                continue
            if acl.permission == Permission.DENY and acl.operation in (operation, O.ALL):
                return False
            if acl.permission == Permission.ALLOW and acl.operation in allowed_by:
                allowed = True
        return allowed

    def authorized_operations(self, principal: str, host: str, resource_type: int, name: str) -> int:
        """The bit field of the operations allowed on the resource (Kafka's authorizedOperations)."""
        return operations_bits(op for op in OPERATIONS_OF[ResourceType(resource_type)] if self.authorize(principal, host, op, resource_type, name))

    def authorize_any(self, principal: str, host: str, operation: int, resource_type: int) -> bool:
        """Whether some resource of the type may get the operation (Kafka's
        authorizeByResourceType, KIP-679: an idempotent producer needs WRITE on some topic)."""
        _, indexes, _ = self._current()
        user = f"User:{principal}"
        if user in self.super_users:
            return True
        # As Kafka's authorizeByResourceType: allowed on the type's wildcard resource settles it
        # (with allow.everyone.if.no.acl.found, a type without ACLs there); else the patterns decide.
        if self.allow_if_no_acl and self.authorize(principal, host, operation, resource_type, WILDCARD):
            return True
        index = indexes.get(resource_type)
        if index is None:
            return False
        acls = [acl for acls in index.literal.values() for acl in acls] + index.prefixed
        mine = [a for a in acls if a.principal in (user, WILDCARD_PRINCIPAL) and a.host in (host, WILDCARD)]
        denials = [a for a in mine if a.permission == Permission.DENY and a.operation in (operation, O.ALL)]
        denied_names = {a.resource_name for a in denials if a.pattern_type == PatternType.LITERAL}
        denied_prefixes = [a.resource_name for a in denials if a.pattern_type == PatternType.PREFIXED]
        if WILDCARD in denied_names:
            return False
        allowed_by = IMPLIED_BY.get(Operation(operation), frozenset({operation, O.ALL}))
        for acl in mine:
            if acl.permission != Permission.ALLOW or acl.operation not in allowed_by:
                continue
            if acl.pattern_type == PatternType.LITERAL and acl.resource_name in denied_names:
                continue
            if not any(acl.resource_name.startswith(prefix) for prefix in denied_prefixes):
                return True
        return False

    def log_denied(self, principal: str, peer: str, operation: int, resource_type: int, name: str, api: str) -> None:
        """A refused request: counted, and logged; the same principal, operation and resource
        refused again within DENIAL_LOG_SECONDS is counted into the next line logged for them
        ("and N more since"), so a client retrying in a loop does not flood the log and no
        refusal goes unrecorded."""
        if self.on_denied is not None:
            self.on_denied(Operation(operation).name, ResourceType(resource_type).name)
        key = (principal, operation, resource_type, name)
        now = time.monotonic()
        last, unlogged = self._denials_logged.get(key, (-DENIAL_LOG_SECONDS, 0))
        if now - last < DENIAL_LOG_SECONDS:
            self._denials_logged[key] = (last, unlogged + 1)
            return
        if len(self._denials_logged) >= 10_000:
            self._denials_logged.clear()
        self._denials_logged[key] = (now, 0)
        more = f"; and {unlogged} more since {now - last:.0f} s ago" if unlogged else ""
        log.info(
            "denied: principal User:%s from %s may not %s %s %r (%s)%s", principal, peer, Operation(operation).name,
            ResourceType(resource_type).name, name, api, more,
            extra={"peer": peer, "principal": principal, "operation": Operation(operation).name, "resource": f"{ResourceType(resource_type).name}:{name}"},
        )


class LocalAclStore:
    """A single node's ACLs, in its data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self._acls: frozenset[AclBinding] = frozenset()
        self.version = 0
        self._changing = trio.Lock()  # one change at a time: each starts from the last one's result
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                self._acls = frozenset(AclBinding.from_json(a) for a in raw["acls"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise ConfigError(f"{self.path} does not hold readable ACLs ({type(e).__name__}: {e}); restore it, or move it away to start without ACLs") from None

    def bindings(self) -> frozenset[AclBinding]:
        return self._acls

    async def change(self, added: Iterable[AclBinding], removed: Iterable[AclBinding], timeout: float) -> None:
        async with self._changing:
            acls = (self._acls - frozenset(removed)) | frozenset(added)
            text = json.dumps({"version": 1, "acls": sorted(a.to_json() for a in acls)}, indent=1)
            await trio.to_thread.run_sync(write_atomically, self.path, text, 0o600)
            self._acls = acls
            self.version += 1


class ClusterAclStore:
    """A cluster's ACLs: the metadata image's, changed through the metadata quorum."""

    def __init__(self, broker: "Broker") -> None:
        assert broker.controller is not None
        self.controller = broker.controller

    @property
    def version(self) -> int:
        return self.controller.image.acls_version

    def bindings(self) -> frozenset[AclBinding]:
        return self.controller.image.acls

    async def change(self, added: Iterable[AclBinding], removed: Iterable[AclBinding], timeout: float) -> None:
        """One record for the whole request, applied once the quorum commits it."""
        added, removed = list(added), list(removed)
        record = {"type": "change_acls", "added": [a.to_json() for a in added], "removed": [a.to_json() for a in removed]}
        image = self.controller.image

        def applied() -> bool:
            return all(a in image.acls for a in added) and not any(a in image.acls and a not in added for a in removed)

        await self.controller.propose_and_wait(record, applied, timeout)


AclStore = LocalAclStore | ClusterAclStore


def authorizer_for(broker: "Broker", config: "BrokerConfig") -> Optional[Authorizer]:
    """The broker's authorizer, or None when `authorizer.class.name` is empty (every request
    is allowed, as in Kafka without an authorizer)."""
    name = config["authorizer.class.name"]
    if not name:
        return None
    if name not in BUILT_IN_AUTHORIZERS:
        raise ConfigError(f"authorizer.class.name={name}: fastlog has the built-in authorizer only ({', '.join(sorted(BUILT_IN_AUTHORIZERS))})")
    super_users = [u.strip() for u in (config["super.users"] or "").split(";") if u.strip()]
    for user in super_users:
        if ":" not in user:
            raise ConfigError(f"super.users: {user!r} is not TYPE:NAME (User:admin)")
    store: AclStore = ClusterAclStore(broker) if broker.controller is not None else LocalAclStore(broker.logs.data_dir)
    return Authorizer(store, super_users, config["allow.everyone.if.no.acl.found"], broker.metrics.count_authorization_denied)
