"""Fetch (1): read record batches, waiting up to max_wait_ms for min_bytes to arrive.

v0-v17. v4+ read record batches v2 as stored; v0-v3 read message formats v0 (v0-v1) and v1
(v2-v3), converted down from the stored batches (`legacy.down_convert`: records below the fetch
offset and control records left out, cut after the last whole message within the partition's
budget), unless the topic's `message.downconversion.enable` is false: then UNSUPPORTED_VERSION,
as Kafka answers. Topics by name, or by topic id from v13. Records (v4+) go from the segment
file to the socket with sendfile: a partition's data is a `FileSlice`, which the codec keeps as
a separate part (up to 16 KiB that the page cache holds are read and sent with the rest:
`server.with_cached_regions_inline`). Budgets: `partition_max_bytes` per
partition and `max_bytes` for the response, except that the first non-empty partition
returns at least one whole batch (KIP-74). Consumers see nothing past the high watermark
(read_uncommitted) or the last stable offset (read_committed: the first offset of the oldest
open transaction), and read_committed answers carry the aborted transactions whose records may
be among those returned (producer id, first offset; from the `.txnindex` files), so that the
client drops them.

A follower of the cluster fetches with its replica id (`replica_id`, v15+ `replica_state`):
it reads up to the log end rather than the high watermark, and its fetch offset tells the
leader what it holds (`ReplicaManager.on_replica_fetch`: its place in the ISR and the high
watermark). Only the leader of a partition answers with records: elsewhere
NOT_LEADER_OR_FOLLOWER; an older or newer `current_leader_epoch` than the leader's gets
FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH (KIP-320).

Fetch sessions (KIP-227, v7+): epoch 0 opens a session holding the requested partitions and
answers in full; later requests (epoch 1, 2, ...) name only what changed (new fetch offsets,
`forgotten_topics_data`) and get only partitions with news: records, an error, or a moved
high watermark / log start. Epoch -1 is a sessionless full fetch. A request naming an
unknown session gets FETCH_SESSION_ID_NOT_FOUND, a wrong epoch INVALID_FETCH_SESSION_EPOCH;
the client then starts a new session. At most `max.incremental.fetch.session.cache.slots` are
kept (0: none, every fetch is full), least recently used go, a client over a quarter losing its own.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

import trio

from fastlog import _core, legacy, protocol
from fastlog.handlers import RequestContext, handles
from fastlog.handlers.common import led_partition, leader_epoch_error, missing_partition_error, storage_error_code
from fastlog.log_manager import Partition
from fastlog.protocol import ErrorCode
from fastlog.records import CorruptRecordsError, RecordsTooLargeError
from fastlog.security.acls import Operation, ResourceType

log = logging.getLogger(__name__)
R = protocol.FetchResponse
INITIAL_EPOCH, FINAL_EPOCH = 0, -1
DEFAULT_SLOTS = 1000  # Kafka's max.incremental.fetch.session.cache.slots
LEGACY_FETCH_BELOW = 4  # versions below read message formats v0/v1


@dataclass
class WantedPartition:
    """A partition a fetch (or a fetch session) reads, and what its client was last told."""

    topic: str
    topic_id: uuid.UUID
    partition: int
    fetch_offset: int
    partition_max_bytes: int
    current_leader_epoch: int
    told_high_watermark: int = -1
    told_log_start: int = -1
    told_last_stable: int = -1
    wakes_seen: int = 0  # the partition's wake count when it was last read


@dataclass
class FetchSession:
    id: int
    owner: tuple = ()  # (principal, host) of the client that opened it
    epoch: int = 0  # the next request must carry epoch + 1 once a response is sent
    partitions: "OrderedDict[tuple, WantedPartition]" = field(default_factory=OrderedDict)


class FetchSessionCache:
    """Shared by every network loop, so its changes take a lock. At most `slots` sessions
    (`max.incremental.fetch.session.cache.slots`); when they are all taken, the least recently
    used goes, unless the new session's client (principal and host) holds a quarter of them
    already: then that client's own least recently used goes, so a client opening sessions
    in a loop evicts its own, not everyone else's."""

    def __init__(self, slots: int = DEFAULT_SLOTS) -> None:
        self.slots = slots
        self.per_owner = max(1, slots // 4)
        self.sessions: "OrderedDict[int, FetchSession]" = OrderedDict()
        self._lock = threading.Lock()

    def create(self, owner: tuple = ()) -> Optional[FetchSession]:
        """A new session, or None when sessions are off (no slots: every fetch is full)."""
        if self.slots <= 0:
            return None
        with self._lock:
            while True:
                session_id = random.randint(1, 2**31 - 1)
                if session_id not in self.sessions:
                    break
            if len(self.sessions) >= self.slots:
                owned = [s.id for s in self.sessions.values() if s.owner == owner]
                if len(owned) >= self.per_owner:
                    del self.sessions[owned[0]]  # its own least recently used
                else:
                    self.sessions.popitem(last=False)
            session = self.sessions[session_id] = FetchSession(session_id, owner)
            return session

    def get(self, session_id: int) -> Optional[FetchSession]:
        with self._lock:
            session = self.sessions.get(session_id)
            if session is not None:
                self.sessions.move_to_end(session_id)
            return session

    def remove(self, session_id: int) -> None:
        with self._lock:
            self.sessions.pop(session_id, None)


_caches: "weakref.WeakKeyDictionary[Any, FetchSessionCache]" = weakref.WeakKeyDictionary()


_caches_lock = threading.Lock()


def session_cache(broker: Any) -> FetchSessionCache:
    with _caches_lock:
        cache = _caches.get(broker)
        if cache is None:
            cache = _caches[broker] = FetchSessionCache(broker.config["max.incremental.fetch.session.cache.slots"])
        return cache


def partition_key(by_id: bool, topic: str, topic_id: uuid.UUID, partition: int) -> tuple:
    return (topic_id, partition) if by_id else (topic, partition)


def requested(ctx: RequestContext, request: Any) -> "OrderedDict[tuple, WantedPartition]":
    by_id = ctx.api_version >= 13
    topics_by_id = ctx.broker.logs.topics_by_id
    wanted: "OrderedDict[tuple, WantedPartition]" = OrderedDict()
    for topic in request.topics:
        name = topic.topic
        if by_id:
            known = topics_by_id.get(topic.topic_id)
            name = known.name if known else ""
        for fp in topic.partitions:
            key = partition_key(by_id, name, topic.topic_id, fp.partition)
            wanted[key] = WantedPartition(
                name, topic.topic_id, fp.partition, fp.fetch_offset, fp.partition_max_bytes, fp.current_leader_epoch
            )
    return wanted


def find_partition(ctx: RequestContext, wanted: WantedPartition, by_id: bool) -> tuple[Optional[Partition], int, int]:
    """(the partition, 0, its leader epoch) where this broker leads it, else (None, error, -1)."""
    manager = ctx.broker.logs
    topic = manager.topics_by_id.get(wanted.topic_id) if by_id else manager.topics.get(wanted.topic)
    if topic is None and by_id:
        view = ctx.broker.topics.by_id(wanted.topic_id)
        if view is None:
            return None, ErrorCode.UNKNOWN_TOPIC_ID, -1
        return None, missing_partition_error(ctx.broker, view.name, wanted.partition), -1
    if topic is None:
        return None, missing_partition_error(ctx.broker, wanted.topic, wanted.partition), -1
    return led_partition(ctx.broker, topic.name, wanted.partition)


def replica_id(ctx: RequestContext, request: Any) -> int:
    """The fetching follower's broker id; -1 for a consumer."""
    return request.replica_state.replica_id if ctx.api_version >= 15 else request.replica_id


def read_partition(ctx: RequestContext, request: Any, wanted: WantedPartition, budget: int, first: bool, by_id: bool, denied: frozenset):
    """(PartitionData, bytes read, the Partition or None)."""
    if wanted.topic in denied:
        return R.PartitionData(partition_index=wanted.partition, error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, records=b""), 0, None
    partition, missing, leader_epoch = find_partition(ctx, wanted, by_id)
    if partition is None:
        return R.PartitionData(partition_index=wanted.partition, error_code=missing, records=b""), 0, None
    wanted.wakes_seen = partition.wakes  # an append after this point wakes the wait (`wait_for_data`)
    log = partition.log
    epoch_error = leader_epoch_error(wanted.current_leader_epoch, leader_epoch)
    follower = replica_id(ctx, request)
    max_offset = None
    if follower >= 0 and epoch_error is None:
        state = ctx.broker.replicas.state(wanted.topic, wanted.partition) if ctx.broker.replicas else None
        if state is None or follower not in state.replicas:
            return R.PartitionData(partition_index=wanted.partition, error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER, records=b""), 0, None
        ctx.broker.replicas.on_replica_fetch(state, follower, wanted.fetch_offset)
        max_offset = log.log_end_offset
    last_stable = log.last_stable_offset
    read_committed = request.isolation_level == 1 and follower < 0
    if read_committed:
        max_offset = last_stable
    data = R.PartitionData(
        partition_index=wanted.partition,
        high_watermark=log.high_watermark,
        last_stable_offset=last_stable,
        log_start_offset=log.log_start_offset,
        aborted_transactions=[] if request.isolation_level == 1 else None,
        records=b"",
    )
    if epoch_error is not None:
        data.error_code = epoch_error
        return data, 0, partition
    limit = min(wanted.partition_max_bytes, max(budget, 0))
    try:
        found = log.read(wanted.fetch_offset, limit, max_offset, min_one=first)
    except _core.StorageError as e:
        data.error_code = storage_error_code(e)
        return data, 0, partition
    if found is None:
        return data, 0, partition
    if read_committed and ctx.api_version >= 4:
        aborted = log.aborted_transactions(wanted.fetch_offset, last_stable)
        data.aborted_transactions = [R.AbortedTransaction(producer_id=pid, first_offset=first) for pid, first in aborted]
    if ctx.api_version < LEGACY_FETCH_BELOW:
        return down_converted(ctx, wanted, data, found, limit), len(data.records), partition
    data.records = found
    return data, len(found), partition


def down_converted(ctx: RequestContext, wanted: WantedPartition, data: Any, found: Any, limit: int) -> Any:
    """Fetch v0-v3 read message formats v0/v1: the stored batches converted down, unless the
    topic's message.downconversion.enable is false (then UNSUPPORTED_VERSION, as Kafka answers)."""
    logs = ctx.broker.logs
    if not logs.effective_configs(logs.topics[wanted.topic])["message.downconversion.enable"]:
        data.error_code = ErrorCode.UNSUPPORTED_VERSION
        return data
    magic = legacy.fetch_magic(ctx.api_version)
    try:
        data.records = legacy.down_convert(found.read(), magic, wanted.fetch_offset, limit)
    except CorruptRecordsError as e:  # a stored batch that cannot be converted (e.g. inflating past the bound)
        log.warning("cannot convert %s-%d at %d down for Fetch v%d: %s", wanted.topic, wanted.partition, wanted.fetch_offset, ctx.api_version, e)
        data.error_code = ErrorCode.MESSAGE_TOO_LARGE if isinstance(e, RecordsTooLargeError) else ErrorCode.CORRUPT_MESSAGE
        return data
    ctx.broker.metrics.count_down_conversion(magic, len(data.records))
    return data


def has_news(wanted: WantedPartition, data: Any) -> bool:
    return bool(
        data.error_code
        or len(data.records)
        or data.high_watermark != wanted.told_high_watermark
        or data.log_start_offset != wanted.told_log_start
        or data.last_stable_offset != wanted.told_last_stable
    )


def read_all(ctx: RequestContext, request: Any, wanted: "OrderedDict[tuple, WantedPartition]", incremental: bool, denied: frozenset):
    """One pass: (included (wanted, data) pairs, bytes found, error seen, partitions to watch)."""
    by_id = ctx.api_version >= 13
    remaining = request.max_bytes
    total = 0
    error = False
    watched = []
    included = []
    for want in wanted.values():
        data, size, partition = read_partition(ctx, request, want, remaining, total == 0, by_id, denied)
        total += size
        remaining -= size
        error = error or bool(data.error_code)
        if partition is not None:
            watched.append((partition, want.wakes_seen))
        if not incremental or has_news(want, data):
            included.append((want, data))
    return included, total, error, watched


def respond(included: list) -> list:
    """Groups the included partitions by topic, noting what each client has now been told."""
    topics: "OrderedDict[tuple, Any]" = OrderedDict()
    for want, data in included:
        want.told_high_watermark, want.told_log_start = data.high_watermark, data.log_start_offset
        want.told_last_stable = data.last_stable_offset
        key = (want.topic_id, want.topic)
        if key not in topics:
            topics[key] = R.FetchableTopicResponse(topic=want.topic, topic_id=want.topic_id, partitions=[])
        topics[key].partitions.append(data)
    return list(topics.values())


def open_session(ctx: RequestContext, request: Any) -> tuple[Optional[FetchSession], Optional[int], bool]:
    """The session this request belongs to: (session, error code, incremental)."""
    cache = session_cache(ctx.broker)
    if ctx.api_version < 7 or request.session_epoch == FINAL_EPOCH:
        if request.session_id:
            cache.remove(request.session_id)
        return None, None, False
    if request.session_epoch == INITIAL_EPOCH:
        if request.session_id:
            cache.remove(request.session_id)
        return cache.create((ctx.principal, ctx.host)), None, False
    session = cache.get(request.session_id)
    if session is None:
        return None, ErrorCode.FETCH_SESSION_ID_NOT_FOUND, True
    if session.epoch != request.session_epoch:
        cache.remove(session.id)
        return None, ErrorCode.INVALID_FETCH_SESSION_EPOCH, True
    return session, None, True


def update_session(ctx: RequestContext, session: FetchSession, request: Any) -> None:
    by_id = ctx.api_version >= 13
    for key, want in requested(ctx, request).items():
        old = session.partitions.get(key)
        if old is not None:
            want.told_high_watermark, want.told_log_start = old.told_high_watermark, old.told_log_start
            want.told_last_stable = old.told_last_stable
        session.partitions[key] = want
    for topic in request.forgotten_topics_data:
        for index in topic.partitions:
            session.partitions.pop(partition_key(by_id, topic.topic, topic.topic_id, index), None)


def unreadable(ctx: RequestContext, request: Any, wanted: "OrderedDict[tuple, WantedPartition]") -> frozenset:
    """The topics of the fetch the ACLs refuse (TOPIC_AUTHORIZATION_FAILED, as Kafka answers):
    a consumer needs READ on each; a follower CLUSTER_ACTION on the cluster, else all are refused."""
    if ctx.broker.authorizer is None:
        return frozenset()
    topics = {want.topic for want in wanted.values() if want.topic}
    if replica_id(ctx, request) >= 0:
        return frozenset() if ctx.allows(Operation.CLUSTER_ACTION, ResourceType.CLUSTER) else frozenset(topics)
    return frozenset(t for t in topics if not ctx.allows(Operation.READ, ResourceType.TOPIC, t))


@handles(1, 0, 17)
async def handle(ctx: RequestContext, request: Any):
    session, error, incremental = open_session(ctx, request)
    if error is not None:
        return R(error_code=error, session_id=0, responses=[])
    if session is not None:
        update_session(ctx, session, request)
        wanted = session.partitions
    else:
        wanted = requested(ctx, request)
    denied = unreadable(ctx, request, wanted)
    deadline = trio.current_time() + max(request.max_wait_ms, 0) / 1000
    while True:
        included, total, errors, watched = read_all(ctx, request, wanted, incremental, denied)
        if total >= request.min_bytes or errors or trio.current_time() >= deadline or not watched:
            break
        parked = trio.current_time()
        await wait_for_data(watched, deadline)
        ctx.waited += trio.current_time() - parked
    if session is not None:
        session.epoch += 1
    return R(throttle_time_ms=0, error_code=0, session_id=session.id if session else 0, responses=respond(included))


async def wait_for_data(watched: list[tuple[Partition, int]], deadline: float) -> None:
    """Parks until an append to one of `watched` (partition, its wake count when read), or the
    deadline. An append on another network loop between the read and the parking has moved
    the count already: no wait then."""
    arrived = trio.Event()
    waiters = [(partition, partition.add_waiter(arrived)) for partition, _ in watched]
    if any(partition.wakes != seen for partition, seen in watched):
        arrived.set()
    try:
        with trio.move_on_at(deadline):
            await arrived.wait()
    finally:
        for partition, waiter in waiters:
            partition.remove_waiter(waiter)
