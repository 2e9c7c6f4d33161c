"""The transaction coordinator: Kafka's transactions for producers with a `transactional.id`.

Each transactional id has one state (Kafka's `TransactionMetadata`), kept in the compacted
`__transaction_state` topic in Kafka's key/value layout and rebuilt from it at start-up::

    Empty --AddPartitionsToTxn / AddOffsetsToTxn--> Ongoing --EndTxn--> PrepareCommit | PrepareAbort
    PrepareCommit --markers written--> CompleteCommit;  PrepareAbort --markers--> CompleteAbort
    CompleteCommit | CompleteAbort --AddPartitionsToTxn--> Ongoing

InitProducerId hands a transactional id its producer id and a new epoch each time (fencing
every producer of an older epoch: PRODUCER_FENCED at the coordinator, INVALID_PRODUCER_EPOCH at
the partitions, whose markers carry the new epoch); a transaction still open then is aborted
first. EndTxn writes the decision (Prepare*) before any marker, so a coordinator that stops
half-way finishes the markers when it loads again; it answers once every partition has its
marker (Kafka answers after the Prepare* write; clients see the same outcome either way).
Transactions past `transaction.timeout.ms` are aborted with a bumped epoch (so their producer
is fenced); ids idle past `transactional.id.expiration.ms` are forgotten (a tombstone).

KIP-890 part 1: with `transaction.partition.verification.enable`, a transactional Produce to a
partition its coordinator has not added to the transaction is refused (INVALID_TXN_STATE), so a
late write of an ended transaction cannot open a hanging one; a partition leader that is not the
coordinator asks it (`verify_remotely`) before the producer's first write of a transaction.
KIP-890 part 2: EndTxn v5 ends each transaction with a new epoch (or a new producer id once the
epoch is exhausted), carried by its markers and answered to the producer, as Kafka does for
transaction version 2; a retry with the old epoch is recognised. The `transaction.version`
feature is not advertised: with the protocol version set here (Produce up to v11,
TxnOffsetCommit up to v4), clients still add partitions themselves, as with version 1.

The coordinator runs on the broker's own loop. In a cluster it is the broker leading partition
0 of `__transaction_state` (as the group coordinator leads `__consumer_offsets`-0); markers of
partitions led by other brokers go to them in WriteTxnMarkers requests, retried (leaders move)
for MARKER_RETRY_SECONDS; a transaction whose markers could not all be written stays Prepare*
and is finished by the periodic check.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import trio

from fastlog import _core, protocol
from fastlog.coordinator_records import TransactionLogValue, decode_transaction_record, transaction_record
from fastlog.group_coordinator import OFFSETS_TOPIC, BrokerOffsetsStore, partition_for, wall_clock_ms
from fastlog.log_manager import TopicError
from fastlog.producer_ids import ProducerIdsUnavailable
from fastlog.protocol import ErrorCode

log = logging.getLogger(__name__)

TXN_TOPIC = "__transaction_state"
LAST_EPOCH = 32766  # Kafka moves to a new producer id rather than use epoch 32767
TO_LOG_END = 2**63 - 1  # a high watermark the log clamps to its end
COORDINATOR_AWAY = (ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, ErrorCode.COORDINATOR_NOT_AVAILABLE)
NEEDS_COORDINATOR = -1  # `verify`: only the (remote) coordinator can tell; see `verify_remotely`
MARKER_RETRY_SECONDS = 10.0
MARKER_REPLICATION_TIMEOUT_MS = 5000
# A partition's marker needs no retry: written, the partition gone, or the producer already at a
# newer epoch there (a later marker ended the transaction).
MARKER_DONE = (ErrorCode.NONE, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.INVALID_PRODUCER_EPOCH)
MARKER_RETRY_PAUSE = 0.2


def as_version_knows(code: int, version: int, fenced_since: int) -> int:
    """PRODUCER_FENCED for request versions that know it (`fenced_since` and later); older
    versions are answered INVALID_PRODUCER_EPOCH, as Kafka answers them."""
    return ErrorCode.INVALID_PRODUCER_EPOCH if code == ErrorCode.PRODUCER_FENCED and version < fenced_since else code


def marker_refusal(error: Exception) -> int:
    """The Kafka error code of a partition's refusal of a marker."""
    if isinstance(error, _core.InvalidProducerEpochError):
        return ErrorCode.INVALID_PRODUCER_EPOCH
    if isinstance(error, _core.CoordinatorFencedError):
        return ErrorCode.TRANSACTION_COORDINATOR_FENCED
    return ErrorCode.KAFKA_STORAGE_ERROR


@dataclass(frozen=True)
class Marker:
    """A COMMIT (commit=True) or ABORT marker of a producer's transaction."""

    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int = 0


class TxnState(enum.IntEnum):
    """Kafka's TransactionState ids, as stored in `__transaction_state`."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def kafka_name(self) -> str:
        """The name DescribeTransactions and ListTransactions use (Kafka's)."""
        return "".join(part.capitalize() for part in self.name.split("_"))


STATES_BY_NAME = {state.kafka_name: state for state in TxnState}


@dataclass
class TxnMetadata:
    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState = TxnState.EMPTY
    partitions: set[tuple[str, int]] = field(default_factory=set)
    start_ms: int = -1
    update_ms: int = 0
    # KIP-890 part 2: 2 once the producer ends transactions with EndTxn v5 (an epoch per
    # transaction); the producer id before an epoch overflow, for recognising a retried EndTxn.
    client_transaction_version: int = 0
    previous_producer_id: int = -1
    # The epoch the coordinator fenced when it aborted a timed-out transaction: that producer
    # may still re-initialise from it (KIP-360), as in Kafka. Not stored.
    last_producer_epoch: int = field(default=-1, compare=False)

    def value(self) -> TransactionLogValue:
        by_topic: dict[str, list[int]] = defaultdict(list)
        for topic, index in sorted(self.partitions):
            by_topic[topic].append(index)
        P = TransactionLogValue.PartitionsSchema
        return TransactionLogValue(
            producer_id=self.producer_id,
            producer_epoch=self.producer_epoch,
            transaction_timeout_ms=self.timeout_ms,
            transaction_status=int(self.state),
            transaction_partitions=[P(topic=t, partition_ids=ids) for t, ids in by_topic.items()],
            transaction_last_update_timestamp_ms=self.update_ms,
            transaction_start_timestamp_ms=self.start_ms,
            previous_producer_id=self.previous_producer_id,
            client_transaction_version=self.client_transaction_version,
        )

    @classmethod
    def from_value(cls, transactional_id: str, v: TransactionLogValue) -> "TxnMetadata":
        return cls(
            transactional_id,
            v.producer_id,
            v.producer_epoch,
            v.transaction_timeout_ms,
            TxnState(v.transaction_status) if v.transaction_status in TxnState._value2member_map_ else TxnState.EMPTY,
            {(p.topic, i) for p in v.transaction_partitions or [] for i in p.partition_ids},
            v.transaction_start_timestamp_ms,
            v.transaction_last_update_timestamp_ms,
            v.client_transaction_version,
            v.previous_producer_id,
        )


class TransactionStateStore(BrokerOffsetsStore):
    """`__transaction_state` in the broker's logs, created on first need (compacted)."""

    topic = TXN_TOPIC
    partitions_key = "transaction.state.log.num.partitions"
    factor_key = "transaction.state.log.replication.factor"

    def coordinates(self) -> bool:
        return self.broker.coordinates_transactions()


class TransactionCoordinator:
    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.store = TransactionStateStore(broker)
        config = broker.config
        self.max_timeout_ms = config["transaction.max.timeout.ms"]
        self.expiration_ms = config["transactional.id.expiration.ms"]
        self.abort_interval_s = config["transaction.abort.timed.out.transaction.cleanup.interval.ms"] / 1000
        self.expire_interval_s = config["transaction.remove.expired.transaction.cleanup.interval.ms"] / 1000
        self.verification = config["transaction.partition.verification.enable"]
        self.txns: dict[str, TxnMetadata] = {}
        self.loaded = False
        self._locks: dict[str, trio.Lock] = defaultdict(trio.Lock)
        self._nursery: Optional[trio.Nursery] = None

    def unavailable(self) -> int:
        if not self.broker.coordinates_transactions():
            return ErrorCode.NOT_COORDINATOR
        return 0 if self.loaded else ErrorCode.COORDINATOR_LOAD_IN_PROGRESS

    # -- running and loading ---------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(self)
            if self.broker.coordinates_transactions():
                await self.load()
            nursery.start_soon(self._every, self.abort_interval_s, self.abort_timed_out)
            nursery.start_soon(self._every, self.expire_interval_s, self.expire_ids)

    async def _every(self, seconds: float, work: Any) -> None:
        while True:
            await trio.sleep(seconds)
            if not self.loaded or not self.broker.coordinates_transactions():
                continue
            try:
                await work()
            except Exception:
                log.exception("transaction coordinator: %s failed", work.__name__)

    def moved_here(self) -> None:
        """This broker now leads `__transaction_state`: its states are loaded from its replica."""
        if self._nursery is not None:
            self.loaded = False
            self._nursery.start_soon(self.load)

    async def load(self) -> None:
        started = time.monotonic()
        records = await trio.to_thread.run_sync(lambda: list(self.store.read_all()))
        txns: dict[str, TxnMetadata] = {}
        for record in records:
            try:
                transactional_id, value = decode_transaction_record(record.key, record.value)
            except Exception as e:
                log.warning("skipping unreadable %s record: %s", TXN_TOPIC, e)
                continue
            if value is None:
                txns.pop(transactional_id, None)
            else:
                txns[transactional_id] = TxnMetadata.from_value(transactional_id, value)
        self.txns = txns
        self.loaded = True
        unfinished = [m for m in txns.values() if m.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT, TxnState.PREPARE_EPOCH_FENCE)]
        log.info("transaction coordinator loaded %d records: %d transactional ids, %d to finish, in %.2fs",
                 len(records), len(txns), len(unfinished), time.monotonic() - started)
        if unfinished:  # the decision was written; the markers may not all have been
            await self.finish_unfinished()

    async def _persist(self, meta: TxnMetadata, durable: bool = True) -> None:
        meta.update_ms = wall_clock_ms()
        record = transaction_record(meta.transactional_id, meta.value())
        await self.store.append(partition_for(meta.transactional_id, self.store.partition_count()), [record], durable=durable)

    # -- the APIs --------------------------------------------------------------------------------

    async def init_producer_id(self, transactional_id: str, timeout_ms: int, producer_id: int = -1, producer_epoch: int = -1) -> tuple[int, int, int]:
        """(error, producer id, epoch) for InitProducerId with a transactional id."""
        if error := self.unavailable():
            return error, -1, -1
        if not 0 < timeout_ms <= self.max_timeout_ms:
            return ErrorCode.INVALID_TRANSACTION_TIMEOUT, -1, -1
        async with self._locks[transactional_id]:
            meta = self.txns.get(transactional_id)
            try:
                if meta is None:
                    meta = TxnMetadata(transactional_id, await self.broker.producer_ids.next_id(), 0, timeout_ms)
                    await self._persist(meta)
                    self.txns[transactional_id] = meta
                    return ErrorCode.NONE, meta.producer_id, meta.producer_epoch
                current = (producer_id, producer_epoch) == (meta.producer_id, meta.producer_epoch)
                fenced_by_timeout = producer_id == meta.producer_id and producer_epoch == meta.last_producer_epoch >= 0
                if producer_id >= 0 and not (current or fenced_by_timeout):
                    return ErrorCode.PRODUCER_FENCED, -1, -1
                meta.last_producer_epoch = -1
                if meta.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT, TxnState.PREPARE_EPOCH_FENCE):
                    return ErrorCode.CONCURRENT_TRANSACTIONS, -1, -1
                await self._bump_epoch(meta)
                if meta.state == TxnState.ONGOING:  # the previous producer's transaction: aborted
                    log.info("aborting the open transaction of %r: a new producer initialised it", transactional_id)
                    await self._end(meta, commit=False)
                else:
                    meta.state = TxnState.EMPTY
                meta.timeout_ms = timeout_ms
                await self._persist(meta)
            except ProducerIdsUnavailable as e:
                log.warning("no producer id for transactional id %r: %s", transactional_id, e)
                return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, -1, -1
            except TopicError as e:
                return self._write_error(e), -1, -1
            return ErrorCode.NONE, meta.producer_id, meta.producer_epoch

    async def _bump_epoch(self, meta: TxnMetadata) -> None:
        if meta.producer_epoch >= LAST_EPOCH:
            meta.previous_producer_id = meta.producer_id
            meta.producer_id, meta.producer_epoch = await self.broker.producer_ids.next_id(), 0
        else:
            meta.producer_epoch += 1

    def _producer_error(self, meta: Optional[TxnMetadata], producer_id: int, producer_epoch: int) -> int:
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if meta.producer_epoch != producer_epoch:
            return ErrorCode.PRODUCER_FENCED
        if meta.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT, TxnState.PREPARE_EPOCH_FENCE):
            return ErrorCode.CONCURRENT_TRANSACTIONS
        return ErrorCode.NONE

    async def add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int, partitions: Iterable[tuple[str, int]], verify_only: bool = False) -> dict:
        """AddPartitionsToTxn (and AddOffsetsToTxn's partition): {(topic, partition): error}.
        `verify_only` (v4+, KIP-890): whether each is in the open transaction, adding none."""
        partitions = list(partitions)
        if error := self.unavailable():
            return {tp: error for tp in partitions}
        async with self._locks[transactional_id]:
            meta = self.txns.get(transactional_id)
            error = self._producer_error(meta, producer_id, producer_epoch)
            if error:
                return {tp: error for tp in partitions}
            assert meta is not None
            if verify_only:
                ongoing = meta.state == TxnState.ONGOING
                return {tp: ErrorCode.NONE if ongoing and tp in meta.partitions else ErrorCode.INVALID_TXN_STATE for tp in partitions}
            unknown = {(t, p) for t, p in partitions if not self._partition_exists(t, p)}
            if unknown:
                return {tp: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if tp in unknown else ErrorCode.OPERATION_NOT_ATTEMPTED for tp in partitions}
            if meta.state == TxnState.ONGOING and set(partitions) <= meta.partitions:
                return {tp: ErrorCode.NONE for tp in partitions}
            before = (meta.state, set(meta.partitions), meta.start_ms, meta.previous_producer_id)
            if meta.state != TxnState.ONGOING:
                meta.state, meta.partitions, meta.start_ms = TxnState.ONGOING, set(), wall_clock_ms()
                meta.previous_producer_id = -1  # an EndTxn retry of the last transaction is no longer possible
            meta.partitions.update(partitions)
            try:
                await self._persist(meta)
            except TopicError as e:
                meta.state, meta.partitions, meta.start_ms, meta.previous_producer_id = before
                return {tp: self._write_error(e) for tp in partitions}
            return {tp: ErrorCode.NONE for tp in partitions}

    def offsets_partition(self, group_id: str) -> tuple[str, int]:
        """The `__consumer_offsets` partition holding a group's offsets (AddOffsetsToTxn)."""
        return OFFSETS_TOPIC, partition_for(group_id, self.broker.groups.store.partition_count())

    def _partition_exists(self, topic: str, index: int) -> bool:
        if topic == OFFSETS_TOPIC:
            return 0 <= index < self.broker.groups.store.partition_count()
        view = self.broker.topics.get(topic)
        return view is not None and 0 <= index < view.partitions

    async def end_txn(self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool, bump_epoch: bool = False) -> tuple[int, int, int]:
        """EndTxn: (error, producer id, epoch) once every partition of the transaction has its
        marker. `bump_epoch` (EndTxn v5, KIP-890 part 2): the transaction ends with a new epoch
        (a new producer id when the epoch is exhausted), written in its markers and answered,
        so that no late request of the ended transaction is taken for the next one."""
        if error := self.unavailable():
            return error, -1, -1
        async with self._locks[transactional_id]:
            meta = self.txns.get(transactional_id)
            if bump_epoch and meta is not None and self._is_bumped_retry(meta, producer_id, producer_epoch):
                if meta.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT):
                    return ErrorCode.CONCURRENT_TRANSACTIONS, -1, -1  # its markers are still being written
                done = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
                return (ErrorCode.NONE if meta.state == done else ErrorCode.INVALID_TXN_STATE), meta.producer_id, meta.producer_epoch
            error = self._producer_error(meta, producer_id, producer_epoch)
            if error:
                return error, -1, -1
            assert meta is not None
            if meta.state == TxnState.COMPLETE_COMMIT:  # a retry of the same EndTxn
                return (ErrorCode.NONE if commit else ErrorCode.INVALID_TXN_STATE), meta.producer_id, meta.producer_epoch
            if meta.state == TxnState.COMPLETE_ABORT:
                return (ErrorCode.NONE if not commit else ErrorCode.INVALID_TXN_STATE), meta.producer_id, meta.producer_epoch
            if meta.state != TxnState.ONGOING:
                return ErrorCode.INVALID_TXN_STATE, -1, -1
            try:
                if bump_epoch:
                    meta.client_transaction_version = 2
                    await self._bump_epoch(meta)
                await self._end(meta, commit)
            except (TopicError, ProducerIdsUnavailable) as e:
                return (self._write_error(e) if isinstance(e, TopicError) else ErrorCode.COORDINATOR_LOAD_IN_PROGRESS), -1, -1
            return ErrorCode.NONE, meta.producer_id, meta.producer_epoch

    @staticmethod
    def _is_bumped_retry(meta: TxnMetadata, producer_id: int, producer_epoch: int) -> bool:
        """An EndTxn v5 sent again with the epoch its first try ended (whose answer was lost)."""
        if meta.state not in (TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT, TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT):
            return False
        same_id = producer_id == meta.producer_id and producer_epoch == meta.producer_epoch - 1
        overflowed = producer_id == meta.previous_producer_id and meta.producer_epoch == 0 and producer_epoch >= LAST_EPOCH
        return same_id or overflowed

    async def _end(self, meta: TxnMetadata, commit: bool) -> None:
        """Writes the decision, then the markers, then the completion."""
        meta.state = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
        await self._persist(meta)
        await self._write_markers_and_complete(meta, commit)

    async def _write_markers_and_complete(self, meta: TxnMetadata, commit: bool) -> None:
        marker = self._marker_of(meta, commit)
        pending = sorted(meta.partitions)
        deadline = trio.current_time() + MARKER_RETRY_SECONDS
        while True:
            if not self.broker.coordinates_transactions():  # another broker coordinates now: it finishes this
                raise TopicError(ErrorCode.NOT_COORDINATOR, f"no longer the coordinator of {meta.transactional_id!r}")
            errors = await self.write_markers(marker, pending)
            if self.broker.replicas is not None:
                errors.update(await self._write_remote_markers(marker, errors))
            if ErrorCode.TRANSACTION_COORDINATOR_FENCED in errors.values():
                raise TopicError(ErrorCode.NOT_COORDINATOR, f"a newer coordinator wrote markers of {meta.transactional_id!r}")
            pending = [tp for tp, code in errors.items() if code not in MARKER_DONE]
            if not pending:
                break
            if trio.current_time() >= deadline:
                raise TopicError(ErrorCode.COORDINATOR_NOT_AVAILABLE, f"markers of {meta.transactional_id!r} not written to {pending}: {errors}")
            await trio.sleep(MARKER_RETRY_PAUSE)
        meta.state = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
        meta.partitions = set()
        # Not fsynced: the markers are (before this is written), and a Complete* record lost in
        # a crash leaves Prepare*, whose markers the next load writes again (harmlessly).
        await self._persist(meta, durable=False)

    def _marker_of(self, meta: TxnMetadata, commit: bool) -> "Marker":
        """The marker ending `meta`'s transaction. When ending it exhausted the epoch, the
        producer has a new id already: the markers go to the old id, with the last epoch."""
        if meta.previous_producer_id >= 0 and meta.producer_epoch == 0:
            return Marker(meta.previous_producer_id, LAST_EPOCH + 1, commit, self.coordinator_epoch())
        return Marker(meta.producer_id, meta.producer_epoch, commit, self.coordinator_epoch())

    def coordinator_epoch(self) -> int:
        """The epoch markers carry, so that a partition refuses those of a coordinator that lost
        its role (TRANSACTION_COORDINATOR_FENCED): the leader epoch of `__transaction_state`-0."""
        if self.broker.replicas is None:
            return 0
        return max(self.broker.replicas.leader_epoch(TXN_TOPIC, 0) or 0, 0)

    async def write_markers(self, marker: "Marker", partitions: list) -> dict:
        """Appends the marker to each partition led here, fsyncs them, waits (in a cluster) for
        their in-sync replicas, and applies transactional offsets of `__consumer_offsets`
        partitions: {(topic, p): error}."""
        results: dict[tuple[str, int], int] = {}
        written, awaiting = [], []
        replicas = self.broker.replicas
        for topic, index in partitions:
            partition = self.broker.logs.partition(topic, index)
            leader_epoch = 0
            if partition is not None and replicas is not None:
                epoch = replicas.leader_epoch(topic, index)
                partition, leader_epoch = (partition, epoch) if epoch is not None else (None, 0)
            if partition is None:
                # A partition deleted meanwhile has nothing left to mark; one led elsewhere is sent there.
                view = self.broker.topics.get(topic)
                exists = view is not None and 0 <= index < view.partitions
                results[(topic, index)] = ErrorCode.NOT_LEADER_OR_FOLLOWER if exists else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            try:
                offset = partition.log.append_marker(marker.producer_id, marker.producer_epoch, marker.commit, marker.coordinator_epoch, leader_epoch)
            except _core.StorageError as e:
                log.warning("no %s marker for producer %d in %s-%d: %s", "COMMIT" if marker.commit else "ABORT", marker.producer_id, topic, index, e)
                results[(topic, index)] = marker_refusal(e)
                continue
            state = replicas.state(topic, index) if replicas is not None else None
            if state is None or replicas.alone(state):
                partition.log.high_watermark = TO_LOG_END
            else:
                awaiting.append((topic, index, offset + 1))
            written.append(partition)
            results[(topic, index)] = ErrorCode.NONE
            if topic == OFFSETS_TOPIC:
                self.broker.groups.complete_txn(marker.producer_id, marker.commit, index)
        if written:
            await self.broker.io_threads.run(lambda: [p.log.flush() for p in written])
        for partition in written:
            partition.wake_waiters()
        if awaiting:  # a marker only the leader has could be lost with it: the transaction would reopen
            for topic, index, code in await replicas.wait_for_replicas(awaiting, MARKER_REPLICATION_TIMEOUT_MS):
                results[(topic, index)] = code
        return results

    async def _write_remote_markers(self, marker: "Marker", errors: dict) -> dict:
        """Sends WriteTxnMarkers to the leaders of the partitions another broker leads (those
        `errors` has as NOT_LEADER_OR_FOLLOWER): their errors, by partition."""
        assert self.broker.controller is not None and self.broker.replicas is not None
        image = self.broker.controller.image
        by_leader: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for (topic, index), code in errors.items():
            if code == ErrorCode.NOT_LEADER_OR_FOLLOWER:
                p = image.partition(topic, index)
                if p is not None and p.leader >= 0 and p.leader != self.broker.node_id:
                    by_leader[p.leader].append((topic, index))
        results: dict[tuple[str, int], int] = {}
        for leader, partitions in by_leader.items():
            results.update(await self._send_markers(leader, marker, partitions))
        return results

    async def _send_markers(self, leader: int, marker: "Marker", partitions: list) -> dict:
        W = protocol.WriteTxnMarkersRequest
        by_topic: dict[str, list[int]] = defaultdict(list)
        for topic, index in partitions:
            by_topic[topic].append(index)
        request = W(markers=[W.WritableTxnMarker(
            producer_id=marker.producer_id, producer_epoch=marker.producer_epoch, transaction_result=marker.commit,
            coordinator_epoch=marker.coordinator_epoch,
            topics=[W.WritableTxnMarkerTopic(name=t, partition_indexes=ids) for t, ids in by_topic.items()],
        )])
        link = await self.broker.replicas.connect_to(leader)
        if link is None:
            return {tp: ErrorCode.NOT_LEADER_OR_FOLLOWER for tp in partitions}
        try:
            response = await link.call(request, 1)
        except Exception as e:
            log.info("WriteTxnMarkers to broker %d failed: %s", leader, e)
            return {tp: ErrorCode.NOT_LEADER_OR_FOLLOWER for tp in partitions}
        finally:
            await link.aclose()
        return {(t.name, p.partition_index): p.error_code for m in response.markers for t in m.topics for p in t.partitions}

    def verify(self, transactional_id: str, producer_id: int, producer_epoch: int, topic: str, index: int) -> int:
        """KIP-890's check of a transactional write (called from any network loop): 0 when the
        partition is in the producer's open transaction, else the error refusing the write.
        Where the coordinator is another broker: 0 when the producer's transaction is already
        open in the partition (verified at its first write), else NEEDS_COORDINATOR."""
        if not self.verification:
            return ErrorCode.NONE
        if not self.broker.coordinates_transactions():
            partition = self.broker.logs.partition(topic, index)
            if partition is not None and any(pid == producer_id for pid, _ in partition.log.ongoing_transactions()):
                return ErrorCode.NONE
            return NEEDS_COORDINATOR
        if not self.loaded:
            return ErrorCode.NOT_ENOUGH_REPLICAS  # retriable for producers, as Kafka answers
        meta = self.txns.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if producer_epoch < meta.producer_epoch:
            return ErrorCode.INVALID_PRODUCER_EPOCH
        if meta.state != TxnState.ONGOING or (topic, index) not in meta.partitions:
            return ErrorCode.INVALID_TXN_STATE
        return ErrorCode.NONE

    async def verify_remotely(self, transactional_id: str, producer_id: int, producer_epoch: int, topic: str, index: int) -> int:
        """`verify` where the coordinator is another broker: AddPartitionsToTxn v4 with
        `verify_only`, as Kafka's partition leaders ask it."""
        coordinator = self._coordinator_id()
        A = protocol.AddPartitionsToTxnRequest
        request = A(transactions=[A.AddPartitionsToTxnTransaction(
            transactional_id=transactional_id, producer_id=producer_id, producer_epoch=producer_epoch, verify_only=True,
            topics=[A.AddPartitionsToTxnTopic(name=topic, partitions=[index])],
        )])
        link = await self.broker.replicas.connect_to(coordinator) if coordinator >= 0 and self.broker.replicas is not None else None
        if link is None:
            return ErrorCode.NOT_ENOUGH_REPLICAS  # retriable for producers: the coordinator is away
        try:
            response = await link.call(request, 4)
        except Exception as e:
            log.info("verification of %r by broker %d failed: %s", transactional_id, coordinator, e)
            return ErrorCode.NOT_ENOUGH_REPLICAS
        finally:
            await link.aclose()
        codes = [p.partition_error_code for t in response.results_by_transaction for r in t.topic_results for p in r.results_by_partition]
        code = response.error_code or (codes[0] if codes else ErrorCode.INVALID_TXN_STATE)
        # The coordinator moving or loading is retriable for the producer (Kafka's mapping).
        return ErrorCode.NOT_ENOUGH_REPLICAS if code in COORDINATOR_AWAY else code

    def _coordinator_id(self) -> int:
        if self.broker.controller is None:
            return self.broker.node_id
        p = self.broker.controller.image.partition(TXN_TOPIC, 0)
        return p.leader if p is not None else -1

    # -- timeouts and expiry -----------------------------------------------------------------------

    async def abort_timed_out(self) -> int:
        """Aborts open transactions older than their timeout, fencing their producer (a new
        epoch); returns how many."""
        await self.finish_unfinished()
        now = wall_clock_ms()
        late = [m for m in self.txns.values() if m.state == TxnState.ONGOING and now - m.start_ms > m.timeout_ms]
        for meta in late:
            async with self._locks[meta.transactional_id]:
                if meta.state != TxnState.ONGOING or now - meta.start_ms <= meta.timeout_ms:
                    continue
                log.info("aborting the transaction of %r (producer %d): open for %d ms, its timeout is %d ms",
                         meta.transactional_id, meta.producer_id, now - meta.start_ms, meta.timeout_ms)
                try:
                    meta.last_producer_epoch = meta.producer_epoch
                    await self._bump_epoch(meta)
                    await self._end(meta, commit=False)
                except (TopicError, ProducerIdsUnavailable) as e:
                    log.warning("could not abort the transaction of %r: %s", meta.transactional_id, e)
        return len(late)

    async def finish_unfinished(self) -> None:
        """Writes the markers of transactions decided but not completed (a leader was away)."""
        for meta in [m for m in self.txns.values() if m.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)]:
            async with self._locks[meta.transactional_id]:
                if meta.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT):
                    try:
                        await self._write_markers_and_complete(meta, meta.state == TxnState.PREPARE_COMMIT)
                    except TopicError as e:
                        log.warning("transaction of %r still not complete: %s", meta.transactional_id, e.message)

    async def expire_ids(self) -> int:
        """Forgets transactional ids without an open transaction for `transactional.id.expiration.ms`."""
        now = wall_clock_ms()
        idle = [m for m in self.txns.values()
                if m.state in (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT) and now - m.update_ms > self.expiration_ms]
        for meta in idle:
            async with self._locks[meta.transactional_id]:
                still_idle = meta.state in (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)
                if self.txns.get(meta.transactional_id) is not meta or not still_idle or wall_clock_ms() - meta.update_ms <= self.expiration_ms:
                    continue  # used again meanwhile
                partition = partition_for(meta.transactional_id, self.store.partition_count())
                await self.store.append(partition, [transaction_record(meta.transactional_id, None)])
                del self.txns[meta.transactional_id]
            lock = self._locks[meta.transactional_id]
            if meta.transactional_id not in self.txns and not lock.locked() and not lock.statistics().tasks_waiting:
                del self._locks[meta.transactional_id]  # nobody waits for it: a later request makes a new one
        return len(idle)

    # -- describing --------------------------------------------------------------------------------

    def matching(self, states: set[TxnState], producer_ids: set[int], min_duration_ms: int) -> list[TxnMetadata]:
        """ListTransactions: the ids in `states` (any when empty) of `producer_ids` (any when
        empty), open for at least `min_duration_ms` (-1: any)."""
        now = wall_clock_ms()
        return [
            m for m in self.txns.values()
            if (not states or m.state in states)
            and (not producer_ids or m.producer_id in producer_ids)
            and (min_duration_ms < 0 or (m.state == TxnState.ONGOING and now - m.start_ms >= min_duration_ms))
        ]

    @staticmethod
    def _write_error(e: TopicError) -> int:
        """A failed write of the coordinator's state: clients retry these."""
        if e.error_code in (ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, ErrorCode.COORDINATOR_NOT_AVAILABLE):
            return e.error_code
        log.warning("transaction state not written: %s", e.message)
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
