"""The controller of a cluster: this node's part of the metadata quorum, and the leader's duties.

A node with the controller role (`process.roles=controller`, or `broker,controller`) is a voter
of the quorum named by `controller.quorum.voters`. Consensus is raft-rs in the Rust core
(`_core.MetadataQuorum`, its log in `<log.dir>/__cluster_metadata-0/quorum.wal`); this module
gives it a clock (`controller.quorum.election.timeout.ms` / 10 per tick), a transport, and
applies what it commits to the `MetadataImage`. The quorum's leader is the controller.

Transport (frames of `metadata_node.py`): each voter peer gets one outgoing connection fed by a
bounded channel; what cannot be sent is dropped, and raft sends it again. Broker-only nodes
(observers, `metadata_observer.py`) connect to a voter and fetch the committed records; a
voter that does not lead answers with where the leader is.

Duties of the leader: it fences a broker it has not heard from for `broker.session.timeout.ms`
(a voter's raft messages, an observer's fetches), or at once when the broker's process is
visibly gone (a voter's controller port refuses connections, an observer's fetch connection
closed and no new one came), and unfences it when it is heard from again; it moves leadership
back to preferred replicas (`auto.leader.rebalance.enable`). ElectLeaders, reassignments, ISR
changes and controlled shutdowns are records too.
"""

from __future__ import annotations

import logging
import math
import struct
from typing import Any, Optional

import trio

from fastlog import _core
from fastlog.metadata_node import (
    CATCH_UP_SECONDS, ELECTION_TICKS, KIND_FETCH, KIND_METADATA, KIND_PROPOSAL, KIND_RAFT, RECONNECT_SECONDS,
    MetadataNode, encode_metadata, frame, read_frame, refused,
)
from fastlog.metadata_image import encode

log = logging.getLogger(__name__)

PEER_QUEUE = 512
REFUSED_TICKS = 3  # a peer refusing connections this long (with nothing heard) is fenced
OBSERVER_FETCH_BYTES = 1 << 20  # committed records per answer to an observer


class Controller(MetadataNode):
    def __init__(self, broker: Any) -> None:
        super().__init__(broker)
        config = broker.config
        self.voters: dict[int, tuple[str, int]] = config.quorum_voters
        self.session_timeout = config["broker.session.timeout.ms"] / 1000
        self.listener = config.controller_listeners[0]
        self.quorum = _core.MetadataQuorum(self.node_id, sorted(self.voters), broker.logs.data_dir / "__cluster_metadata-0")
        # A snapshot of the image every this many bytes of applied records (Kafka's key), so the
        # quorum's log stays small and a restart replays only what came after it.
        self.snapshot_every = config["metadata.log.max.record.bytes.between.snapshots"]
        self._bytes_since_snapshot = 0
        snapshot = self.quorum.snapshot
        if snapshot is not None:
            self.image.load_snapshot(snapshot[1])
        self.rebalance_every = config["leader.imbalance.check.interval.seconds"] if config["auto.leader.rebalance.enable"] else None
        self._next_rebalance = math.inf  # set when this node becomes the controller
        self._outboxes: dict[int, trio.MemorySendChannel] = {}
        self._last_heard: dict[int, float] = {}  # node -> when a frame last came from it
        self._gone_since: dict[int, float] = {}  # node -> since when its process looks gone
        self.observers: dict[int, int] = {}  # broker-only node -> metadata index it fetched up to

    # -- the quorum as the rest of the broker sees it --------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.quorum.is_leader

    def quorum_state(self) -> tuple[int, int, list[tuple[int, int]], list[tuple[int, int]]]:
        known = self.quorum.is_leader
        voters = [(v, end if known or v == self.node_id else -1) for v, end in self.quorum.voter_progress]
        return self.quorum.term, self.quorum.commit_index, voters, sorted(self.observers.items()) if known else []

    def voter_addresses(self) -> dict[int, tuple[str, int]]:
        return self.voters

    def propose(self, record: dict[str, Any]) -> bool:
        data = encode(record)
        if self.quorum.is_leader:
            self.quorum.propose(data)
            self._drive()
        elif self.known_leader:
            self._send(self.known_leader, KIND_PROPOSAL, data)
        return bool(self.known_leader)

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
            if self.broker.is_broker:
                nursery.start_soon(self._register_self)
            await self._catch_up()
            if self.broker.is_broker:
                await self.wait_registered()
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
                self._image_changed()
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
        for broker in list(self.image.brokers.values()):
            # A new leader gives every live broker a full session; a fenced one stays fenced
            # until it is heard from (a dead broker must not be unfenced by a leader change).
            silent = now - self._last_heard.setdefault(broker.id, -math.inf if broker.fenced else now)
            if not broker.fenced and (silent > self.session_timeout or self._process_gone(broker.id, now)):
                self._propose_once(("fence_broker", broker.id), {"type": "fence_broker", "id": broker.id})
            elif broker.fenced and silent < self.tick_seconds * ELECTION_TICKS:
                self._propose_once(("unfence_broker", broker.id), {"type": "unfence_broker", "id": broker.id})

    def _process_gone(self, broker_id: int, now: float) -> bool:
        """Whether a broker looks gone for a few ticks, with nothing heard from it since: a
        voter's controller port refuses connections, or an observer's fetch connection closed
        (its host is up but the process is not: a crash, a SIGKILL), so there is no point
        waiting out its session."""
        since = self._gone_since.get(broker_id)
        return since is not None and now - since >= REFUSED_TICKS * self.tick_seconds and self._last_heard.get(broker_id, 0) < since

    # -- transport -------------------------------------------------------------------------------

    def _send(self, peer: int, kind: int, payload: bytes) -> None:
        outbox = self._outboxes.get(peer)
        if outbox is None:
            return
        try:
            outbox.send_nowait(frame(kind, self.node_id, payload))
        except trio.WouldBlock:
            log.debug("metadata quorum: queue to node %d full; message dropped (raft resends)", peer)

    async def _feed_peer(self, peer: int, frames: trio.MemoryReceiveChannel) -> None:
        host, port = self.voters[peer]
        while True:
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError as e:
                if refused(e):
                    self._gone_since.setdefault(peer, trio.current_time())
                await trio.sleep(RECONNECT_SECONDS)
                continue
            self._gone_since.pop(peer, None)
            log.debug("metadata quorum: connected to node %d at %s:%d", peer, host, port)
            try:
                if self.broker.quorum_tls is not None:
                    stream = await self.broker.quorum_tls.connect(stream, host)
                async with stream:
                    async for data in frames:
                        await stream.send_all(data)
            except (trio.BrokenResourceError, trio.TooSlowError, OSError) as e:
                log.debug("metadata quorum: link to node %d lost: %s", peer, e.__cause__ or e)
                await trio.aclose_forcefully(stream)
            await trio.sleep(RECONNECT_SECONDS)

    async def _serve_peer(self, stream: trio.SocketStream) -> None:
        """Reads a peer's frames: a voter's raft messages and proposals, or an observer's
        fetches (answered on the same connection) and proposals."""
        buffer = bytearray()
        observer: Optional[int] = None
        tls = self.broker.quorum_tls
        principal = "ANONYMOUS"
        if tls is not None:
            try:
                stream = await tls.accept(stream)
            except (trio.BrokenResourceError, trio.TooSlowError, OSError) as e:
                log.warning("metadata quorum: TLS handshake with a peer failed: %s", e.__cause__ or e)
                await trio.aclose_forcefully(stream)
                return
            principal = tls.principal(stream) or "ANONYMOUS"
        authorizer = self.broker.authorizer
        if authorizer is not None and f"User:{principal}" not in authorizer.super_users:
            # The quorum's records are the ACLs themselves: only super users (Kafka's brokers'
            # principals) may propose or read them.
            log.warning("metadata quorum: refused a peer: User:%s is not in super.users", principal)
            await trio.aclose_forcefully(stream)
            return
        try:
            async with stream:
                while True:
                    received = await read_frame(stream, buffer)
                    if received is None:
                        return
                    kind, sender, payload = received
                    if kind == KIND_FETCH:
                        observer = sender
                        await stream.send_all(frame(KIND_METADATA, self.node_id, self._answer_fetch(sender, payload)))
                    else:
                        self._receive(kind, sender, payload)
        except (trio.BrokenResourceError, OSError, ValueError) as e:
            log.debug("metadata quorum: a peer connection closed: %s", e)
        finally:
            if observer is not None:  # a killed broker's connection ends at once
                self._gone_since[observer] = trio.current_time()

    def _receive(self, kind: int, sender: int, payload: bytes) -> None:
        if kind == KIND_RAFT:
            if sender not in self.voters:
                raise ValueError(f"raft message from node {sender}, which is not a voter")
            self._last_heard[sender] = trio.current_time()  # what fences a silent broker (on the leader)
            self.quorum.step(payload)
            self._drive()
        elif kind == KIND_PROPOSAL and self.quorum.is_leader:
            self.quorum.propose(payload)
            self._drive()

    def _answer_fetch(self, observer: int, payload: bytes) -> bytes:
        """An observer's fetch of the committed records after an index: the leader answers
        with them (its snapshot first when the index lies before the log's start) and counts
        the fetch as the observer's heartbeat; another voter says where the leader is."""
        if len(payload) != 8:
            raise ValueError(f"a metadata fetch of {len(payload)} bytes from node {observer}")
        (after,) = struct.unpack(">Q", payload)
        header: dict[str, Any] = {
            "leader": self.known_leader,
            "address": list(self.voters[self.known_leader]) if self.known_leader in self.voters else None,
            "cluster_id": self.broker.config["cluster.id"],
            "epoch": self.quorum.term,
            "voters": {str(v): list(address) for v, address in self.voters.items()},
        }
        if not self.quorum.is_leader:
            return encode_metadata(header, [])
        self._last_heard[observer] = trio.current_time()
        records: list[tuple[int, bytes]] = []
        read = self.quorum.committed_after(after, OBSERVER_FETCH_BYTES)
        if read is None:  # behind the log's start: the snapshot, then what follows it
            snapshot = self.quorum.snapshot
            assert snapshot is not None
            header["snapshot"] = True
            records.append(snapshot)
            read = self.quorum.committed_after(snapshot[0], OBSERVER_FETCH_BYTES)
            assert read is not None
        entries, upto = read
        records += entries
        header["upto"] = upto
        header["high_watermark"] = self.quorum.commit_index
        self.observers[observer] = after
        return encode_metadata(header, records)
