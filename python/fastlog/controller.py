"""The controller of a cluster: this node's part of the metadata quorum, and the leader's duties.

Every node of a combined cluster (`process.roles=broker,controller`) is a voter of the quorum
named by `controller.quorum.voters`. Consensus is raft-rs in the Rust core
(`_core.MetadataQuorum`, its log in `<log.dir>/__cluster_metadata-0/quorum.wal`); this module
gives it a clock (`controller.quorum.election.timeout.ms` / 10 per tick), a transport, and
applies what it commits to the `MetadataImage`. The quorum's leader is the controller.

Transport: the controller listener (`controller.listener.names`) takes frames
`size i32 | kind u8 | sender id u32 | payload`; kind 1 carries a raft message, kind 2 a record
a node asks the leader to propose. Each peer gets one outgoing connection fed by a bounded
channel; what cannot be sent is dropped, and raft sends it again.

Duties: every node registers its client endpoint until the image shows it; the leader fences
a broker it has not heard from for `broker.session.timeout.ms`, or at once when the broker's
controller port refuses connections (the machine is up, the process is gone: nothing to wait
for), and unfences it when it is heard from again.

Topic administration from any node goes through the quorum (`create_topic`, `delete_topic`,
`add_partitions`, `set_topic_configs`): the record is proposed (forwarded to the leader when
this node does not lead), and the call returns once this node's image has applied it. Each
partition's replicas go round robin over the live brokers (`MetadataImage.assign_replicas`);
each broker reconciles its local logs with the image (`ClusterTopics.reconcile`) and its
replicas' roles (`ReplicaManager.update`). ElectLeaders, reassignments, ISR changes and
controlled shutdowns are records too.
"""

from __future__ import annotations

import logging
import math
import struct
import uuid
from typing import Any, Callable, Optional

import trio

from fastlog import _core
from fastlog.log_manager import TopicError, topic_name_problem
from fastlog.metadata_image import MetadataImage, TopicImage, encode

log = logging.getLogger(__name__)

KIND_RAFT, KIND_PROPOSAL = 1, 2
FRAME_HEAD = struct.Struct(">iBI")  # size (of what follows it), kind, sender
MAX_FRAME = 64 << 20
ELECTION_TICKS = 10  # the Rust quorum's election timeout, in ticks
PEER_QUEUE = 512
RECONNECT_SECONDS = 0.2
REFUSED_TICKS = 3  # a peer refusing connections this long (with nothing heard) is fenced
REGISTER_EVERY_SECONDS = 0.5
RETRY_PROPOSAL_SECONDS = 1.0
CATCH_UP_SECONDS = 10
# Kafka's error codes for what a topic operation through the quorum can meet
OFFSETS_TOPIC = "__consumer_offsets"
REQUEST_TIMED_OUT, INVALID_TOPIC_EXCEPTION, TOPIC_ALREADY_EXISTS = 7, 17, 36
UNKNOWN_TOPIC_OR_PARTITION, INVALID_REPLICATION_FACTOR = 3, 38


class Controller:
    def __init__(self, broker: Any) -> None:
        config = broker.config
        self.broker = broker
        self.node_id: int = config.node_id
        self.voters: dict[int, tuple[str, int]] = config.quorum_voters
        self.tick_seconds = config["controller.quorum.election.timeout.ms"] / 1000 / ELECTION_TICKS
        self.session_timeout = config["broker.session.timeout.ms"] / 1000
        self.listener = config.controller_listeners[0]
        self.quorum = _core.MetadataQuorum(self.node_id, sorted(self.voters), broker.logs.data_dir / "__cluster_metadata-0")
        self.image = MetadataImage(unclean_election_default=config["unclean.leader.election.enable"])
        # A snapshot of the image every this many bytes of applied records (Kafka's key), so the
        # quorum's log stays small and a restart replays only what came after it.
        self.snapshot_every = config["metadata.log.max.record.bytes.between.snapshots"]
        self._bytes_since_snapshot = 0
        snapshot = self.quorum.snapshot
        if snapshot is not None:
            self.image.load_snapshot(snapshot[1])
        self.known_leader = 0
        self.applied = trio.Event()  # set (and replaced) whenever the image applies records
        self.shutting_down = False
        self.rebalance_every = config["leader.imbalance.check.interval.seconds"] if config["auto.leader.rebalance.enable"] else None
        self._next_rebalance = math.inf  # set when this node becomes the controller
        self._outboxes: dict[int, trio.MemorySendChannel] = {}
        self._last_heard: dict[int, float] = {}  # voter -> when a frame last came from it
        self._refused_since: dict[int, float] = {}  # voter -> since when its port refuses connections
        self._proposed: dict[tuple, float] = {}  # (type, id) -> when, so a duty is not proposed every tick

    # -- what the rest of the broker asks ------------------------------------------------------

    @property
    def leader_id(self) -> int:
        """The controller's node id, -1 while no leader is known (as Kafka answers)."""
        return self.known_leader or -1

    async def wait_for(self, condition: Callable[[], bool], seconds: float) -> bool:
        """Whether `condition()` (read from the image) holds within `seconds`."""
        with trio.move_on_after(seconds):
            while True:
                applied = self.applied
                if condition():
                    return True
                await applied.wait()
        return False

    def _create_record(self, name: str, partitions: int, factor: int, configs: dict[str, str], replicas: Optional[list[list[int]]] = None) -> dict[str, Any]:
        problem = topic_name_problem(name)
        if problem:
            raise TopicError(INVALID_TOPIC_EXCEPTION, problem)
        if name in self.image.topics:
            raise TopicError(TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        if replicas is None:
            replicas = self._assign(partitions, factor)
        if name == OFFSETS_TOPIC:  # one group coordinator: every partition led by the same broker
            replicas = [replicas[0]] * partitions
        return {"type": "create_topic", "name": name, "id": str(uuid.uuid4()), "replicas": replicas, "configs": configs}

    def _assign(self, partitions: int, factor: int) -> list[list[int]]:
        try:
            return self.image.assign_replicas(partitions, factor)
        except ValueError as e:
            raise TopicError(INVALID_REPLICATION_FACTOR, f"Unable to replicate the partition {factor} time(s): {e}") from None

    def propose_topic(self, name: str, partitions: int, factor: int, configs: dict[str, str]) -> None:
        """Proposes a topic once, without waiting for it."""
        self.propose(self._create_record(name, partitions, factor, configs))

    async def create_topic(
        self, name: str, partitions: int, factor: int, configs: dict[str, str], timeout: float, replicas: Optional[list[list[int]]] = None
    ) -> TopicImage:
        """Creates a topic through the quorum, its replicas spread over the live brokers (or
        as `replicas` says, a list per partition)."""
        record = self._create_record(name, partitions, factor, configs, replicas)
        topic_id = uuid.UUID(record["id"])
        await self._propose_and_wait(record, lambda: name in self.image.topics, timeout)
        topic = self.image.topics[name]
        if topic.id != topic_id:
            raise TopicError(TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        return topic

    async def delete_topic(self, name: str, timeout: float) -> None:
        await self._change_topic(name, {"type": "delete_topic"}, lambda topic: False, timeout)

    async def add_partitions(self, name: str, total: int, timeout: float, replicas: Optional[list[list[int]]] = None) -> None:
        topic = self.image.topics.get(name)
        current = topic.partitions if topic else 0
        factor = len(topic.assignments[0].replicas) if topic else 1
        record = {"type": "add_partitions", "replicas": replicas if replicas is not None else self._assign(total - current, factor)}
        await self._change_topic(name, record, lambda topic: topic.partitions >= total, timeout)

    def propose_partition_change(self, topic: TopicImage, index: int, **change: Any) -> None:
        """Proposes an ISR change or an election for a partition, to apply only if nothing
        changed it since this node saw it (its partition epoch)."""
        p = topic.assignments[index]
        record = {"type": "change_partition", "name": topic.name, "id": str(topic.id), "partition": index, "partition_epoch": p.partition_epoch, **change}
        self._propose_once(("change_partition", topic.name, index, p.partition_epoch, json_key(change)), record)

    async def set_topic_configs(self, name: str, configs: dict[str, str], timeout: float) -> None:
        record = {"type": "set_topic_configs", "configs": configs}
        await self._change_topic(name, record, lambda topic: topic.configs == configs, timeout)

    async def _change_topic(self, name: str, record: dict[str, Any], applied: Callable[[TopicImage], bool], timeout: float) -> None:
        """Proposes a change of topic `name`, keyed by its id so that it touches only this
        incarnation of it, and waits until it is applied (or the topic is gone)."""
        topic = self.image.topics.get(name)
        if topic is None:
            raise TopicError(UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition.")

        def done() -> bool:
            current = self.image.topics.get(name)
            return current is None or current.id != topic.id or applied(current)

        await self._propose_and_wait({**record, "name": name, "id": str(topic.id)}, done, timeout)

    async def _propose_and_wait(self, record: dict[str, Any], done: Callable[[], bool], timeout: float) -> None:
        """Proposes `record` (again every second, as a proposal to a moving leader can be lost)
        until `done()` holds in the image; REQUEST_TIMED_OUT after `timeout` seconds."""
        with trio.move_on_after(timeout):
            while not done():
                try:
                    self.propose(record)
                except ValueError:  # leadership moved as we proposed
                    pass
                await self.wait_for(done, RETRY_PROPOSAL_SECONDS)
            return
        raise TopicError(REQUEST_TIMED_OUT, f"the controller did not apply the {record['type']} in time")

    def propose(self, record: dict[str, Any]) -> None:
        """Has the leader append `record`; it takes effect when the image applies it."""
        data = encode(record)
        if self.quorum.is_leader:
            self.quorum.propose(data)
            self._drive()
        elif self.known_leader:
            self._send(self.known_leader, KIND_PROPOSAL, data)

    # -- running ---------------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.listener.port, host=self.listener.host)
        log.info(
            "metadata quorum: node %d of voters %s, listening on %s:%d",
            self.node_id, sorted(self.voters), self.listener.host, self.listener.port,
        )
        async with trio.open_nursery() as nursery:
            for peer in self.voters:
                if peer != self.node_id:
                    send, receive = trio.open_memory_channel(PEER_QUEUE)
                    self._outboxes[peer] = send
                    nursery.start_soon(self._feed_peer, peer, receive)
            nursery.start_soon(trio.serve_listeners, self._serve_peer, listeners)
            nursery.start_soon(self._clock)
            nursery.start_soon(self._register_self)
            await self._catch_up()
            task_status.started()

    async def _catch_up(self) -> None:
        """Before clients are served: the log this node has is applied, and (for a while at
        most) a leader is heard from, whose commit index brings what this node missed; so a
        restarted broker does not answer Metadata from an empty image."""
        self._drive()
        with trio.move_on_after(CATCH_UP_SECONDS):
            while not self.known_leader:
                await trio.sleep(self.tick_seconds)
            await trio.sleep(self.tick_seconds * 2)  # a heartbeat or two with the commit index
        if not self.known_leader:
            log.warning("metadata quorum: no leader within %ss; serving clients with what this node has", CATCH_UP_SECONDS)

    async def _clock(self) -> None:
        while True:
            await trio.sleep(self.tick_seconds)
            self.quorum.tick()
            self._drive()
            if self.quorum.is_leader:
                self._leader_duties()

    def _drive(self) -> None:
        """Sends what the quorum wants sent and applies what it committed, until it is idle."""
        for _ in range(16):
            messages, committed, snapshot = self.quorum.ready()
            for peer, message in messages:
                self._send(peer, KIND_RAFT, message)
            if snapshot is not None:  # the leader's: this node was too far behind its log
                self.image.load_snapshot(snapshot[1])
                self._bytes_since_snapshot = 0
            for index, data in committed:
                self.image.apply(index, data)
                self._bytes_since_snapshot += len(data)
            if snapshot is not None or committed:
                self.applied.set()
                self.applied = trio.Event()
            if not messages and not committed and snapshot is None:
                break
        if self._bytes_since_snapshot >= self.snapshot_every:
            self._snapshot()
        leader = self.quorum.leader_id
        if leader != self.known_leader:
            self.known_leader = leader
            self._last_heard = {}
            if self.rebalance_every is not None:  # a new controller's first check is one interval away
                self._next_rebalance = trio.current_time() + self.rebalance_every
            log.info("metadata quorum: the controller is now node %s (term %d)", leader or "unknown", self.quorum.term)

    def _snapshot(self) -> None:
        """Hands the quorum the image as of its last applied record; the log drops what it holds."""
        try:
            self.quorum.compact(self.image.last_applied, self.image.to_snapshot())
        except ValueError as e:  # e.g. nothing applied past the last snapshot
            log.debug("metadata snapshot not taken: %s", e)
        except _core.StorageError as e:  # the log stays as it is; tried again later
            log.error("metadata snapshot not written: %s", e)
        else:
            log.info("metadata snapshot at %d (%d bytes of records since the last)", self.image.last_applied, self._bytes_since_snapshot)
        self._bytes_since_snapshot = 0

    # -- duties ----------------------------------------------------------------------------------

    async def controlled_shutdown(self, timeout: float) -> None:
        """Before this broker stops (Kafka's controlled shutdown): the controller fences it, so
        the partitions it leads get leaders among the rest of their ISR while it still answers,
        and clients sent NOT_LEADER_OR_FOLLOWER find the new leaders without a dead broker's
        timeouts. Bounded: a cluster without a controller just sees it go."""
        self.shutting_down = True
        record = {"type": "shutdown_broker", "id": self.node_id}

        def moved() -> bool:
            me = self.image.brokers.get(self.node_id)
            leads = any(p.leader == self.node_id for t in self.image.topics.values() for p in t.assignments)
            return me is None or ((me.shut_down or me.fenced) and not leads)

        try:
            await self._propose_and_wait(record, moved, timeout)
            log.info("controlled shutdown: leadership moved to other brokers")
        except TopicError:
            log.warning("controlled shutdown: the controller did not move leadership within %gs; stopping anyway", timeout)
        await trio.sleep(self.tick_seconds)  # the replica manager takes the new roles

    async def _register_self(self) -> None:
        while not self.shutting_down:
            host, port = self.broker.advertised_address()
            replication = list(self.broker.advertised_address(self.broker.config["inter.broker.listener.name"]))
            rack = self.broker.config["broker.rack"]
            mine = self.image.brokers.get(self.node_id)
            if mine is None or mine.shut_down or (mine.host, mine.port, mine.rack, list(mine.replication)) != (host, port, rack, replication):
                record = {"type": "register_broker", "id": self.node_id, "host": host, "port": port, "rack": rack, "replication": replication}
                self._propose_once(("register_broker", self.node_id), record)
            await trio.sleep(REGISTER_EVERY_SECONDS)

    def _rebalance_leaders(self) -> None:
        """auto.leader.rebalance.enable: each partition whose preferred replica (its first) is
        live and in sync but does not lead gets it back as its leader."""
        for topic in list(self.image.topics.values()):
            for index, p in enumerate(topic.assignments):
                preferred = p.replicas[0]
                if p.leader != preferred and preferred in p.isr and preferred not in p.failed and self.image.is_live(preferred):
                    self.propose_partition_change(topic, index, leader=preferred)

    def _leader_duties(self) -> None:
        now = trio.current_time()
        if self.rebalance_every is not None and now >= self._next_rebalance:
            self._next_rebalance = now + self.rebalance_every
            self._rebalance_leaders()
        self._last_heard[self.node_id] = now
        for voter in self.voters:
            self._last_heard.setdefault(voter, now)  # a new leader gives everyone a full session
        for broker in list(self.image.brokers.values()):
            silent = now - self._last_heard.get(broker.id, now)
            if not broker.fenced and (silent > self.session_timeout or self._process_gone(broker.id, now)):
                self._propose_once(("fence_broker", broker.id), {"type": "fence_broker", "id": broker.id})
            elif broker.fenced and silent < self.tick_seconds * ELECTION_TICKS:
                self._propose_once(("unfence_broker", broker.id), {"type": "unfence_broker", "id": broker.id})

    def _process_gone(self, broker_id: int, now: float) -> bool:
        """Whether a broker's controller port has refused connections for a few ticks, with
        nothing heard from it since: its host is up but the process is not (a crash, a
        SIGKILL), so there is no point waiting out its session."""
        since = self._refused_since.get(broker_id)
        return since is not None and now - since >= REFUSED_TICKS * self.tick_seconds and self._last_heard.get(broker_id, 0) < since

    def _propose_once(self, key: tuple, record: dict[str, Any]) -> None:
        """Proposes `record` unless the same duty was proposed within the last second."""
        now = trio.current_time()
        if now - self._proposed.get(key, -RETRY_PROPOSAL_SECONDS) >= RETRY_PROPOSAL_SECONDS:
            self._proposed[key] = now
            try:
                self.propose(record)
            except ValueError as e:  # leadership moved between the check and the proposal
                log.debug("proposal of %s not taken: %s", record["type"], e)

    # -- transport -------------------------------------------------------------------------------

    def _send(self, peer: int, kind: int, payload: bytes) -> None:
        outbox = self._outboxes.get(peer)
        if outbox is None:
            return
        frame = FRAME_HEAD.pack(FRAME_HEAD.size - 4 + len(payload), kind, self.node_id) + payload
        try:
            outbox.send_nowait(frame)
        except trio.WouldBlock:
            log.debug("metadata quorum: queue to node %d full; message dropped (raft resends)", peer)

    async def _feed_peer(self, peer: int, frames: trio.MemoryReceiveChannel) -> None:
        host, port = self.voters[peer]
        while True:
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError as e:
                if _refused(e):
                    self._refused_since.setdefault(peer, trio.current_time())
                await trio.sleep(RECONNECT_SECONDS)
                continue
            self._refused_since.pop(peer, None)
            log.debug("metadata quorum: connected to node %d at %s:%d", peer, host, port)
            try:
                async with stream:
                    async for frame in frames:
                        await stream.send_all(frame)
            except (trio.BrokenResourceError, OSError) as e:
                log.debug("metadata quorum: link to node %d lost: %s", peer, e)
            await trio.sleep(RECONNECT_SECONDS)

    async def _serve_peer(self, stream: trio.SocketStream) -> None:
        buffer = bytearray()
        try:
            async with stream:
                while True:
                    frame = await _read_frame(stream, buffer)
                    if frame is None:
                        return
                    self._receive(*frame)
        except (trio.BrokenResourceError, OSError, ValueError) as e:
            log.debug("metadata quorum: a peer connection closed: %s", e)

    def _receive(self, kind: int, sender: int, payload: bytes) -> None:
        if sender not in self.voters:
            raise ValueError(f"frame from node {sender}, which is not a voter")
        self._last_heard[sender] = trio.current_time()  # what fences a silent broker (on the leader)
        if kind == KIND_RAFT:
            self.quorum.step(payload)
            self._drive()
        elif kind == KIND_PROPOSAL and self.quorum.is_leader:
            self.quorum.propose(payload)
            self._drive()


def _refused(error: BaseException) -> bool:
    """Whether a failed connect was refused (trio groups the attempts' errors)."""
    if isinstance(error, ConnectionRefusedError):
        return True
    cause = error.__cause__
    if isinstance(cause, BaseExceptionGroup):
        return all(_refused(e) for e in cause.exceptions)
    return False


def json_key(change: dict[str, Any]) -> str:
    return encode(change).decode()


def _frame_size(buffer: bytearray) -> Optional[int]:
    """The size of the frame at the front of `buffer` (checked), None until 4 bytes are in."""
    if len(buffer) < 4:
        return None
    size = struct.unpack_from(">i", buffer)[0]
    if not FRAME_HEAD.size - 4 <= size <= MAX_FRAME:
        raise ValueError(f"quorum frame of {size} bytes")
    return size


async def _read_frame(stream: trio.SocketStream, buffer: bytearray) -> Optional[tuple[int, int, bytes]]:
    """The next (kind, sender, payload), or None at a clean end of the stream."""
    while (size := _frame_size(buffer)) is None or len(buffer) < 4 + size:
        chunk = await stream.receive_some(1 << 16)
        if not chunk:
            if buffer:
                raise ValueError("peer closed the connection mid-frame")
            return None
        buffer += chunk
    size, kind, sender = FRAME_HEAD.unpack_from(buffer)
    payload = bytes(buffer[FRAME_HEAD.size : 4 + size])
    del buffer[: 4 + size]
    return kind, sender, payload
