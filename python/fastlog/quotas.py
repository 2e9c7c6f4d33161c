"""Client quotas (Kafka's KIP-13, KIP-55, KIP-124, KIP-257, KIP-599, KIP-612): how much of the
broker a user or client id may use, and the throttling that holds them to it.

- Entities: `user`, `client-id`, both together, or `ip`; a name of None is the default for
  that type. Keys: `producer_byte_rate` and `consumer_byte_rate` (bytes/s of Produce requests
  and Fetch responses), `request_percentage` (percent of one thread's time spent handling the
  client's requests), `controller_mutation_rate` (partitions created or deleted per second),
  and for `ip` entities `connection_creation_rate` (new connections per second).
- Which quota applies to a (user, client id) is Kafka's order (KIP-55): user and client id,
  user and default client, user, default user and client id, default user and default client,
  default user, client id, default client. Whoever it applies to is measured by a sensor of
  their own, keyed as Kafka tags its metrics (`quota_tags`), so a default quota limits each
  client by itself while a user's quota is shared by all of that user's clients.
- Each client is held to its quota by a token bucket (what Kafka uses for
  `controller_mutation_rate`, KIP-599, here for every quota): it refills at the quota's rate up
  to a burst of the quota × `quota.window.num` × `quota.window.size.seconds`, each request
  takes what it costs, and a client in debt is throttled until the debt is paid back (at most
  that window). Kafka's byte-rate quotas use a sampled rate instead, which lets a client burst
  again each time its old samples expire; the bucket holds a steady client to the quota
  exactly. The rate over the samples is still measured, for /metrics.
- The response carries the throttle as `throttle_time_ms` and the connection reads nothing
  more for as long (KIP-219): clients that honour the field back off, the others are held
  back anyway.
- Stored: in a single node's data directory (`client-quotas.json`), in a cluster in its
  metadata (an `alter_client_quotas` record), so every broker applies the same quotas.

Sensors are touched from every network loop's thread: each has a lock of its own.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

import trio

from fastlog.config import INT_MAX, ConfigError
from fastlog.log_manager import write_atomically

if TYPE_CHECKING:
    from fastlog.broker import Broker

log = logging.getLogger(__name__)

FILE_NAME = "client-quotas.json"
IDLE_METER_SECONDS = 3600.0  # a client's meters unused this long go (Kafka expires quota sensors after an hour)
SWEEP_SECONDS = 60.0
MAX_METERS = 100_000  # past this many, every meter that is full again goes at once
USER, CLIENT_ID, IP = "user", "client-id", "ip"
PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE = "producer_byte_rate", "consumer_byte_rate"
REQUEST_PERCENTAGE, CONTROLLER_MUTATION_RATE = "request_percentage", "controller_mutation_rate"
CONNECTION_CREATION_RATE = "connection_creation_rate"
CLIENT_KEYS = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE, CONTROLLER_MUTATION_RATE)
# Keys whose values are whole numbers in Kafka (a LONG config); the others are doubles
LONG_KEYS = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, CONNECTION_CREATION_RATE)

# An entity: ((type, name or None for the default), ...) sorted by type
Entity = tuple[tuple[str, Optional[str]], ...]


def entity_of(parts: Iterable[tuple[str, Optional[str]]]) -> Entity:
    return tuple(sorted(parts, key=lambda part: (part[0], part[1] is not None, part[1] or "")))


def entity_problem(entity: Entity) -> Optional[str]:
    """Why an entity cannot carry quotas (Kafka's combinations), or None."""
    types = [t for t, _ in entity]
    if len(set(types)) != len(types):
        return "an entity type is given twice"
    if sorted(types) not in ([USER], [CLIENT_ID], [CLIENT_ID, USER], [IP]):
        return f"entity types {types} are not user, client-id, user and client-id, or ip"
    for entity_type, name in entity:
        if name == "":
            return f"an empty {entity_type} name (null is the default)"
        if entity_type == IP and name is not None:
            try:
                ipaddress.ip_address(name)
            except ValueError:
                return f"{name!r} is not an IP address"
    return None


def key_problem(entity: Entity, key: str, value: Optional[float]) -> Optional[str]:
    allowed = (CONNECTION_CREATION_RATE,) if entity[0][0] == IP else CLIENT_KEYS
    if key not in allowed:
        return f"{key!r} is not a quota of {'/'.join(t for t, _ in entity)} entities ({', '.join(allowed)})"
    if value is not None:
        if not math.isfinite(value) or value <= 0:
            return f"{key} must be positive, got {value}"
        if key in LONG_KEYS and value != int(value):
            return f"{key} must be a whole number, got {value}"
    return None


def to_json(entries: dict[Entity, dict[str, float]]) -> list:
    return [{"entity": [list(p) for p in entity], "values": values} for entity, values in sorted(entries.items(), key=lambda e: str(e[0]))]


def from_json(raw: list) -> dict[Entity, dict[str, float]]:
    return {entity_of((str(t), None if n is None else str(n)) for t, n in e["entity"]): {str(k): float(v) for k, v in e["values"].items()} for e in raw}


def apply_changes(entries: dict[Entity, dict[str, float]], changes: list[tuple[Entity, str, Optional[float]]]) -> dict[Entity, dict[str, float]]:
    """The entries after setting (value) or removing (None) each (entity, key)."""
    out = {entity: dict(values) for entity, values in entries.items()}
    for entity, key, value in changes:
        if value is None:
            out.get(entity, {}).pop(key, None)
        else:
            out.setdefault(entity, {})[key] = value
    return {entity: values for entity, values in out.items() if values}


class LocalQuotaStore:
    """A single node's quotas, in its data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self._entries: dict[Entity, dict[str, float]] = {}
        self._changing = trio.Lock()
        if self.path.exists():
            try:
                self._entries = from_json(json.loads(self.path.read_text())["entries"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise ConfigError(f"{self.path} does not hold readable client quotas ({type(e).__name__}: {e}); restore it, or move it away to start without quotas") from None

    def entries(self) -> dict[Entity, dict[str, float]]:
        return self._entries

    async def change(self, changes: list[tuple[Entity, str, Optional[float]]], timeout: float) -> None:
        async with self._changing:
            entries = apply_changes(self._entries, changes)
            text = json.dumps({"version": 1, "entries": to_json(entries)}, indent=1)
            await trio.to_thread.run_sync(write_atomically, self.path, text)
            self._entries = entries


class ClusterQuotaStore:
    """A cluster's quotas: in the metadata image, changed through the quorum."""

    def __init__(self, broker: "Broker") -> None:
        assert broker.controller is not None
        self.controller = broker.controller

    def entries(self) -> dict[Entity, dict[str, float]]:
        return self.controller.image.client_quotas

    async def change(self, changes: list[tuple[Entity, str, Optional[float]]], timeout: float) -> None:
        image = self.controller.image
        record = {"type": "alter_client_quotas", "changes": [[[list(p) for p in entity], key, value] for entity, key, value in changes]}

        def applied() -> bool:
            return all(image.client_quotas.get(entity, {}).get(key) == value for entity, key, value in changes)

        await self.controller.propose_and_wait(record, applied, timeout)


class Sensor:
    """A rate over the last `samples` windows of `window` seconds (Kafka's SampledStat Rate)."""

    def __init__(self, samples: int, window: float) -> None:
        self.samples, self.window = samples, window
        self._sums: list[float] = [0.0] * samples
        self._starts: list[float] = [-math.inf] * samples
        self._current = 0
        self._lock = threading.Lock()

    def record(self, value: float, now: float) -> None:
        with self._lock:
            self._advance(now)
            self._sums[self._current] += value

    def rate(self, now: float) -> float:
        with self._lock:
            self._advance(now)
            live = [s for s in self._starts if s >= now - self.samples * self.window]
            elapsed = max(now - min(live, default=now), (self.samples - 1) * self.window)
            return sum(self._sums) / elapsed

    def _advance(self, now: float) -> None:
        if now - self._starts[self._current] >= self.window:
            self._current = (self._current + 1) % self.samples
            self._starts[self._current] = now
            self._sums[self._current] = 0.0
        oldest_allowed = now - self.samples * self.window
        for i, start in enumerate(self._starts):
            if start < oldest_allowed:
                self._sums[i] = 0.0


class TokenBucket:
    """What holds a client to a quota: tokens refill at `quota` per second up to
    `quota × burst_seconds`; a debt is paid back in debt / quota seconds."""

    def __init__(self, quota: float, burst_seconds: float, now: float) -> None:
        self.quota, self.burst_seconds = quota, burst_seconds
        self.tokens = quota * burst_seconds
        self.updated = now
        self._lock = threading.Lock()

    def take(self, value: float, quota: float, now: float) -> float:
        """Takes `value` (a changed quota applies from now); the throttle in seconds. The debt
        stops at one burst's worth, so one huge request does not throttle a client for hours."""
        with self._lock:
            self._refill(quota, now)
            self.tokens = max(self.tokens - value, -quota * self.burst_seconds)
            return self._debt_seconds()

    def idle(self, now: float, unused_for: float = 0.0) -> bool:
        """Full again (and unused for `unused_for` seconds): nothing is lost by forgetting it."""
        with self._lock:
            return now - self.updated >= unused_for and self.tokens + self.quota * (now - self.updated) >= self.quota * self.burst_seconds

    def give_back(self, value: float) -> None:
        with self._lock:
            self.tokens += value

    def debt_seconds(self, quota: float, now: float) -> float:
        with self._lock:
            self._refill(quota, now)
            return self._debt_seconds()

    def _refill(self, quota: float, now: float) -> None:
        self.quota = quota
        self.tokens = min(quota * self.burst_seconds, self.tokens + quota * max(0.0, now - self.updated))
        self.updated = now

    def _debt_seconds(self) -> float:
        return min(-self.tokens / self.quota, self.burst_seconds) if self.tokens < 0 else 0.0


Tags = tuple[str, str, str]  # (user, client id, ip) of whom a quota's meters measure


def quota_tags(entry: Entity, user: str, client_id: str) -> Tags:
    """Whom an applied quota entry measures (Kafka's metric tags): a default quota measures
    each user or client by itself, a named one everyone it names together."""
    types = dict(entry)
    return (user if USER in types else "", client_id if CLIENT_ID in types else "", "")


class QuotaManager:
    def __init__(self, broker: "Broker") -> None:
        self.broker = broker
        self.store: LocalQuotaStore | ClusterQuotaStore = (
            ClusterQuotaStore(broker) if broker.controller is not None else LocalQuotaStore(broker.logs.data_dir)
        )
        self.samples = broker.config["quota.window.num"]
        self.window = broker.config["quota.window.size.seconds"]
        self._meters: dict[tuple[str, str, str, str], tuple[TokenBucket, Sensor]] = {}
        self._meters_lock = threading.Lock()
        self._swept = time.monotonic()
        # (quota key, user, client id, ip) -> [throttled requests, throttle seconds]
        self.throttled: dict[tuple[str, str, str, str], list[float]] = defaultdict(lambda: [0, 0.0])

    @property
    def active(self) -> bool:
        """Whether any quota is set (without any, requests skip every quota check)."""
        return bool(self.store.entries())

    def bound(self, key: str, user: str, client_id: str) -> Optional[tuple[float, Tags]]:
        """The quota on `key` that applies to this user and client id, with its sensor's tags."""
        entries = self.store.entries()
        for entry in self._candidates(user, client_id):
            value = entries.get(entry, {}).get(key)
            if value is not None:
                return value, quota_tags(entry, user, client_id)
        return None

    @staticmethod
    def _candidates(user: str, client_id: str) -> list[Entity]:
        return [
            entity_of([(USER, user), (CLIENT_ID, client_id)]), entity_of([(USER, user), (CLIENT_ID, None)]), ((USER, user),),
            entity_of([(USER, None), (CLIENT_ID, client_id)]), entity_of([(USER, None), (CLIENT_ID, None)]), ((USER, None),),
            ((CLIENT_ID, client_id),), ((CLIENT_ID, None),),
        ]

    def meters(self, key: str, tags: Tags, quota: float, now: float) -> tuple[TokenBucket, Sensor]:
        name = (key, *tags)
        found = self._meters.get(name)
        if found is None:
            with self._meters_lock:
                if now - self._swept > SWEEP_SECONDS or len(self._meters) >= MAX_METERS:
                    self._sweep(now)
                found = self._meters.setdefault(name, (TokenBucket(quota, self.samples * self.window, now), Sensor(self.samples, self.window)))
        return found

    def _sweep(self, now: float) -> None:
        """Forgets the meters (and throttle counts) of clients idle for an hour: a client that
        changes its client id on every request must not grow the broker's memory."""
        self._swept = now
        unused_for = 0.0 if len(self._meters) >= MAX_METERS else IDLE_METER_SECONDS
        for name, (bucket, _) in list(self._meters.items()):
            if bucket.idle(now, unused_for):
                del self._meters[name]
                self.throttled.pop(name, None)

    def record(self, key: str, user: str, client_id: str, value: float, now: Optional[float] = None) -> float:
        """Charges `value` to the quota on `key` that applies; the throttle in seconds (0
        within the quota, or when none applies)."""
        found = self.bound(key, user, client_id)
        if found is None:
            return 0.0
        quota, tags = found
        now = time.monotonic() if now is None else now
        bucket, sensor = self.meters(key, tags, quota, now)
        sensor.record(value, now)
        seconds = bucket.take(value, quota, now)
        if seconds > 0:
            with self._meters_lock:
                counted = self.throttled[(key, *tags)]
                counted[0] += 1
                counted[1] += seconds
        return seconds

    def throttle_of(self, key: str, user: str, client_id: str, now: Optional[float] = None) -> float:
        """The throttle a client is under on `key` now, charging nothing (the controller
        mutation quota checks before it acts)."""
        found = self.bound(key, user, client_id)
        if found is None:
            return 0.0
        quota, tags = found
        now = time.monotonic() if now is None else now
        return self.meters(key, tags, quota, now)[0].debt_seconds(quota, now)

    def rates(self) -> list[tuple[str, str, str, str, float]]:
        """(key, user, client id, ip, rate now) of every sensor, for /metrics."""
        now = time.monotonic()
        return [(*name, sensor.rate(now)) for name, (_, sensor) in list(self._meters.items())]


class ConnectionRates:
    """`max.connection.creation.rate` (per listener) and ip entities' `connection_creation_rate`."""

    def __init__(self, quotas: QuotaManager) -> None:
        self.quotas = quotas
        self._listeners: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def limits_accepts(self, listener: str) -> bool:
        """Whether a creation rate holds for `listener` at all (else accepts never wait)."""
        config = self.quotas.broker.config
        own = "max.connection.creation.rate" in config.per_listener.get(listener.lower(), {})
        return own or (config["max.connection.creation.rate"] < INT_MAX and listener != self.inter_broker_listener)

    def accept_delay(self, listener: str, now: float) -> float:
        """Seconds to wait before accepting the next connection on `listener`: the broker-wide
        `max.connection.creation.rate` is shared by every listener but the inter-broker one,
        and `listener.name.<listener>.max.connection.creation.rate` holds for that one."""
        config = self.quotas.broker.config
        delay = 0.0
        own = config.per_listener.get(listener.lower(), {}).get("max.connection.creation.rate")
        if own is not None:
            delay = self._bucket(listener, config.listener_setting(listener, "max.connection.creation.rate"), now)
        broker_wide = config["max.connection.creation.rate"]
        if broker_wide < INT_MAX and listener != self.inter_broker_listener:
            delay = max(delay, self._bucket("", broker_wide, now))
        return delay

    @property
    def inter_broker_listener(self) -> Optional[str]:
        broker = self.quotas.broker
        if broker.controller is None:
            return None
        return broker.config["inter.broker.listener.name"] or broker.config.client_listeners[0].name

    def _bucket(self, name: str, limit: float, now: float) -> float:
        with self._lock:
            bucket = self._listeners.setdefault(name, TokenBucket(limit, 1.0, now))
        return bucket.take(1, limit, now)

    def ip_throttle(self, ip: str, now: float) -> float:
        """Seconds an IP over its connection_creation_rate quota is throttled (its connection is
        refused, and not counted against the next ones)."""
        entries = self.quotas.store.entries()
        if not entries:
            return 0.0
        quota = entries.get(((IP, ip),), {}).get(CONNECTION_CREATION_RATE)
        if quota is None:
            quota = entries.get(((IP, None),), {}).get(CONNECTION_CREATION_RATE)
        if quota is None:
            return 0.0
        bucket, sensor = self.quotas.meters(CONNECTION_CREATION_RATE, ("", "", ip), quota, now)
        seconds = bucket.take(1, quota, now)
        if seconds > 0:
            bucket.give_back(1)
        else:
            sensor.record(1, now)
        return seconds


def describe(entries: dict[Entity, dict[str, float]], components: list[tuple[str, int, Optional[str]]], strict: bool) -> dict[Entity, dict[str, float]]:
    """DescribeClientQuotas' filter: each component (entity type, match type, name): 0 that
    name, 1 the default, 2 any name but the default; `strict`: entities of no other type."""
    out = {}
    for entity, values in entries.items():
        types = dict(entity)
        if strict and set(types) != {c[0] for c in components}:
            continue
        if all(_matches(types, component) for component in components):
            out[entity] = values
    return out


def _matches(types: dict[str, Optional[str]], component: tuple[str, int, Optional[str]]) -> bool:
    entity_type, match_type, name = component
    if entity_type not in types:
        return False
    if match_type == 0:
        return types[entity_type] == name
    if match_type == 1:
        return types[entity_type] is None
    return types[entity_type] is not None


class MutationQuota:
    """`controller_mutation_rate` (KIP-599) over one CreateTopics, CreatePartitions or
    DeleteTopics request: each partition created or deleted counts one. With a version that
    knows THROTTLING_QUOTA_EXCEEDED (`strict`), a topic asked for while the client is over
    its quota is refused with it; older versions are served and only throttled."""

    REFUSAL = "The throttling quota has been exceeded."

    def __init__(self, manager: QuotaManager, principal: str, client_id: Optional[str], strict: bool) -> None:
        self.manager, self.user, self.client_id, self.strict = manager, principal, client_id or "", strict
        self.throttle = 0.0

    def exceeded(self) -> bool:
        if not self.manager.active:
            return False
        waiting = self.manager.throttle_of(CONTROLLER_MUTATION_RATE, self.user, self.client_id)
        self.throttle = max(self.throttle, waiting)
        return self.strict and waiting > 0

    def charge(self, partitions: int) -> None:
        if self.manager.active and partitions > 0:
            self.throttle = max(self.throttle, self.manager.record(CONTROLLER_MUTATION_RATE, self.user, self.client_id, partitions))

    @property
    def throttle_ms(self) -> int:
        return math.ceil(self.throttle * 1000)
