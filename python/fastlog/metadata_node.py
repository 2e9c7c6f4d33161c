"""This node's view of the cluster metadata, and the way to change it: what a controller
(a voter of the metadata quorum, `controller.py`) and a broker-only node (an observer,
`metadata_observer.py`) have in common.

Both keep a `MetadataImage` built from the records the quorum committed, and change the
cluster by proposing records (`propose`: appended by the quorum leader, in effect once the
image applies them). Topic administration from any node goes through here (`create_topic`,
`delete_topic`, `add_partitions`, `set_topic_configs`): the record is proposed and the call
returns once this node's image has applied it. Each partition's replicas go round robin over
the live brokers (`MetadataImage.assign_replicas`).

A node with the broker role registers its client endpoint until the image shows it, and
before it stops asks the controller to move its leaderships away (controlled shutdown).

Transport (the controller listener, `controller.listener.names`): frames
`size i32 | kind u8 | sender id u32 | payload`. Kind 1 carries a raft message between voters,
2 a record a node asks the leader to propose, 3 an observer's fetch of the committed records
after an index (`>Q`), 4 the answer to it (see `metadata_observer.py`).
"""

from __future__ import annotations

import json
import logging
import struct
import uuid
from typing import Any, Callable, Optional

import trio

from fastlog.log_manager import TopicError, topic_name_problem
from fastlog.metadata_image import MetadataImage, TopicImage, encode

log = logging.getLogger(__name__)

KIND_RAFT, KIND_PROPOSAL, KIND_FETCH, KIND_METADATA = 1, 2, 3, 4
FRAME_HEAD = struct.Struct(">iBI")  # size (of what follows it), kind, sender
MAX_FRAME = 64 << 20
ELECTION_TICKS = 10  # the Rust quorum's election timeout, in ticks
RECONNECT_SECONDS = 0.2
REGISTER_EVERY_SECONDS = 0.5
RETRY_PROPOSAL_SECONDS = 1.0
CATCH_UP_SECONDS = 10
# Kafka's error codes for what a topic operation through the quorum can meet
OFFSETS_TOPIC = "__consumer_offsets"
TXN_TOPIC = "__transaction_state"
REQUEST_TIMED_OUT, INVALID_TOPIC_EXCEPTION, TOPIC_ALREADY_EXISTS = 7, 17, 36
UNKNOWN_TOPIC_OR_PARTITION, INVALID_REPLICATION_FACTOR = 3, 38


class MetadataNode:
    """The image, the topic administration API and the broker's registration; subclasses say
    how records reach the leader (`propose`) and how committed ones come in (`run`)."""

    def __init__(self, broker: Any) -> None:
        config = broker.config
        self.broker = broker
        self.node_id: int = config.node_id
        self.image = MetadataImage(unclean_election_default=config["unclean.leader.election.enable"])
        self.tick_seconds = config["controller.quorum.election.timeout.ms"] / 1000 / ELECTION_TICKS
        self.known_leader = 0
        self.applied = trio.Event()  # set (and replaced) whenever the image applies records
        self.shutting_down = False
        self._proposed: dict[tuple, float] = {}  # (type, id) -> when, so a duty is not proposed every tick
        self.incarnation = str(uuid.uuid4())  # this process's registration, told from the last one's

    # -- what subclasses provide ---------------------------------------------------------------

    def propose(self, record: dict[str, Any]) -> bool:
        """Has the leader append `record`; it takes effect when the image applies it. False
        when no leader is known to hand it to (it is dropped)."""
        raise NotImplementedError

    @property
    def is_leader(self) -> bool:
        """Whether this node is the controller (the quorum leader)."""
        return False

    def quorum_state(self) -> tuple[int, int, list[tuple[int, int]], list[tuple[int, int]]]:
        """(epoch, high watermark, [(voter, log end or -1)], [(observer, log end)]) of the
        metadata log as this node knows them (DescribeQuorum, metrics)."""
        raise NotImplementedError

    def voter_addresses(self) -> dict[int, tuple[str, int]]:
        """The voters' controller endpoints, as far as this node knows them."""
        raise NotImplementedError

    def _image_changed(self) -> None:
        self.applied.set()
        self.applied = trio.Event()

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
        if name in (OFFSETS_TOPIC, TXN_TOPIC):  # one coordinator: every partition led by the same broker
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
        await self.propose_and_wait(record, lambda: name in self.image.topics, timeout)
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

        await self.propose_and_wait({**record, "name": name, "id": str(topic.id)}, done, timeout)

    async def propose_and_wait(self, record: dict[str, Any], done: Callable[[], bool], timeout: float) -> None:
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


    def _propose_once(self, key: tuple, record: dict[str, Any]) -> None:
        """Proposes `record` unless the same duty was proposed within the last second."""
        now = trio.current_time()
        if now - self._proposed.get(key, -RETRY_PROPOSAL_SECONDS) >= RETRY_PROPOSAL_SECONDS:
            try:
                if self.propose(record):
                    self._proposed[key] = now
            except ValueError as e:  # leadership moved between the check and the proposal
                log.debug("proposal of %s not taken: %s", record["type"], e)

    # -- the broker role --------------------------------------------------------------

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
            await self.propose_and_wait(record, moved, timeout)
            log.info("controlled shutdown: leadership moved to other brokers")
        except TopicError:
            log.warning("controlled shutdown: the controller did not move leadership within %gs; stopping anyway", timeout)
        await trio.sleep(self.tick_seconds)  # the replica manager takes the new roles

    async def wait_registered(self) -> None:
        """Before a broker serves clients (as Kafka's waits to be unfenced): the image shows
        this process's registration, live; bounded, as a cluster without a controller cannot."""
        def live() -> bool:
            mine = self.image.brokers.get(self.node_id)
            return mine is not None and mine.incarnation == self.incarnation and not mine.fenced and not mine.shut_down

        if not await self.wait_for(live, CATCH_UP_SECONDS):
            log.warning("metadata: this broker's registration was not applied within %ss; serving clients anyway", CATCH_UP_SECONDS)

    async def _register_self(self) -> None:
        while not self.shutting_down:
            host, port = self.broker.advertised_address()
            replication = list(self.broker.advertised_address(self.broker.config["inter.broker.listener.name"]))
            rack = self.broker.config["broker.rack"]
            endpoints = {l.name: list(self.broker.advertised_address(l.name)) for l in self.broker.config.client_listeners}
            mine = self.image.brokers.get(self.node_id)
            registered = (mine.host, mine.port, mine.rack, list(mine.replication), mine.incarnation, mine.endpoints) if mine else None
            if mine is None or mine.shut_down or registered != (host, port, rack, replication, self.incarnation, endpoints):
                record = {
                    "type": "register_broker", "id": self.node_id, "host": host, "port": port, "rack": rack,
                    "replication": replication, "incarnation": self.incarnation, "endpoints": endpoints,
                }
                self._propose_once(("register_broker", self.node_id), record)
            await trio.sleep(REGISTER_EVERY_SECONDS)


def refused(error: BaseException) -> bool:
    """Whether a failed connect was refused (trio groups the attempts' errors)."""
    if isinstance(error, ConnectionRefusedError):
        return True
    cause = error.__cause__
    if isinstance(cause, BaseExceptionGroup):
        return all(refused(e) for e in cause.exceptions)
    return False


def json_key(change: dict[str, Any]) -> str:
    return encode(change).decode()


def frame(kind: int, sender: int, payload: bytes) -> bytes:
    return FRAME_HEAD.pack(FRAME_HEAD.size - 4 + len(payload), kind, sender) + payload


RECORD_HEAD = struct.Struct(">QI")  # index, size


def encode_metadata(header: dict[str, Any], records: list[tuple[int, bytes]]) -> bytes:
    """An answer to an observer's fetch: `header size u32 | JSON header`, then each record as
    `index u64 | size u32 | data`."""
    head = json.dumps(header, separators=(",", ":")).encode()
    parts = [struct.pack(">I", len(head)), head]
    for index, data in records:
        parts += [RECORD_HEAD.pack(index, len(data)), bytes(data)]
    return b"".join(parts)


def decode_metadata(payload: bytes) -> tuple[dict[str, Any], list[tuple[int, bytes]]]:
    """(header, [(index, data)]) of `encode_metadata`'s bytes; ValueError if they are not that."""
    try:
        (size,) = struct.unpack_from(">I", payload)
        if 4 + size > len(payload):
            raise ValueError("the header runs past the end")
        header = json.loads(payload[4 : 4 + size])
        records, at = [], 4 + size
        while at < len(payload):
            index, length = RECORD_HEAD.unpack_from(payload, at)
            at += RECORD_HEAD.size
            if at + length > len(payload):
                raise ValueError("a record runs past the end")
            records.append((index, payload[at : at + length]))
            at += length
    except (struct.error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"undecodable metadata answer: {e}") from None
    if not isinstance(header, dict):
        raise ValueError("metadata answer without a header")
    return header, records


def _frame_size(buffer: bytearray) -> Optional[int]:
    """The size of the frame at the front of `buffer` (checked), None until 4 bytes are in."""
    if len(buffer) < 4:
        return None
    size = struct.unpack_from(">i", buffer)[0]
    if not FRAME_HEAD.size - 4 <= size <= MAX_FRAME:
        raise ValueError(f"quorum frame of {size} bytes")
    return size


async def read_frame(stream: trio.SocketStream, buffer: bytearray) -> Optional[tuple[int, int, bytes]]:
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
