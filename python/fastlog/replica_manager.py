"""Replicated partitions on this broker: leading them, following them, and the high watermark.

The metadata image says, per partition, its replicas, its in-sync replicas (ISR), its leader
and leader epoch. `update()` brings this broker's part in line after each change:

- **Leader**: followers fetch from it (Fetch with their replica id, `on_replica_fetch`); it
  keeps each one's log end and when it was last caught up, moves the high watermark to the
  lowest log end in the ISR, asks the controller to take a follower out of the ISR when it has
  not caught up for `replica.lag.time.max.ms` and to take it back once it reaches the high
  watermark (`change_partition` records, Kafka's AlterPartition). acks=all is answered when
  the high watermark passes the batch (`wait_for_replicas`); with fewer than
  `min.insync.replicas` in the ISR, acks=all is refused (NOT_ENOUGH_REPLICAS) by the Rust
  Produce path, which knows each partition's role.
- **Follower**: one fetcher task per leader broker fetches every partition it follows there,
  appends the batches as they are (`Log.append_replica`) and takes the leader's high
  watermark. On each new leader epoch it first asks the leader where its own last epoch ends
  (OffsetForLeaderEpoch) and cuts its log there, so a tail the new leader never had is gone
  before it fetches (KIP-101).

A partition whose ISR is this broker alone is led "alone": the Rust core moves the high
watermark with each append, as on a single node.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import trio

from fastlog import _core, protocol
from fastlog.framing import SIZE, ConnectionClosed, FrameReader
from fastlog.security.client_side import ClientSecurity, SaslFailed, sasl_exchange
from fastlog.transport import PlainTransport, TlsTransport
from fastlog.metadata_image import NO_LEADER
from fastlog.protocol import ErrorCode

if TYPE_CHECKING:
    from fastlog.broker import Broker
    from fastlog.log_manager import Partition
    from fastlog.metadata_image import PartitionImage

log = logging.getLogger(__name__)

FOLLOWER_FETCH_VERSION = 12
EPOCH_QUERY_VERSION = 4
RETRY_SECONDS = 0.2
CONNECT_TIMEOUT_SECONDS = 3
OFFSETS_TOPIC = "__consumer_offsets"
# What a link to a leader meets when the leader goes away or answers nonsense: reconnect.
LINK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, ValueError, EOFError, ConnectionClosed)
MAX_RESPONSE_BYTES = 1 << 30  # a larger size prefix is nonsense: the link is dropped
# A follower's append of at most this many bytes runs on the event loop when the log is free
# (the Rust core still releases the GIL): a worker thread's round trip costs more than such a
# write, 0.1 ms against 0.03 ms on a GIL build, and 30-200 ms on a free-threaded 3.13
# (see bench/README.md).
APPEND_ON_LOOP_BYTES = 256 << 10


@dataclass(eq=False)
class FollowerState:
    """What a leader knows of one follower (Kafka's `Replica`)."""

    log_end: int = -1  # unknown until it fetches
    last_caught_up: float = 0.0
    last_fetch: float = 0.0
    leader_end_at_last_fetch: int = -1


@dataclass(eq=False)
class ReplicaState:
    """This broker's replica of one partition."""

    topic: str
    index: int
    partition: "Partition"
    leader: int = NO_LEADER
    leader_epoch: int = -1
    replicas: list[int] = field(default_factory=list)
    isr: list[int] = field(default_factory=list)
    followers: dict[int, FollowerState] = field(default_factory=dict)  # on the leader
    epoch_start: int = 0  # on the leader: its log end when it took the lead
    truncated: bool = False  # on a follower: its tail was checked against this epoch's leader
    failed: bool = False  # this broker could not write its replica: offline here until a restart
    hw_moved: trio.Event = field(default_factory=trio.Event)

    def wake(self) -> None:
        self.hw_moved.set()
        self.hw_moved = trio.Event()


class ReplicaManager:
    def __init__(self, broker: "Broker") -> None:
        assert broker.controller is not None
        self.broker = broker
        self.node_id = broker.node_id
        self.controller = broker.controller
        self.image = broker.controller.image
        self.states: dict[tuple[str, int], ReplicaState] = {}
        self.lag_max = broker.config["replica.lag.time.max.ms"] / 1000
        self._first_update = trio.Event()  # the replicas held here are known
        self._fetchers: set[int] = set()  # leaders a fetcher task runs for
        self._nursery: Optional[trio.Nursery] = None
        self.isr_shrinks = 0
        self.isr_expands = 0

    # -- what handlers ask ---------------------------------------------------------------------

    def leader_epoch(self, topic: str, index: int) -> Optional[int]:
        """The leader epoch of a partition this broker leads, else None."""
        state = self.states.get((topic, index))
        return state.leader_epoch if state is not None and state.leader == self.node_id else None

    def state(self, topic: str, index: int) -> Optional[ReplicaState]:
        return self.states.get((topic, index))

    def alone(self, state: ReplicaState) -> bool:
        """Whether this broker leads `state` with no other in-sync replica: the high watermark
        follows its log end (as on a single node)."""
        return state.leader == self.node_id and state.isr == [self.node_id]

    def isr_short(self, state: ReplicaState) -> bool:
        """Whether the ISR is smaller than the topic's min.insync.replicas (acks=all refused)."""
        logs = self.broker.logs
        return len(state.isr) < logs.effective_configs(logs.topics[state.topic])["min.insync.replicas"]

    def under_replicated(self) -> int:
        """Partitions led here whose ISR is smaller than their replica set."""
        return sum(1 for s in self.states.values() if s.leader == self.node_id and len(s.isr) < len(s.replicas))

    # -- following the image --------------------------------------------------------------------

    def update(self) -> None:
        """Brings roles in line with the image (on the event loop, after the logs are)."""
        self._first_update.set()
        logs = self.broker.logs
        seen = set()
        for topic in list(self.image.topics.values()):
            local = logs.topics.get(topic.name)
            if local is None or local.id != topic.id:
                continue
            for index, wanted in enumerate(topic.assignments):
                if index >= len(local.partitions):
                    break
                key = (topic.name, index)
                seen.add(key)
                self._update_partition(key, local.partitions[index], wanted)
        for key in set(self.states) - seen:
            self.states.pop(key).wake()
        self._start_fetchers()

    def _update_partition(self, key: tuple[str, int], partition: "Partition", wanted: "PartitionImage") -> None:
        me = self.node_id
        state = self.states.get(key)
        if state is None or state.partition is not partition:
            state = self.states[key] = ReplicaState(key[0], key[1], partition)
        new_epoch = wanted.leader_epoch != state.leader_epoch or wanted.leader != state.leader
        state.replicas, state.isr = list(wanted.replicas), list(wanted.isr)
        if me not in wanted.replicas:
            state.leader, state.leader_epoch = wanted.leader, wanted.leader_epoch
            self._set_role(state, "follower")
            state.wake()
            return
        if wanted.leader == me and new_epoch:
            self._become_leader(state, wanted)
        elif wanted.leader != me and new_epoch:
            state.followers = {}
            state.truncated = False
            log.info("%s-%d: following broker %s in epoch %d", key[0], key[1], wanted.leader, wanted.leader_epoch)
        state.leader, state.leader_epoch = wanted.leader, wanted.leader_epoch
        if state.leader == me:
            alone = self.alone(state)
            self._set_role(state, "alone" if alone else "leader")
            if alone:
                self._set_high_watermark(state, state.partition.log.log_end_offset)
            else:
                self._advance_high_watermark(state)
        else:
            self._set_role(state, "follower")
        state.wake()  # acks=all waiters look again: leadership or the ISR may have changed

    def _become_leader(self, state: ReplicaState, wanted: "PartitionImage") -> None:
        now = trio.current_time()
        state.followers = {r: FollowerState(last_caught_up=now) for r in wanted.replicas if r != self.node_id}
        state.epoch_start = state.partition.log.log_end_offset
        log.info("%s-%d: leading in epoch %d from offset %d, ISR %s", state.topic, state.index, wanted.leader_epoch, state.epoch_start, wanted.isr)
        if state.topic == OFFSETS_TOPIC and state.index == 0:
            self.broker.groups_moved_here()
        if state.topic == "__transaction_state" and state.index == 0:
            self.broker.transactions.moved_here()

    def _set_role(self, state: ReplicaState, kind: str) -> None:
        self.broker.logs.table.set_role(state.topic, state.index, max(state.leader_epoch, 0), kind, self.isr_short(state))

    # -- leading ---------------------------------------------------------------------------------

    def on_replica_fetch(self, state: ReplicaState, replica: int, fetch_offset: int) -> None:
        """A follower fetched from `fetch_offset`: it holds everything below it."""
        follower = state.followers.setdefault(replica, FollowerState())
        now = trio.current_time()
        log_end = state.partition.log.log_end_offset
        if fetch_offset >= log_end:
            follower.last_caught_up = now
        elif fetch_offset >= follower.leader_end_at_last_fetch >= 0:
            follower.last_caught_up = max(follower.last_caught_up, follower.last_fetch)
        follower.log_end, follower.last_fetch, follower.leader_end_at_last_fetch = fetch_offset, now, log_end
        self._advance_high_watermark(state)
        high_watermark = state.partition.log.high_watermark
        if replica not in state.isr and self.image.is_live(replica) and fetch_offset >= max(high_watermark, state.epoch_start):
            self._propose_isr(state, state.isr + [replica], "caught up")

    def _advance_high_watermark(self, state: ReplicaState) -> None:
        log_ends = [state.partition.log.log_end_offset]
        for replica in state.isr:
            if replica != self.node_id:
                follower = state.followers.get(replica)
                log_ends.append(follower.log_end if follower else -1)
        self._set_high_watermark(state, min(log_ends))

    def _set_high_watermark(self, state: ReplicaState, offset: int) -> None:
        partition_log = state.partition.log
        if offset > partition_log.high_watermark:
            partition_log.high_watermark = offset
            state.partition.wake_waiters()
            state.wake()

    def _propose_isr(self, state: ReplicaState, isr: list[int], why: str) -> None:
        topic = self.image.topics.get(state.topic)
        if topic is None or state.index >= topic.partitions:
            return
        log.info("%s-%d: asking for ISR %s (%s)", state.topic, state.index, isr, why)
        if len(isr) < len(state.isr):
            self.isr_shrinks += 1
        else:
            self.isr_expands += 1
        self.controller.propose_partition_change(topic, state.index, isr=isr)

    def _check_lagging_followers(self) -> None:
        now = trio.current_time()
        for state in list(self.states.values()):
            if state.leader != self.node_id:
                continue
            lagging = [
                r for r in state.isr
                if r != self.node_id and now - state.followers.setdefault(r, FollowerState(last_caught_up=now)).last_caught_up > self.lag_max
            ]
            if lagging:
                self._propose_isr(state, [r for r in state.isr if r not in lagging], f"{lagging} not caught up for {self.lag_max:g}s")

    async def wait_for_replicas(self, awaiting: list[tuple[str, int, int]], timeout_ms: int) -> list[tuple[str, int, int]]:
        """acks=all: waits until the high watermark of each (topic, partition) reaches its
        offset. Returns (topic, partition, error) of those that failed: REQUEST_TIMED_OUT,
        NOT_LEADER_OR_FOLLOWER (leadership moved), NOT_ENOUGH_REPLICAS_AFTER_APPEND."""
        deadline = trio.current_time() + max(timeout_ms, 0) / 1000
        failed = []
        for topic, index, offset in awaiting:
            error = await self._wait_for(topic, index, offset, deadline)
            if error:
                failed.append((topic, index, error))
        return failed

    async def _wait_for(self, topic: str, index: int, offset: int, deadline: float) -> int:
        state = self.states.get((topic, index))
        epoch = state.leader_epoch if state else -1
        while True:
            state = self.states.get((topic, index))
            if state is None or state.leader != self.node_id or state.leader_epoch != epoch:
                return ErrorCode.NOT_LEADER_OR_FOLLOWER
            if state.partition.log.high_watermark >= offset:
                return ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND if self.isr_short(state) else 0
            if trio.current_time() >= deadline:
                return ErrorCode.REQUEST_TIMED_OUT
            with trio.move_on_at(deadline):
                await state.hw_moved.wait()

    # -- running ---------------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            if self.broker.config["log.verify.on.start.enable"]:
                nursery.start_soon(self._verify_replicas)
            while True:
                await trio.sleep(min(self.lag_max / 2, 5))
                self._check_lagging_followers()
                self._report_failed_replicas()

    async def _verify_replicas(self) -> None:
        """Once after start, in the background: checks every batch of each replica held here
        (recovery checks only what follows the recovery point). A damaged replica goes
        offline here, as a full disk's does, so it is neither served nor elected leader; the
        other replicas go on. Removing its directory and restarting fetches it anew."""
        await self._first_update.wait()
        for state in list(self.states.values()):
            if state.failed or state.partition.log.log_end_offset == state.partition.log.log_start_offset:
                continue
            try:
                problem = await trio.to_thread.run_sync(state.partition.log.verify)
            except _core.StorageError as e:  # closed (deleted) meanwhile, or unreadable
                problem = None if not Path(state.partition.log.path).exists() else (state.partition.log.log_start_offset, str(e))
            if problem is not None:
                offset, why = problem
                self._replica_failed(state, f"damaged data at offset {offset} ({why}); remove {state.partition.log.path} and restart to fetch it again")
        log.info("verified the %d replicas held here", len(self.states))

    def _start_fetchers(self) -> None:
        if self._nursery is None:
            return
        for leader in {s.leader for s in self.states.values() if self._follows(s)} - self._fetchers:
            self._fetchers.add(leader)
            self._nursery.start_soon(self._fetch_from, leader)

    def _follows(self, state: ReplicaState) -> bool:
        return state.leader not in (NO_LEADER, self.node_id) and self.node_id in state.replicas and not state.failed

    def _followed_at(self, leader: int) -> list[ReplicaState]:
        return [s for s in self.states.values() if s.leader == leader and self._follows(s)]

    # -- following -------------------------------------------------------------------------------

    async def _fetch_from(self, leader: int) -> None:
        """Fetches every partition this broker follows at `leader`, until it follows none there."""
        try:
            await self._follow(leader)
        finally:
            self._fetchers.discard(leader)
        self._start_fetchers()  # a partition may have come back to this leader meanwhile

    async def _follow(self, leader: int) -> None:
        link: Optional[LeaderLink] = None
        try:
            while self._followed_at(leader):
                try:
                    if link is None:
                        link = await self._connect(leader)
                        if link is None:
                            await trio.sleep(RETRY_SECONDS)
                            continue
                    await self._truncate(link, [s for s in self._followed_at(leader) if not s.truncated])
                    await self._fetch_once(link, self._followed_at(leader))
                except Exception as e:
                    if isinstance(e, LINK_ERRORS):
                        log.info("replica fetcher for broker %d: %s; reconnecting", leader, e)
                    else:  # a bug must not take the broker down: logged, and started over
                        log.exception("replica fetcher for broker %d failed; starting over", leader)
                    if link is not None:
                        await link.aclose()
                    link = None
                    await trio.sleep(RETRY_SECONDS)
        finally:
            if link is not None:
                await link.aclose()

    async def connect_to(self, broker_id: int) -> Optional["LeaderLink"]:
        """A connection to another broker's replication listener (logged in where the
        inter-broker listener asks for it), or None when it cannot be had now."""
        return await self._connect(broker_id)

    async def _connect(self, leader: int) -> Optional["LeaderLink"]:
        registration = self.image.brokers.get(leader)
        if registration is None:
            return None
        security = self.broker.inter_broker_security
        with trio.move_on_after(CONNECT_TIMEOUT_SECONDS):
            try:
                stream = await trio.open_tcp_stream(*registration.replication)
            except OSError as e:
                log.debug("replica fetcher: cannot reach broker %d: %s", leader, e)
                return None
            link = LeaderLink(stream, f"fastlog-replica-{self.node_id}")
            if security is None or security.protocol == "PLAINTEXT":
                return link
            try:
                await link.secure(security, registration.replication[0])
                return link
            except (OSError, EOFError, ValueError, SaslFailed, ConnectionClosed, trio.BrokenResourceError, trio.TooSlowError) as e:
                log.warning("replica fetcher: cannot log in to broker %d over %s: %s", leader, security.protocol, e.__cause__ or e)
                await link.aclose()
                return None
            except BaseException:  # cancelled (CONNECT_TIMEOUT_SECONDS, or shutdown): the socket goes too
                await link.aclose()
                raise
        return None

    async def _truncate(self, link: "LeaderLink", states: list[ReplicaState]) -> None:
        """Cuts each partition's divergent tail: where the leader says our last epoch ends."""
        asking = []
        for state in states:
            latest = state.partition.log.latest_epoch
            if latest < 0:
                state.truncated = True  # nothing written under an epoch: nothing can diverge
            else:
                asking.append((state, latest))
        if not asking:
            return
        E = protocol.OffsetForLeaderEpochRequest
        topics: dict[str, list] = {}
        for state, latest in asking:
            topics.setdefault(state.topic, []).append(
                E.OffsetForLeaderPartition(partition=state.index, current_leader_epoch=state.leader_epoch, leader_epoch=latest)
            )
        request = E(replica_id=self.node_id, topics=[E.OffsetForLeaderTopic(topic=t, partitions=p) for t, p in topics.items()])
        response = await link.call(request, EPOCH_QUERY_VERSION)
        answers = {(t.topic, p.partition): p for t in response.topics for p in t.partitions}
        for state, latest in asking:
            answer = answers.get((state.topic, state.index))
            if answer is None or answer.error_code:
                why = ErrorCode(answer.error_code).name if answer else "no answer"
                log.info("%s-%d: the leader's end of epoch %d not known yet (%s); asking again", state.topic, state.index, latest, why)
                continue  # asked again before the next fetch
            partition_log = state.partition.log
            if answer.leader_epoch < 0 or answer.end_offset < 0:
                cut = partition_log.high_watermark
            elif answer.leader_epoch == latest:
                cut = answer.end_offset
            else:
                cut = min(answer.end_offset, partition_log.end_offset_for_epoch(answer.leader_epoch)[1])
            if cut < partition_log.log_end_offset:
                log.warning("%s-%d: truncating from %d to %d (the leader's epoch %d ends there)", state.topic, state.index, partition_log.log_end_offset, cut, answer.leader_epoch)
                await trio.to_thread.run_sync(partition_log.truncate_to, max(cut, 0))
            state.truncated = True

    async def _fetch_once(self, link: "LeaderLink", states: list[ReplicaState]) -> None:
        states = [s for s in states if s.truncated]
        if not states:
            await trio.sleep(RETRY_SECONDS)
            return
        config = self.broker.config
        F = protocol.FetchRequest
        topics: dict[str, list] = {}
        for state in states:
            partition_log = state.partition.log
            topics.setdefault(state.topic, []).append(
                F.FetchPartition(
                    partition=state.index,
                    current_leader_epoch=state.leader_epoch,
                    fetch_offset=partition_log.log_end_offset,
                    last_fetched_epoch=partition_log.latest_epoch,
                    log_start_offset=partition_log.log_start_offset,
                    partition_max_bytes=config["replica.fetch.max.bytes"],
                )
            )
        request = F(
            replica_id=self.node_id,
            max_wait_ms=config["replica.fetch.wait.max.ms"],
            min_bytes=1,
            max_bytes=config["replica.fetch.response.max.bytes"],
            session_id=0,
            session_epoch=-1,
            topics=[F.FetchTopic(topic=t, partitions=p) for t, p in topics.items()],
        )
        response = await link.call(request, FOLLOWER_FETCH_VERSION, extra_timeout=config["replica.fetch.wait.max.ms"] / 1000)
        by_key = {(s.topic, s.index): s for s in states}
        backoff = False
        for topic in response.responses:
            for data in topic.partitions:
                state = by_key.get((topic.topic, data.partition_index))
                if state is not None and self.states.get((state.topic, state.index)) is state:
                    backoff |= not await self._take(state, data)
        if response.error_code or backoff:
            await trio.sleep(RETRY_SECONDS)

    async def _take(self, state: ReplicaState, data: Any) -> bool:
        """Appends what the leader sent for one partition; False when it sent an error."""
        partition_log = state.partition.log
        if data.error_code:
            if data.error_code == ErrorCode.OFFSET_OUT_OF_RANGE and partition_log.log_end_offset < data.log_start_offset:
                # The leader deleted what this replica lacks (retention, DeleteRecords): start over
                # at its log start, as Kafka's follower does.
                log.warning("%s-%d: the leader's log starts at %d, past this replica's end %d: starting the replica there",
                            state.topic, state.index, data.log_start_offset, partition_log.log_end_offset)
                await trio.to_thread.run_sync(partition_log.restart_at, data.log_start_offset)
                return True
            if data.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                log.error("%s-%d: the leader does not have offset %d (its log is [%d, ...)); checking the tail against it again",
                          state.topic, state.index, partition_log.log_end_offset, data.log_start_offset)
                state.truncated = False
            else:
                log.debug("%s-%d: fetch from the leader: %s", state.topic, state.index, ErrorCode(data.error_code).name)
            return False
        records = bytes(data.records or b"")
        if len(records) >= 8 and partition_log.log_end_offset == partition_log.log_start_offset:
            first = int.from_bytes(records[:8], "big")
            if first < partition_log.log_end_offset:  # an empty log that starts inside the leader's first batch
                await trio.to_thread.run_sync(partition_log.restart_at, first)
        if records:
            try:
                # A small write runs here, unless a cleaner pass, a flush or retention holds the
                # log; otherwise a worker thread writes, overlapping the event loop's network work
                # (append_replica checks it still follows the log end).
                if len(records) <= APPEND_ON_LOOP_BYTES and partition_log.try_append_replica(records) is not None:
                    await trio.lowlevel.checkpoint()  # one response may carry many partitions
                else:
                    await trio.to_thread.run_sync(partition_log.append_replica, records)
            except _core.LogIOError as e:  # a full disk, an I/O error: this replica is offline
                self._replica_failed(state, str(e))
                return False
            except _core.StorageError as e:
                log.error("%s-%d: cannot append the leader's batches: %s", state.topic, state.index, e)
                state.truncated = False  # check the tail against the leader again
                return False
        high_watermark = min(data.high_watermark, partition_log.log_end_offset)
        if high_watermark != partition_log.high_watermark:
            partition_log.high_watermark = high_watermark
        if partition_log.log_start_offset < data.log_start_offset <= high_watermark:  # DeleteRecords at the leader
            try:
                await trio.to_thread.run_sync(partition_log.delete_records, data.log_start_offset)
            except _core.StorageError as e:
                log.warning("%s-%d: cannot move the log start to the leader's %d: %s", state.topic, state.index, data.log_start_offset, e)
        return True

    def write_failed(self, topic: str, index: int, why: str) -> None:
        """A leader could not write its own replica (a Produce met a full disk, an I/O error):
        offline here as a follower's would be, so the controller moves leadership to the rest
        of the ISR."""
        state = self.state(topic, index)
        if state is not None and not state.failed:
            self._replica_failed(state, why)

    def _replica_failed(self, state: ReplicaState, why: str) -> None:
        """This broker cannot write its replica: it stops following it and tells the
        controller, which takes it out of the ISR and lists it among the offline replicas
        (Kafka's offline log dir). A restart tries again."""
        log.error("%s-%d: this replica is offline: %s", state.topic, state.index, why)
        state.failed = True
        topic = self.image.topics.get(state.topic)
        if topic is not None:
            record = {"type": "replica_offline", "broker": self.node_id, "name": topic.name, "id": str(topic.id), "partition": state.index, "why": why[:200]}
            try:
                self.controller.propose(record)
            except ValueError as e:  # no leader to take it now: `_report_failed_replicas` repeats it
                log.debug("replica_offline not proposed: %s", e)

    def _report_failed_replicas(self) -> None:
        """Proposals can be lost while the controller moves: repeated until applied."""
        for state in list(self.states.values()):
            wanted = self.image.partition(state.topic, state.index)
            if state.failed and wanted is not None and self.node_id not in wanted.failed:
                self._replica_failed(state, "reported again")


class LeaderLink:
    """A connection to a leader broker for replica Fetch and OffsetForLeaderEpoch requests."""

    def __init__(self, stream: trio.SocketStream, client_id: str) -> None:
        self.stream = stream
        self.client_id = client_id
        self._correlation = itertools.count(1)
        # Responses are read as the server reads requests: a large one straight into a buffer
        # of its size, with no copy and no allocation per chunk.
        self._frames = FrameReader(PlainTransport(stream), MAX_RESPONSE_BYTES)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()

    async def secure(self, security: ClientSecurity, host: str) -> None:
        """TLS and SASL over the fresh connection, as a client of the leader's listener
        (raises SaslFailed when the leader refuses the login)."""
        context = security.tls_context()
        if context is not None:
            stream = trio.SSLStream(self.stream, context, server_hostname=host)
            await stream.do_handshake()
            self.stream = stream
            self._frames = FrameReader(TlsTransport(stream), MAX_RESPONSE_BYTES)
        if not security.uses_sasl:
            return
        assert security.mechanism is not None
        handshake = await self.call(protocol.SaslHandshakeRequest(mechanism=security.mechanism), 1)
        if handshake.error_code:
            raise SaslFailed(f"the leader does not offer {security.mechanism} ({', '.join(handshake.mechanisms)})")
        exchange = sasl_exchange(security.mechanism, security.username, security.password)
        token = next(exchange)
        while True:
            answer = await self.call(protocol.SaslAuthenticateRequest(auth_bytes=token), 1)
            if answer.error_code:
                raise SaslFailed(f"{security.mechanism} login of {security.username} refused: {answer.error_message}")
            try:
                token = exchange.send(bytes(answer.auth_bytes))
            except StopIteration:
                return

    async def call(self, body: Any, version: int, extra_timeout: float = 0.0) -> Any:
        api_key = body.API_KEY
        correlation_id = next(self._correlation)
        header = protocol.RequestHeader(request_api_key=api_key, request_api_version=version, correlation_id=correlation_id, client_id=self.client_id)
        payload = protocol.encode_request(header, body).getvalue()
        with trio.fail_after(CONNECT_TIMEOUT_SECONDS + extra_timeout):
            await self.stream.send_all(SIZE.pack(len(payload)) + payload)
            frame = await self._frames.next_frame()
        if frame is None:
            raise EOFError("the leader closed the connection")
        reader = protocol.Reader(frame)
        response_header = protocol.ResponseHeader.decode(reader, protocol.response_header_version(api_key, version))
        if response_header.correlation_id != correlation_id:
            raise ValueError(f"response for correlation id {response_header.correlation_id}, expected {correlation_id}")
        return protocol.response_class(api_key).decode(reader, version)
