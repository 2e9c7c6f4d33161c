"""The group coordinator: Kafka's classic rebalance protocol and committed offsets.

Each group is a state machine (Kafka's `ClassicGroup`)::

    Empty --join--> PreparingRebalance --all joined / rebalance timeout--> CompletingRebalance
    CompletingRebalance --leader's SyncGroup--> Stable --join, leave, expiry--> PreparingRebalance
    PreparingRebalance --nobody rejoined--> Empty;  Empty --delete / offsets expired--> Dead

The steps are synchronous methods that change the state and return the records to append
to `__consumer_offsets` (as Kafka's `GroupCoordinatorShard` does); the async wrappers append
them (and flush) before answering. JoinGroup and SyncGroup are parked on a `Parked` slot that
the step completing the rebalance fills. Offsets are applied to memory by replaying their own
records after the append, with the same code that rebuilds everything at load.

Timers are tasks in the coordinator's nursery: one per member (session timeout, checked
against `heartbeat_deadline`, never expiring a member parked in a join or sync), one per
pending member id (KIP-394), one per rebalance (the largest rebalance timeout of the
members, or `group.initial.rebalance.delay.ms` for a new group, extended while members keep
arriving). Times come from `trio.current_time()`, so tests run in virtual time; timestamps
stored in records come from `wall_clock()` (ms).

Deviations from Kafka: the group record written at the end of a rebalance is appended after
the followers' SyncGroup responses are released (Kafka releases them after the append);
offsets of Stable consumer groups for unsubscribed topics do not expire.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol

import trio

from fastlog.coordinator_records import (
    GroupMetadataValue,
    GroupRecord,
    OffsetCommitValue,
    OffsetRecord,
    decode_record,
    group_record,
    offset_record,
)
from fastlog.log_manager import TopicError
from fastlog.protocol import ErrorCode

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_WRITE_TIMEOUT_MS = 5000  # for a write to __consumer_offsets to reach the ISR
LOCAL_TOPIC_WAIT_SECONDS = 10  # for this broker to open the logs the controller placed here
CONSUMER_PROTOCOL = "consumer"
MAX_METADATA_BYTES = 4096  # Kafka's offset.metadata.max.bytes
RETENTION_CHECK_SECONDS = 60.0
Record = tuple[bytes, Optional[bytes]]


class GroupState(str, enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


def java_string_hashcode(s: str) -> int:
    """Java's `String.hashCode()` (over UTF-16 code units, 32-bit signed)."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group_id: str, partitions: int) -> int:
    """Kafka's `Utils.abs(groupId.hashCode()) % partitions` (abs(MIN_VALUE) is 0)."""
    h = java_string_hashcode(group_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


class Parked:
    """A response that a later step fills in (a parked JoinGroup or SyncGroup)."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self.value: Any = None

    def resolve(self, value: Any) -> None:
        if not self._event.is_set():
            self.value = value
            self._event.set()

    @property
    def done(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> Any:
        await self._event.wait()
        return self.value


@dataclass
class JoinResult:
    error: int
    member_id: str = ""
    generation: int = -1
    protocol_type: Optional[str] = None
    protocol_name: Optional[str] = None
    leader: str = ""
    members: list = field(default_factory=list)  # (member_id, group_instance_id, metadata)
    skip_assignment: bool = False


@dataclass
class SyncResult:
    error: int
    assignment: bytes = b""
    protocol_type: Optional[str] = None
    protocol_name: Optional[str] = None


@dataclass
class Member:
    member_id: str
    group_instance_id: Optional[str]
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: list  # [(name, metadata bytes)] in the member's order of preference
    assignment: bytes = b""
    join: Optional[Parked] = None
    sync: Optional[Parked] = None
    heartbeat_deadline: float = 0.0
    scope: Optional[trio.CancelScope] = None

    def metadata(self, protocol: Optional[str]) -> bytes:
        for name, data in self.protocols:
            if name == protocol:
                return data
        return b""

    def same_protocols(self, protocols: list) -> bool:
        return [(n, bytes(m)) for n, m in self.protocols] == [(n, bytes(m)) for n, m in protocols]


@dataclass
class CommittedOffset:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int
    expire_timestamp: int = -1


@dataclass
class Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    protocol_type: Optional[str] = None
    protocol_name: Optional[str] = None
    generation: int = 0
    leader_id: Optional[str] = None
    members: dict = field(default_factory=dict)  # member_id -> Member, in join order
    static_members: dict = field(default_factory=dict)  # group_instance_id -> member_id
    pending_members: set = field(default_factory=set)
    state_timestamp: int = -1
    rebalance_id: int = 0  # bumped by every rebalance: stale timers see a different id
    in_initial_delay: bool = False
    new_member_added: bool = False

    def all_joined(self) -> bool:
        return not self.pending_members and all(m.join is not None for m in self.members.values())

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def supports(self, protocol_type: str, names: list) -> bool:
        if not self.members:
            return bool(protocol_type) and bool(names)
        if protocol_type != self.protocol_type:
            return False
        return any(self.votes_for(n) == len(self.members) for n in names)

    def votes_for(self, name: str) -> int:
        return sum(1 for m in self.members.values() if any(p == name for p, _ in m.protocols))

    def select_protocol(self) -> str:
        """A protocol every member supports, chosen by the members' first preferences."""
        first = next(iter(self.members.values()))
        candidates = [n for n, _ in first.protocols if self.votes_for(n) == len(self.members)]
        votes = {n: 0 for n in candidates}
        for m in self.members.values():
            vote = next(n for n, _ in m.protocols if n in votes)
            votes[vote] += 1
        return max(candidates, key=lambda n: votes[n])  # ties: the first member's preference

    def subscribed_topics(self) -> Optional[set]:
        """Topics the members subscribe to (consumer protocol), or None when unknown."""
        if self.protocol_type != CONSUMER_PROTOCOL or self.protocol_name is None:
            return None
        from fastlog import protocol

        topics: set = set()
        for m in self.members.values():
            data = m.metadata(self.protocol_name)
            try:
                version = max(0, min(int.from_bytes(data[:2], "big", signed=True), 3))
                # read as Kafka's ConsumerProtocol reads it: a newer version as the newest we
                # know, whatever follows the fields of that version ignored
                reader = protocol.Reader(data[2:])
                topics |= set(protocol.ConsumerProtocolSubscription.decode(reader, version).topics)
            except Exception:
                return None
        return topics


@dataclass
class StoredRecord:
    """One record of a coordinator's topic as read back: a key and value, or a transaction's
    marker. `producer_id` is the transactional producer that wrote it (-1: none)."""

    partition: int
    key: Optional[bytes]
    value: Optional[bytes]
    producer_id: int = -1
    commit: Optional[bool] = None  # a COMMIT (True) or ABORT (False) marker: no key or value


class OffsetsStore(Protocol):
    """Where the coordinator's records go: `__consumer_offsets` (or memory, in tests)."""

    def partition_count(self) -> int: ...

    async def append(self, partition: int, records: list, producer: Optional[tuple[int, int]] = None) -> None: ...

    def read_all(self) -> Iterator[StoredRecord]: ...


class MemoryStore:
    """An in-memory stand-in for `__consumer_offsets`, for tests without a broker."""

    def __init__(self, partitions: int = 4) -> None:
        self.partitions: list[list[StoredRecord]] = [[] for _ in range(partitions)]

    def partition_count(self) -> int:
        return len(self.partitions)

    async def append(self, partition: int, records: list, producer: Optional[tuple[int, int]] = None) -> None:
        pid = producer[0] if producer else -1
        self.partitions[partition].extend(StoredRecord(partition, k, v, pid) for k, v in records)
        await trio.sleep(0)

    def read_all(self) -> Iterator[StoredRecord]:
        for records in self.partitions:
            yield from records


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class GroupCoordinator:
    def __init__(
        self,
        store: OffsetsStore,
        *,
        initial_rebalance_delay_ms: int = 3000,
        min_session_timeout_ms: int = 6000,
        max_session_timeout_ms: int = 1_800_000,
        offsets_retention_ms: int = 7 * 24 * 3600 * 1000,
        partition_exists: Callable[[str, int], bool] = lambda topic, partition: True,
        wall_clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.store = store
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.offsets_retention_ms = offsets_retention_ms
        self.partition_exists = partition_exists
        self.wall_clock = wall_clock
        self.groups: dict[str, Group] = {}
        self.offsets: dict[str, dict[tuple[str, int], CommittedOffset]] = {}
        self.pending_commits: dict[tuple[str, str, int], int] = {}
        # Offsets of open transactions (TxnOffsetCommit): producer id -> group -> (topic,
        # partition) -> offset, applied when the transaction commits, dropped when it aborts.
        self.txn_offsets: dict[int, dict[str, dict[tuple[str, int], CommittedOffset]]] = {}
        self.loaded = False
        self._nursery: Optional[trio.Nursery] = None
        # In a cluster, only the broker hosting __consumer_offsets coordinates groups.
        self.is_coordinator: Callable[[], bool] = lambda: True

    def unavailable(self) -> int:
        """The error a group request gets here: NOT_COORDINATOR on a broker that does not host
        __consumer_offsets, COORDINATOR_LOAD_IN_PROGRESS while loading, else 0."""
        if not self.is_coordinator():
            return ErrorCode.NOT_COORDINATOR
        return 0 if self.loaded else ErrorCode.COORDINATOR_LOAD_IN_PROGRESS

    @classmethod
    def for_broker(cls, broker: Any) -> "GroupCoordinator":
        config = broker.config
        coordinator = cls(
            BrokerOffsetsStore(broker),
            initial_rebalance_delay_ms=config["group.initial.rebalance.delay.ms"],
            min_session_timeout_ms=config["group.min.session.timeout.ms"],
            max_session_timeout_ms=config["group.max.session.timeout.ms"],
            offsets_retention_ms=config["offsets.retention.minutes"] * 60_000,
            partition_exists=lambda t, p: (view := broker.topics.get(t)) is not None and 0 <= p < view.partitions,
        )
        coordinator.is_coordinator = broker.coordinates_groups
        return coordinator

    # -- running, loading and writing -------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Loads the groups and offsets, then runs the timers until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(self)
            await self.load()
            nursery.start_soon(self._expire_offsets_periodically)

    async def reload(self) -> None:
        """Forgets the groups and loads them again (this broker became the coordinator: its
        replica of `__consumer_offsets` has what the previous one wrote)."""
        self.loaded = False
        self.groups, self.offsets, self.pending_commits, self.txn_offsets = {}, {}, {}, {}
        await self.load()

    async def load(self) -> None:
        started = time.monotonic()
        records = await trio.to_thread.run_sync(lambda: list(self.store.read_all()))
        for record in records:
            if record.commit is not None:
                self.complete_txn(record.producer_id, record.commit, record.partition)
            elif record.producer_id >= 0:
                self._replay_txn_offset(record.producer_id, record.key, record.value)
            else:
                self.replay(record.key, record.value)
        for group in list(self.groups.values()):
            for member in group.members.values():
                self._watch_member(group, member)
        self.loaded = True
        log.info(
            "group coordinator loaded %d records: %d groups, %d offsets in %.2fs",
            len(records),
            len(self.groups),
            sum(len(o) for o in self.offsets.values()),
            time.monotonic() - started,
        )

    def replay(self, key: Optional[bytes], value: Optional[bytes]) -> None:
        """Applies one record of `__consumer_offsets` to the in-memory state."""
        try:
            record = decode_record(key, value)
        except Exception as e:
            log.warning("skipping unreadable __consumer_offsets record: %s", e)
            return
        if isinstance(record, OffsetRecord):
            self._replay_offset(record)
        elif isinstance(record, GroupRecord):
            self._replay_group(record)

    def _replay_offset(self, record: OffsetRecord) -> None:
        offsets = self.offsets.setdefault(record.group, {})
        tp = (record.topic, record.partition)
        if record.value is None:
            offsets.pop(tp, None)
        else:
            v = record.value
            offsets[tp] = CommittedOffset(v.offset, v.leader_epoch, v.metadata, v.commit_timestamp, v.expire_timestamp)
        if not offsets:
            del self.offsets[record.group]
        if record.value is not None and record.group not in self.groups:
            self.groups[record.group] = Group(record.group)

    def _replay_group(self, record: GroupRecord) -> None:
        if record.value is None:
            self.groups.pop(record.group, None)
            return
        v = record.value
        group = Group(
            record.group,
            state=GroupState.STABLE if v.members else GroupState.EMPTY,
            protocol_type=v.protocol_type,
            protocol_name=v.protocol,
            generation=v.generation,
            leader_id=v.leader,
            state_timestamp=v.current_state_timestamp,
        )
        for m in v.members:
            member = Member(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout,
                m.session_timeout,
                v.protocol_type,
                [(v.protocol, m.subscription)],
                assignment=m.assignment,
            )
            group.members[m.member_id] = member
            if m.group_instance_id:
                group.static_members[m.group_instance_id] = m.member_id
        self.groups[record.group] = group

    async def write(self, group_id: str, records: list) -> None:
        if records:
            await self.store.append(partition_for(group_id, self.store.partition_count()), records)

    def _spawn(self, fn: Callable, *args: Any) -> None:
        assert self._nursery is not None, "the coordinator is not running"
        self._nursery.start_soon(fn, *args)

    async def _write_soon(self, group_id: str, records: list) -> None:
        try:
            await self.write(group_id, records)
        except TopicError as e:  # e.g. the coordinator moved to another broker
            log.info("records of group %s not written: %s", group_id, e.message)
        except Exception:
            log.exception("could not write records of group %s", group_id)

    def _write_later(self, group_id: str, records: list) -> None:
        if records:
            self._spawn(self._write_soon, group_id, records)

    # -- records -------------------------------------------------------------------------------

    def _group_record(self, group: Group) -> Record:
        M = GroupMetadataValue.MemberMetadata
        members = [
            M(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                rebalance_timeout=m.rebalance_timeout_ms,
                session_timeout=m.session_timeout_ms,
                subscription=m.metadata(group.protocol_name),
                assignment=m.assignment,
            )
            for m in group.members.values()
        ]
        value = GroupMetadataValue(
            protocol_type=group.protocol_type or "",
            generation=group.generation,
            protocol=group.protocol_name,
            leader=group.leader_id,
            current_state_timestamp=group.state_timestamp,
            members=members,
        )
        return group_record(group.group_id, value)

    # -- state transitions ---------------------------------------------------------------------

    def _transition(self, group: Group, state: GroupState) -> None:
        log.debug("group %s: %s -> %s", group.group_id, group.state.value, state.value)
        group.state = state
        group.state_timestamp = self.wall_clock()

    def _new_member_id(self, client_id: str, group_instance_id: Optional[str]) -> str:
        return f"{group_instance_id or client_id}-{uuid.uuid4()}"

    def _add_member(self, group: Group, member: Member) -> tuple[Parked, list]:
        if not group.members:
            group.protocol_type = member.protocol_type
        group.members[member.member_id] = member
        if member.group_instance_id:
            group.static_members[member.group_instance_id] = member.member_id
        if group.leader_id is None:
            group.leader_id = member.member_id
        group.new_member_added = True
        member.join = parked = Parked()
        self._watch_member(group, member)
        return parked, self._rebalance_or_try_join(group, "member joined")

    def _remove_member(self, group: Group, member: Member, error: int = ErrorCode.UNKNOWN_MEMBER_ID) -> None:
        group.members.pop(member.member_id, None)
        if member.group_instance_id and group.static_members.get(member.group_instance_id) == member.member_id:
            del group.static_members[member.group_instance_id]
        if member.scope is not None:
            member.scope.cancel()
        if member.join is not None:
            member.join.resolve(JoinResult(error, member_id=member.member_id))
        if member.sync is not None:
            member.sync.resolve(SyncResult(error))
        if group.leader_id == member.member_id:
            group.leader_id = next(iter(group.members), None)

    def _remove_and_update(self, group: Group, member: Member, reason: str) -> list:
        self._remove_member(group, member)
        log.info("group %s: removed member %s (%s)", group.group_id, member.member_id, reason)
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            return self._prepare_rebalance(group, reason)
        if group.state == GroupState.PREPARING_REBALANCE:
            return self._try_complete_join(group)
        return []

    def _rebalance_or_try_join(self, group: Group, reason: str) -> list:
        if group.state in (GroupState.EMPTY, GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            return self._prepare_rebalance(group, reason)
        if group.state == GroupState.PREPARING_REBALANCE:
            return self._try_complete_join(group)
        return []

    def _prepare_rebalance(self, group: Group, reason: str) -> list:
        if group.state == GroupState.COMPLETING_REBALANCE:
            for m in group.members.values():
                m.assignment = b""
                if m.sync is not None:
                    m.sync.resolve(SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
                    m.sync = None
        initial = group.state == GroupState.EMPTY and self.initial_rebalance_delay_ms > 0
        self._transition(group, GroupState.PREPARING_REBALANCE)
        group.rebalance_id += 1
        log.info("group %s: preparing rebalance (generation %d): %s", group.group_id, group.generation, reason)
        if initial:
            group.in_initial_delay = True
            self._spawn(self._initial_delay, group, group.rebalance_id)
            return []
        self._spawn(self._rebalance_timeout, group, group.rebalance_id)
        return self._try_complete_join(group)

    def _try_complete_join(self, group: Group) -> list:
        if group.state != GroupState.PREPARING_REBALANCE or group.in_initial_delay or not group.all_joined():
            return []
        return self._complete_join(group)

    def _complete_join(self, group: Group) -> list:
        for member in [m for m in group.members.values() if m.join is None]:
            log.info("group %s: member %s did not rejoin in time", group.group_id, member.member_id)
            self._remove_member(group, member)
        group.pending_members.clear()
        group.generation += 1
        group.rebalance_id += 1
        if not group.members:
            group.protocol_name = None
            group.leader_id = None
            self._transition(group, GroupState.EMPTY)
            log.info("group %s: generation %d is empty", group.group_id, group.generation)
            return [self._group_record(group)]
        group.protocol_name = group.select_protocol()
        if group.leader_id not in group.members:
            group.leader_id = next(iter(group.members))
        self._transition(group, GroupState.COMPLETING_REBALANCE)
        log.info(
            "group %s: generation %d with %d members, protocol %s, leader %s",
            group.group_id, group.generation, len(group.members), group.protocol_name, group.leader_id,
        )
        now = trio.current_time()
        for member in group.members.values():
            parked, member.join = member.join, None
            member.heartbeat_deadline = now + member.session_timeout_ms / 1000
            parked.resolve(self._join_result(group, member, member.member_id == group.leader_id))
        return []

    def _join_result(self, group: Group, member: Member, leader_view: bool, skip: bool = False) -> JoinResult:
        members = []
        if leader_view:
            members = [(m.member_id, m.group_instance_id, m.metadata(group.protocol_name)) for m in group.members.values()]
        return JoinResult(
            ErrorCode.NONE,
            member_id=member.member_id,
            generation=group.generation,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader=group.leader_id or "",
            members=members,
            skip_assignment=skip,
        )

    # -- timers ----------------------------------------------------------------------------------

    def _watch_member(self, group: Group, member: Member) -> None:
        member.heartbeat_deadline = trio.current_time() + member.session_timeout_ms / 1000
        member.scope = trio.CancelScope()
        self._spawn(self._member_timer, group, member)

    async def _member_timer(self, group: Group, member: Member) -> None:
        assert member.scope is not None
        records: list = []
        with member.scope:
            while True:
                await trio.sleep_until(member.heartbeat_deadline)
                if group.members.get(member.member_id) is not member:
                    return
                now = trio.current_time()
                if now < member.heartbeat_deadline:
                    continue
                if member.join is not None or member.sync is not None:
                    member.heartbeat_deadline = now + member.session_timeout_ms / 1000
                    continue
                records = self._remove_and_update(group, member, "session timeout expired")
                break
        await self._write_soon(group.group_id, records)

    async def _pending_member_timer(self, group: Group, member_id: str, session_timeout_ms: int) -> None:
        await trio.sleep(session_timeout_ms / 1000)
        if member_id in group.pending_members:
            group.pending_members.discard(member_id)
            log.info("group %s: pending member %s never rejoined", group.group_id, member_id)
            await self._write_soon(group.group_id, self._try_complete_join(group))

    async def _rebalance_timeout(self, group: Group, rebalance_id: int) -> None:
        await trio.sleep(group.rebalance_timeout_ms() / 1000)
        if group.rebalance_id == rebalance_id and group.state == GroupState.PREPARING_REBALANCE:
            await self._write_soon(group.group_id, self._complete_join(group))

    async def _initial_delay(self, group: Group, rebalance_id: int) -> None:
        delay = min(self.initial_rebalance_delay_ms, group.rebalance_timeout_ms())
        remaining = max(group.rebalance_timeout_ms() - self.initial_rebalance_delay_ms, 0)
        while True:
            group.new_member_added = False
            await trio.sleep(delay / 1000)
            if group.rebalance_id != rebalance_id or group.state != GroupState.PREPARING_REBALANCE:
                return
            if group.new_member_added and remaining > 0:
                delay = min(self.initial_rebalance_delay_ms, remaining)
                remaining -= delay
                continue
            break
        group.in_initial_delay = False
        await self._write_soon(group.group_id, self._complete_join(group))

    async def _expire_offsets_periodically(self) -> None:
        while True:
            await trio.sleep(RETENTION_CHECK_SECONDS)
            await self.expire_offsets()

    # -- JoinGroup -----------------------------------------------------------------------------

    async def join(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: Optional[str],
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list,
        require_known_member_id: bool,
        api_version: int = 9,
    ) -> JoinResult:
        outcome, records = self.join_step(
            group_id, member_id, group_instance_id, client_id, client_host, session_timeout_ms,
            rebalance_timeout_ms, protocol_type, protocols, require_known_member_id, api_version,
        )
        await self.write(group_id, records)
        return await outcome.wait() if isinstance(outcome, Parked) else outcome

    def join_step(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: Optional[str],
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list,
        require_known_member_id: bool,
        api_version: int = 9,
    ) -> tuple[Any, list]:
        """(JoinResult or Parked, records) for one JoinGroup request."""
        def fail(code: int) -> tuple[Any, list]:
            return JoinResult(code, member_id=member_id), []

        if self.unavailable():
            return fail(self.unavailable())
        if not group_id:
            return fail(ErrorCode.INVALID_GROUP_ID)
        if not self.min_session_timeout_ms <= session_timeout_ms <= self.max_session_timeout_ms:
            return fail(ErrorCode.INVALID_SESSION_TIMEOUT)
        if rebalance_timeout_ms <= 0:
            rebalance_timeout_ms = session_timeout_ms
        group = self.groups.get(group_id)
        if group is None:
            if member_id:
                return fail(ErrorCode.UNKNOWN_MEMBER_ID)
            group = self.groups[group_id] = Group(group_id)
        if group.state == GroupState.DEAD:
            return fail(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        names = [n for n, _ in protocols]
        if not group.supports(protocol_type, names):
            return fail(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        member = Member(
            member_id, group_instance_id, client_id, client_host, rebalance_timeout_ms,
            session_timeout_ms, protocol_type, [(n, bytes(m)) for n, m in protocols],
        )
        if not member_id:
            return self._join_unknown(group, member, require_known_member_id, api_version)
        return self._join_known(group, member, api_version)

    def _join_unknown(self, group: Group, member: Member, require_known: bool, api_version: int) -> tuple[Any, list]:
        member.member_id = self._new_member_id(member.client_id, member.group_instance_id)
        if member.group_instance_id and member.group_instance_id in group.static_members:
            return self._replace_static_member(group, member, api_version)
        if require_known and not member.group_instance_id:
            group.pending_members.add(member.member_id)
            self._spawn(self._pending_member_timer, group, member.member_id, member.session_timeout_ms)
            return JoinResult(ErrorCode.MEMBER_ID_REQUIRED, member_id=member.member_id), []
        return self._add_member(group, member)

    def _join_known(self, group: Group, member: Member, api_version: int) -> tuple[Any, list]:
        member_id = member.member_id
        if member_id in group.pending_members:
            group.pending_members.discard(member_id)
            return self._add_member(group, member)
        error = self._member_error(group, member_id, member.group_instance_id)
        if error:
            return JoinResult(error, member_id=member_id), []
        if group.state in (GroupState.EMPTY, GroupState.DEAD):
            return JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id=member_id), []
        current = group.members[member_id]
        changed = not current.same_protocols(member.protocols)
        self._update_member(current, member)
        if group.state == GroupState.COMPLETING_REBALANCE and not changed:
            return self._join_result(group, current, member_id == group.leader_id), []
        if group.state == GroupState.STABLE and not changed and member_id != group.leader_id:
            return self._join_result(group, current, False), []
        if current.join is not None:
            current.join.resolve(JoinResult(ErrorCode.REBALANCE_IN_PROGRESS, member_id=member_id))
        current.join = parked = Parked()
        return parked, self._rebalance_or_try_join(group, f"member {member_id} rejoined")

    def _update_member(self, current: Member, joined: Member) -> None:
        current.protocols = joined.protocols
        current.session_timeout_ms = joined.session_timeout_ms
        current.rebalance_timeout_ms = joined.rebalance_timeout_ms
        current.client_id, current.client_host = joined.client_id, joined.client_host
        current.heartbeat_deadline = trio.current_time() + current.session_timeout_ms / 1000

    def _replace_static_member(self, group: Group, member: Member, api_version: int) -> tuple[Any, list]:
        """KIP-345: a static member restarted with a new member id takes its old place."""
        old = group.members[group.static_members[member.group_instance_id]]
        unchanged = old.same_protocols(member.protocols)
        member.assignment = old.assignment
        was_leader = group.leader_id == old.member_id
        self._remove_member(group, old, ErrorCode.FENCED_INSTANCE_ID)
        group.members[member.member_id] = member
        group.static_members[member.group_instance_id] = member.member_id
        if was_leader or group.leader_id is None:
            group.leader_id = member.member_id
        self._watch_member(group, member)
        log.info("group %s: static member %s replaced %s", group.group_id, member.member_id, old.member_id)
        if group.state == GroupState.STABLE and unchanged:
            is_leader = group.leader_id == member.member_id
            result = self._join_result(group, member, is_leader, skip=is_leader and api_version >= 9)
            return result, [self._group_record(group)]
        member.join = parked = Parked()
        return parked, self._rebalance_or_try_join(group, f"static member {member.group_instance_id} rejoined")

    def _member_error(self, group: Optional[Group], member_id: str, group_instance_id: Optional[str]) -> int:
        """UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID for a member id the group does not know."""
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group_instance_id:
            known = group.static_members.get(group_instance_id)
            if known is not None and known != member_id:
                return ErrorCode.FENCED_INSTANCE_ID
        if member_id not in group.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return ErrorCode.NONE

    # -- SyncGroup, Heartbeat, LeaveGroup ------------------------------------------------------

    async def sync(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        group_instance_id: Optional[str],
        protocol_type: Optional[str],
        protocol_name: Optional[str],
        assignments: dict,
    ) -> SyncResult:
        outcome, records = self.sync_step(
            group_id, generation, member_id, group_instance_id, protocol_type, protocol_name, assignments
        )
        await self.write(group_id, records)
        return await outcome.wait() if isinstance(outcome, Parked) else outcome

    def sync_step(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        group_instance_id: Optional[str],
        protocol_type: Optional[str],
        protocol_name: Optional[str],
        assignments: dict,
    ) -> tuple[Any, list]:
        if self.unavailable():
            return SyncResult(self.unavailable()), []
        group = self.groups.get(group_id)
        error = self._member_error(group, member_id, group_instance_id)
        if error:
            return SyncResult(error), []
        assert group is not None
        if generation != group.generation:
            return SyncResult(ErrorCode.ILLEGAL_GENERATION), []
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
            protocol_name is not None and protocol_name != group.protocol_name
        ):
            return SyncResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL), []
        member = group.members[member_id]
        member.heartbeat_deadline = trio.current_time() + member.session_timeout_ms / 1000
        if group.state == GroupState.PREPARING_REBALANCE:
            return SyncResult(ErrorCode.REBALANCE_IN_PROGRESS), []
        if group.state == GroupState.STABLE:
            return self._sync_result(group, member), []
        if group.state != GroupState.COMPLETING_REBALANCE:
            return SyncResult(ErrorCode.UNKNOWN_MEMBER_ID), []
        if member.sync is not None:
            member.sync.resolve(SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
        member.sync = parked = Parked()
        if member_id != group.leader_id:
            return parked, []
        for m in group.members.values():
            m.assignment = bytes(assignments.get(m.member_id, b""))
        self._transition(group, GroupState.STABLE)
        for m in group.members.values():
            if m.sync is not None:
                m.sync.resolve(self._sync_result(group, m))
                m.sync = None
        return parked, [self._group_record(group)]

    def _sync_result(self, group: Group, member: Member) -> SyncResult:
        return SyncResult(ErrorCode.NONE, member.assignment, group.protocol_type, group.protocol_name)

    def heartbeat(self, group_id: str, generation: int, member_id: str, group_instance_id: Optional[str]) -> int:
        if self.unavailable():
            return self.unavailable()
        group = self.groups.get(group_id)
        error = self._member_error(group, member_id, group_instance_id)
        if error:
            return error
        assert group is not None
        if group.state == GroupState.EMPTY:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if generation != group.generation:
            return ErrorCode.ILLEGAL_GENERATION
        member = group.members[member_id]
        member.heartbeat_deadline = trio.current_time() + member.session_timeout_ms / 1000
        if group.state == GroupState.PREPARING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    async def leave(self, group_id: str, members: list) -> tuple[int, list]:
        """(error, per-member errors) for LeaveGroup; `members` are (member_id, instance_id)."""
        error, errors, records = self.leave_step(group_id, members)
        await self.write(group_id, records)
        return error, errors

    def leave_step(self, group_id: str, members: list) -> tuple[int, list, list]:
        if self.unavailable():
            return self.unavailable(), [], []
        group = self.groups.get(group_id)
        if group is None or group.state == GroupState.DEAD:
            return ErrorCode.UNKNOWN_MEMBER_ID, [], []
        errors, records = [], []
        for member_id, instance_id in members:
            if member_id in group.pending_members:
                group.pending_members.discard(member_id)
                errors.append(ErrorCode.NONE)
                records += self._try_complete_join(group)
                continue
            if instance_id and not member_id:
                member_id = group.static_members.get(instance_id, "")
            error = self._member_error(group, member_id, instance_id)
            errors.append(error)
            if not error:
                records += self._remove_and_update(group, group.members[member_id], "member left")
        return ErrorCode.NONE, errors, records

    # -- offsets ---------------------------------------------------------------------------------

    async def commit_offsets(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        group_instance_id: Optional[str],
        offsets: list,
        retention_ms: int = -1,
    ) -> dict:
        """Commits [(topic, partition, offset, leader_epoch, metadata, commit_timestamp)];
        {(topic, partition): error} once the records are appended and flushed."""
        results, records = self.commit_step(group_id, generation, member_id, group_instance_id, offsets, retention_ms)
        if not records:
            return results
        keys = [(group_id, t, p) for (t, p), e in results.items() if e == ErrorCode.NONE]
        for k in keys:
            self.pending_commits[k] = self.pending_commits.get(k, 0) + 1
        try:
            await self.write(group_id, records)
        except Exception:
            log.exception("could not write offsets of group %s", group_id)
            return {tp: (ErrorCode.UNKNOWN_SERVER_ERROR if e == 0 else e) for tp, e in results.items()}
        finally:
            for k in keys:
                self.pending_commits[k] -= 1
                if not self.pending_commits[k]:
                    del self.pending_commits[k]
        for key, value in records:
            self.replay(key, value)
        return results

    def commit_step(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        group_instance_id: Optional[str],
        offsets: list,
        retention_ms: int = -1,
    ) -> tuple[dict, list]:
        error = self._commit_error(group_id, generation, member_id, group_instance_id)
        if error:
            return {(t, p): error for t, p, *_ in offsets}, []
        return self._offset_records(group_id, offsets, retention_ms)

    def _offset_records(self, group_id: str, offsets: list, retention_ms: int = -1) -> tuple[dict, list]:
        """({(topic, partition): error}, records) of commits already allowed for the group."""
        results, records = {}, []
        now = self.wall_clock()
        for topic, partition, offset, leader_epoch, metadata, commit_ts in offsets:
            if metadata is not None and len(metadata.encode()) > MAX_METADATA_BYTES:
                results[(topic, partition)] = ErrorCode.OFFSET_METADATA_TOO_LARGE
            elif not self.partition_exists(topic, partition):
                results[(topic, partition)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                results[(topic, partition)] = ErrorCode.NONE
                ts = now if commit_ts is None or commit_ts < 0 else commit_ts
                value = OffsetCommitValue(
                    offset=offset,
                    leader_epoch=leader_epoch,
                    metadata=metadata or "",
                    commit_timestamp=ts,
                    expire_timestamp=ts + retention_ms if retention_ms >= 0 else -1,
                )
                records.append(offset_record(group_id, topic, partition, value))
        return results, records

    def _commit_error(self, group_id: str, generation: int, member_id: str, group_instance_id: Optional[str]) -> int:
        if self.unavailable():
            return self.unavailable()
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        group = self.groups.get(group_id)
        if group is None:
            if generation >= 0:
                return ErrorCode.ILLEGAL_GENERATION
            self.groups[group_id] = Group(group_id)
            return ErrorCode.NONE
        if group.state == GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation < 0 and group.state == GroupState.EMPTY:
            return ErrorCode.NONE  # a "simple" commit (no group membership)
        if group.state == GroupState.COMPLETING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        error = self._member_error(group, member_id, group_instance_id)
        if error:
            return error
        if generation != group.generation:
            return ErrorCode.ILLEGAL_GENERATION
        member = group.members[member_id]
        member.heartbeat_deadline = trio.current_time() + member.session_timeout_ms / 1000
        return ErrorCode.NONE

    def fetch_offsets(self, group_id: str, partitions: Optional[Iterable], require_stable: bool = False) -> tuple[int, list]:
        """(error, [(topic, partition, CommittedOffset or None, error)]); `partitions=None`: all."""
        if self.unavailable():
            return self.unavailable(), []
        committed = self.offsets.get(group_id, {})
        wanted = sorted(committed) if partitions is None else list(partitions)
        out = []
        for topic, partition in wanted:
            if require_stable and ((group_id, topic, partition) in self.pending_commits or self.has_pending_txn_offset(group_id, topic, partition)):
                out.append((topic, partition, None, ErrorCode.UNSTABLE_OFFSET_COMMIT))
            else:
                out.append((topic, partition, committed.get((topic, partition)), ErrorCode.NONE))
        return ErrorCode.NONE, out

    # -- transactional offsets (TxnOffsetCommit) ----------------------------------------------

    async def txn_commit_offsets(
        self,
        group_id: str,
        producer_id: int,
        producer_epoch: int,
        generation: int,
        member_id: str,
        group_instance_id: Optional[str],
        offsets: list,
    ) -> dict:
        """TxnOffsetCommit: the offsets are written to `__consumer_offsets` inside the producer's
        transaction and take effect when it commits (`complete_txn`). Old clients (v0-v2) send
        no member: their commits are not checked against the group's generation, as in Kafka."""
        if generation < 0 and not member_id:
            error = self.unavailable() or (ErrorCode.INVALID_GROUP_ID if not group_id else 0)
            if not error and group_id not in self.groups:
                self.groups[group_id] = Group(group_id)
        else:
            error = self._commit_error(group_id, generation, member_id, group_instance_id)
        if error:
            return {(t, p): error for t, p, *_ in offsets}
        results, records = self._offset_records(group_id, offsets)
        if not records:
            return results
        try:
            await self.store.append(partition_for(group_id, self.store.partition_count()), records, (producer_id, producer_epoch))
        except Exception as e:
            log.warning("could not write transactional offsets of group %s: %s", group_id, e)
            code = e.error_code if isinstance(e, TopicError) else ErrorCode.UNKNOWN_SERVER_ERROR
            return {tp: (code if err == 0 else err) for tp, err in results.items()}
        for key, value in records:
            self._replay_txn_offset(producer_id, key, value)
        return results

    def _replay_txn_offset(self, producer_id: int, key: Optional[bytes], value: Optional[bytes]) -> None:
        try:
            record = decode_record(key, value)
        except Exception as e:
            log.warning("skipping unreadable __consumer_offsets record: %s", e)
            return
        if isinstance(record, OffsetRecord) and record.value is not None:
            v = record.value
            pending = self.txn_offsets.setdefault(producer_id, {}).setdefault(record.group, {})
            pending[(record.topic, record.partition)] = CommittedOffset(v.offset, v.leader_epoch, v.metadata, v.commit_timestamp, v.expire_timestamp)

    def complete_txn(self, producer_id: int, commit: bool, offsets_partition: int) -> None:
        """A transaction's marker reached `__consumer_offsets` partition `offsets_partition`:
        the producer's offsets for the groups stored there take effect (commit) or go (abort)."""
        groups = self.txn_offsets.get(producer_id)
        if not groups:
            return
        count = self.store.partition_count()
        for group_id in [g for g in groups if partition_for(g, count) == offsets_partition]:
            pending = groups.pop(group_id)
            if commit:
                self.offsets.setdefault(group_id, {}).update(pending)
                self.groups.setdefault(group_id, Group(group_id))
        if not groups:
            del self.txn_offsets[producer_id]

    def has_pending_txn_offset(self, group_id: str, topic: str, partition: int) -> bool:
        return any((topic, partition) in groups.get(group_id, {}) for groups in self.txn_offsets.values())

    async def delete_offsets(self, group_id: str, partitions: list) -> tuple[int, dict]:
        """OffsetDelete: (error, {(topic, partition): error})."""
        error, results, records = self.delete_offsets_step(group_id, partitions)
        await self.write(group_id, records)
        for key, value in records:
            self.replay(key, value)
        return error, results

    def delete_offsets_step(self, group_id: str, partitions: list) -> tuple[int, dict, list]:
        if self.unavailable():
            return self.unavailable(), {}, []
        group = self.groups.get(group_id)
        if group is None or group.state == GroupState.DEAD:
            return ErrorCode.GROUP_ID_NOT_FOUND, {}, []
        subscribed: Optional[set] = set()
        if group.state != GroupState.EMPTY:
            subscribed = group.subscribed_topics()
            if subscribed is None:
                return ErrorCode.NON_EMPTY_GROUP, {}, []
        results, records = {}, []
        committed = self.offsets.get(group_id, {})
        for topic, partition in partitions:
            if topic in subscribed:
                results[(topic, partition)] = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
                continue
            results[(topic, partition)] = ErrorCode.NONE
            if (topic, partition) in committed:
                records.append(offset_record(group_id, topic, partition, None))
        return ErrorCode.NONE, results, records

    async def expire_offsets(self) -> int:
        """Deletes offsets of empty groups older than the retention; empty groups without
        offsets are deleted too. Returns the number of offsets removed."""
        removed = 0
        for group_id, records in self.expire_offsets_step().items():
            await self.write(group_id, records)
            for key, value in records:
                self.replay(key, value)
            removed += sum(1 for r in records if isinstance(decode_record(*r), OffsetRecord))
        return removed

    def expire_offsets_step(self) -> dict:
        now = self.wall_clock()
        out = {}
        for group_id, group in list(self.groups.items()):
            if group.state != GroupState.EMPTY:
                continue
            records = []
            for (topic, partition), c in self.offsets.get(group_id, {}).items():
                if c.expire_timestamp >= 0:
                    expired = now >= c.expire_timestamp
                else:
                    base = group.state_timestamp if group.state_timestamp >= 0 else c.commit_timestamp
                    expired = now - max(base, c.commit_timestamp) >= self.offsets_retention_ms
                if expired:
                    records.append(offset_record(group_id, topic, partition, None))
            if len(records) == len(self.offsets.get(group_id, {})):
                self._transition(group, GroupState.DEAD)
                del self.groups[group_id]
                records.append(group_record(group_id, None))
            if records:
                out[group_id] = records
        return out

    # -- administration --------------------------------------------------------------------------

    async def delete_groups(self, group_ids: list) -> dict:
        results = {}
        for group_id in group_ids:
            error, records = self.delete_group_step(group_id)
            if records:
                await self.write(group_id, records)
                for key, value in records:
                    self.replay(key, value)
            results[group_id] = error
        return results

    def delete_group_step(self, group_id: str) -> tuple[int, list]:
        if self.unavailable():
            return self.unavailable(), []
        group = self.groups.get(group_id)
        if group is None or group.state == GroupState.DEAD:
            return ErrorCode.GROUP_ID_NOT_FOUND, []
        if group.state != GroupState.EMPTY:
            return ErrorCode.NON_EMPTY_GROUP, []
        self._transition(group, GroupState.DEAD)
        del self.groups[group_id]
        records = [offset_record(group_id, t, p, None) for t, p in self.offsets.get(group_id, {})]
        return ErrorCode.NONE, records + [group_record(group_id, None)]

    def describe(self, group_id: str) -> Optional[Group]:
        return self.groups.get(group_id)

    def list_groups(self) -> list[Group]:
        return list(self.groups.values())


# -- __consumer_offsets in the broker's logs --------------------------------------------------------


class BrokerOffsetsStore:
    """`__consumer_offsets` in the broker's log manager, created on first need (compacted).
    `TransactionStateStore` is the same for `__transaction_state`."""

    topic = OFFSETS_TOPIC
    partitions_key = "offsets.topic.num.partitions"
    factor_key = "offsets.topic.replication.factor"

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self._create_lock = trio.Lock()

    def coordinates(self) -> bool:
        """Whether this broker is the coordinator whose records these are."""
        return self.broker.coordinates_groups()

    def partition_count(self) -> int:
        topic = self.broker.logs.topics.get(self.topic)
        return len(topic.partitions) if topic else self.broker.config[self.partitions_key]

    async def ensure_topic(self) -> Any:
        """The local `__consumer_offsets`, created (through the controller in a cluster) when
        missing. Raises TopicError(NOT_COORDINATOR) where another broker hosts it."""
        async with self._create_lock:
            topic = self.broker.logs.topics.get(self.topic)
            if topic is not None:
                return topic
            await self.ensure_view()
            if not self.coordinates():
                raise TopicError(ErrorCode.NOT_COORDINATOR, f"another broker leads {self.topic}")
            with trio.move_on_after(LOCAL_TOPIC_WAIT_SECONDS):  # the broker creates its logs
                while self.topic not in self.broker.logs.topics:
                    await trio.sleep(0.05)
                return self.broker.logs.topics[self.topic]
            raise TopicError(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, f"{self.topic} is not open here yet")

    async def ensure_view(self) -> Any:
        """`__consumer_offsets` as the admin APIs see it, created when missing."""
        view = self.broker.topics.get(self.topic)
        partitions = self.broker.config[self.partitions_key]
        if view is None and self.broker.controller is not None:  # asked for; the client asks again
            factor = min(self.broker.config[self.factor_key], len(self.broker.controller.image.live_brokers()))
            self.broker.topics.request_create(self.topic, partitions, max(factor, 1), {"cleanup.policy": "compact"})
            raise TopicError(ErrorCode.COORDINATOR_NOT_AVAILABLE, f"{self.topic} is being created")
        if view is None:
            try:
                view = await self.broker.create_topic(self.topic, partitions, {"cleanup.policy": "compact"})
            except TopicError as e:
                if e.error_code != ErrorCode.TOPIC_ALREADY_EXISTS:  # another node created it first
                    raise
                view = self.broker.topics.get(self.topic)
        return view

    async def append(self, partition: int, records: list, producer: Optional[tuple[int, int]] = None, durable: bool = True) -> None:
        """Appends (key, value) records to a partition (in a transactional batch of `producer`,
        (id, epoch), when given), flushed (unless not `durable`: a record whose loss a restart
        repairs) and, in a cluster, replicated to the ISR."""
        from fastlog.records import Record, encode_batch

        topic = await self.ensure_topic()
        now = wall_clock_ms()
        target = topic.partitions[partition]
        fields = {"producer_id": producer[0], "producer_epoch": producer[1], "is_transactional": True} if producer else {}
        batch = encode_batch([Record(i, now, k, v) for i, (k, v) in enumerate(records)], **fields)
        replicas = self.broker.replicas
        if replicas is None:
            target.log.append(batch)
            target.log.high_watermark = target.log.log_end_offset
            target.wake_waiters()
            if durable:
                await self.broker.io_threads.run(target.log.flush)
            return
        epoch = replicas.leader_epoch(self.topic, partition)
        if epoch is None:
            raise TopicError(ErrorCode.NOT_COORDINATOR, f"this broker does not lead {self.topic}-{partition}")
        _, last_offset, _, _ = target.log.append(batch, epoch)
        state = replicas.state(self.topic, partition)
        if state is not None and replicas.alone(state):
            target.log.high_watermark = target.log.log_end_offset
        target.wake_waiters()
        if durable:
            await self.broker.io_threads.run(target.log.flush)
        failed = await replicas.wait_for_replicas([(self.topic, partition, last_offset + 1)], OFFSETS_WRITE_TIMEOUT_MS)
        if failed:
            raise TopicError(ErrorCode.NOT_COORDINATOR, f"{self.topic}-{partition}: the write was not replicated ({failed[0][2]})")

    def read_all(self) -> Iterator[StoredRecord]:
        """Every record and transaction marker of the topic, partition by partition."""
        from fastlog.records import ControlType, decode_batches

        topic = self.broker.logs.topics.get(self.topic)
        for index, partition in enumerate(topic.partitions if topic else []):
            offset = partition.log.log_start_offset
            while offset < partition.log.log_end_offset:
                # To the log end, as Kafka's coordinators load: a new leader's high watermark
                # lags its log until the followers fetch again.
                data = partition.log.read_bytes(offset, 1 << 20, partition.log.log_end_offset)
                batches = decode_batches(data) if data else []
                if not batches:
                    break
                for batch in batches:
                    pid = batch.producer_id if batch.is_transactional else -1
                    if batch.is_control:
                        if batch.control_type in (ControlType.COMMIT, ControlType.ABORT):
                            yield StoredRecord(index, None, None, pid, batch.control_type == ControlType.COMMIT)
                    else:
                        for record in batch.records:
                            if record.offset >= offset:
                                yield StoredRecord(index, record.key, record.value, pid)
                    offset = batch.next_offset


# -- lag ------------------------------------------------------------------------------------------


@dataclass
class PartitionLag:
    topic: str
    partition: int
    committed: int  # -1: nothing committed
    log_end: int
    lag: Optional[int]  # None when nothing is committed


def lag_rows(committed: dict, end_offsets: dict) -> list[PartitionLag]:
    """Lag per partition from {(topic, partition): committed offset} and
    {(topic, partition): log end offset}; usable with OffsetFetch and ListOffsets answers."""
    rows = []
    for tp in sorted(set(committed) | set(end_offsets)):
        c = committed.get(tp, -1)
        end = end_offsets.get(tp, -1)
        lag = max(end - c, 0) if c >= 0 and end >= 0 else None
        rows.append(PartitionLag(tp[0], tp[1], c, end, lag))
    return rows


def group_lag(broker: Any, group_id: str) -> list[PartitionLag]:
    """Lag of a group's committed partitions in this broker (log end = high watermark)."""
    offsets = broker.groups.offsets.get(group_id, {})
    committed = {tp: c.offset for tp, c in offsets.items()}
    ends = {}
    for topic, partition in committed:
        p = broker.logs.partition(topic, partition)
        if p is not None:
            ends[(topic, partition)] = p.log.high_watermark
    return lag_rows(committed, ends)
