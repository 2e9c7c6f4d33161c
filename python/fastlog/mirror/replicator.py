"""Copies the topics of one flow (source -> target), as MirrorMaker 2's source connector does.

Each round fetches from every mirrored partition at its position, appends what came to the
same partition of the remote topic (acks=all; key, value, headers and timestamps kept), and
only then records the new positions in the target cluster (the group
`mm2-offsets.<source>.internal`, one committed offset per remote partition: the next source
offset to copy). A mirror killed at any point therefore resumes from the last recorded
position: nothing is lost, and what it copies twice is at most the batches of one round
(at-least-once). With `exactly.once.source.support=enabled` the copies and the new positions of
a round are one transaction of the target (`transactions.TargetTransactions`): exactly-once for
read_committed readers. The source is read read_committed: its aborted transactions are not
copied.

Every `refresh.topics.interval.seconds` the source's topics are listed again: new matching
topics are made on the target with the source's partition count and configs (minus the ones
that describe the source cluster), partitions added at the source are added at the target,
and changed configs are copied (`sync.topic.configs.enabled`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Optional

from fastlog.client import LATEST, RESOURCE_TOPIC, Client, KafkaError, UnsupportedByBroker
from fastlog.mirror.batches import Copy, split
from fastlog.mirror.config import CONFIGS_NOT_COPIED, Flow, MirrorConfig
from fastlog.mirror.offsets import OffsetSyncs
from fastlog.mirror.records import OffsetSync
from fastlog.mirror.transactions import TargetTransactions
from fastlog.mirror.workers import WorkGroup
from fastlog.protocol import ErrorCode
from fastlog.records import Record

log = logging.getLogger(__name__)

FETCH_WAIT_MS = 500
RETRY_REFUSED_SECONDS = 1.0  # a round where the target refused a partition: a pause before the next
ERROR_REFRESH_SECONDS = 1.0  # a fetch error (a leader moving): metadata again after this, not at once
PARTITION_FETCH_BYTES = 8 << 20  # large rounds: fewer requests, fewer progress commits
DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs' source of a topic's own override
EARLIEST = -2
READ_COMMITTED = 1  # the source's aborted transactions are not copied


@dataclass
class Totals:
    records: int = 0
    bytes: int = 0


class Replicator:
    def __init__(self, config: MirrorConfig, flow: Flow, timeout: float = 30.0, worker_id: Optional[str] = None) -> None:
        self.config = config
        self.flow = flow
        self.source = Client(flow.source.bootstrap, timeout=timeout, client_id=f"fastlog-mirror-{flow.name}", security=flow.source.security)
        self.target = Client(flow.target.bootstrap, timeout=timeout, client_id=f"fastlog-mirror-{flow.name}", security=flow.target.security)
        self.progress_group = f"mm2-offsets.{flow.source.alias}.internal"
        self.syncs_topic = f"mm2-offset-syncs.{flow.target.alias}.internal"  # on the source, as MM2 keeps it
        self.syncs = OffsetSyncs()
        # Mirrors of this flow share its partitions; `positions` holds this mirror's share.
        self.work = WorkGroup(self.target, f"mm2-workers.{flow.source.alias}.{flow.target.alias}.internal", worker_id)
        # Exactly-once: a transactional producer of the target, one per mirror of the flow (a
        # restarted mirror with the same worker id fences its previous incarnation).
        self.txn: Optional[TargetTransactions] = None
        if config.exactly_once:
            suffix = f"-{worker_id}" if worker_id else ""
            self.txn = TargetTransactions(self.target, f"mm2-{flow.source.alias}->{flow.target.alias}{suffix}")
        self.syncs_on_source = True  # False: the source cannot keep them (no CreateTopics): in memory only
        self.source_configs = True  # False: the source has no DescribeConfigs
        self.downstream: dict[tuple[str, int], int] = {}  # (source topic, partition) -> next target offset
        self.positions: dict[tuple[str, int], int] = {}  # (source topic, partition) -> next offset to copy, of this mirror's share
        self.topics: dict[str, int] = {}  # source topic -> partitions mirrored
        self.configs: dict[str, dict[str, str]] = {}  # source topic -> configs copied last
        self.totals = Totals()
        self.latency: dict[tuple[str, int], float] = {}  # seconds from a record's timestamp to its copy, last round
        self._refreshed_at = float("-inf")
        self._syncs_loaded = False

    def close(self) -> None:
        self.work.leave()
        self.source.close()
        self.target.close()

    # -- one round ------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Refreshes the topics when due, then copies one fetch's worth; the records copied."""
        if self.txn is not None and self.txn.producer_id < 0:
            self.txn.start()  # before any position is read: what an earlier run left open is aborted
            self.positions.clear()
        if not self._syncs_loaded:
            self.load_syncs()
        if time.monotonic() - self._refreshed_at >= self.config.refresh_topics_seconds:
            self.refresh_topics()
        wanted = {(t, p) for t, count in self.topics.items() for p in range(count)}
        self._take_share(self.work.partitions(wanted) & wanted)  # a share dealt before a topic was deleted
        if not self.positions:
            time.sleep(FETCH_WAIT_MS / 1000)
            return 0
        fetched = self.source.fetch(self.positions, max_wait_ms=FETCH_WAIT_MS, partition_max_bytes=PARTITION_FETCH_BYTES, decode=False,
                                    isolation_level=READ_COMMITTED)
        copies: dict[tuple[str, int], Copy] = {}
        moved: dict[tuple[str, int], int] = {}
        errors = False
        for key, part in fetched.items():
            if part.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                self.positions[key] = self._earliest(key)  # retention passed us: go on from the log start
                log.warning("%s: %s-%d: offset out of range; going on from %d", self.flow.name, *key, self.positions[key])
                continue
            if part.error_code:  # a leader moved, most likely: metadata again soon
                log.debug("%s: fetch %s-%d: %s", self.flow.name, *key, ErrorCode(part.error_code).name)
                self._refreshed_at = min(self._refreshed_at, time.monotonic() - self.config.refresh_topics_seconds + ERROR_REFRESH_SECONDS)
                errors = True
                continue
            copy = split(part.raw, self.positions[key], part.aborted)
            if copy.batches:
                copies[key] = copy
            if copy.next_offset > self.positions[key]:
                moved[key] = copy.next_offset  # past control batches and compacted gaps too
        progress = {(self.config.remote_topic(self.flow, t), p): o for (t, p), o in moved.items()}
        if self.txn is not None:
            if (copies or moved) and not self._copy_in_transaction(copies, progress):
                return 0
        else:
            for key in self._append(copies):  # refused there: copied again next round (from its position)
                moved.pop(key, None)
                copies.pop(key, None)
                progress.pop((self.config.remote_topic(self.flow, key[0]), key[1]), None)
        if moved:
            self._write_syncs([(key, self.syncs.advance(key, offset, self.downstream[key])) for key, offset in moved.items()])
            if self.txn is None:
                self.target.commit_offsets(self.progress_group, progress)
            self.positions.update(moved)
            now = time.time()
            for key, copy in copies.items():
                if copy.last_timestamp is not None:
                    self.latency[key] = now - copy.last_timestamp / 1000
        copied = sum(c.count for c in copies.values())
        if errors and not copied:
            time.sleep(FETCH_WAIT_MS / 1000)  # partitions in error answer at once: no busy loop
        self.totals.records += copied
        self.totals.bytes += sum(c.size for c in copies.values())
        return copied

    def _append(self, copies: dict[tuple[str, int], Copy]) -> set[tuple[str, int]]:
        """Appends each partition's batches in order, acks=all: a Produce carries one batch per
        partition (Kafka's rule from v3), so a partition with several takes several requests.
        The partitions the target refused (their later batches are not sent): the others'
        progress is recorded, so a refusal of one partition does not copy the rest again."""
        remote = {key: (self.config.remote_topic(self.flow, key[0]), key[1]) for key in copies}
        refused: set[tuple[str, int]] = set()
        for wave in range(max((len(c.batches) for c in copies.values()), default=0)):
            sending = {key: c.batches[wave] for key, c in copies.items() if wave < len(c.batches) and key not in refused}
            if not sending:
                break
            errors: dict = {}
            bases = self.target.produce_encoded({remote[key]: batch for key, (batch, _) in sending.items()}, acks=-1, errors=errors)
            for key, (_, count) in sending.items():
                if remote[key] in errors:
                    refused.add(key)
                    log.warning("%s: %s", self.flow.name, errors[remote[key]])
                else:
                    self.downstream[key] = bases[remote[key]] + count
            self.work.heartbeat_if_due()  # a long round must not end this mirror's group session
        if refused:
            # Batches of a refused partition already appended in earlier waves are copied
            # again from its position: its downstream offset is read anew.
            ends = self.target.list_offsets([remote[key] for key in refused], LATEST)
            for key in refused:
                self.downstream[key] = ends[remote[key]]
                self.syncs.current.pop(key, None)
            time.sleep(RETRY_REFUSED_SECONDS)
        return refused

    def _copy_in_transaction(self, copies: dict[tuple[str, int], Copy], progress: dict[tuple[str, int], int]) -> bool:
        """Exactly-once: the round's batches and its progress in one transaction of the target.
        False when it failed: the transaction is aborted and the positions are read again."""
        assert self.txn is not None
        remote = {key: (self.config.remote_topic(self.flow, key[0]), key[1]) for key in copies}
        try:
            if copies:
                self.txn.add_partitions(list(remote.values()))
            for wave in range(max((len(c.batches) for c in copies.values()), default=0)):
                sending = {key: c.batches[wave] for key, c in copies.items() if wave < len(c.batches)}
                stamped = {remote[key]: self.txn.stamped(remote[key], batch, count) for key, (batch, count) in sending.items()}
                bases = self.target.produce_encoded(stamped, acks=-1, transactional_id=self.txn.transactional_id)
                for key, (_, count) in sending.items():
                    self.downstream[key] = bases[remote[key]] + count
                self.work.heartbeat_if_due()
            self.txn.commit(self.progress_group, progress)
            return True
        except Exception as e:  # whatever failed, this transaction must not be committed
            log.warning("%s: round aborted, copied again from the last committed progress: %s", self.flow.name, e)
            self.txn.abort()
            self.txn.producer_id = -1  # the next round starts a new session (new epoch, positions read again)
            time.sleep(RETRY_REFUSED_SECONDS)
            return False

    def _earliest(self, key: tuple[str, int]) -> int:
        return self.source.list_offsets([key], EARLIEST)[key]

    # -- topics ---------------------------------------------------------------------------------

    def refresh_topics(self) -> None:
        """New topics and partitions, and configs, from the source to the target (and both
        clusters' leaders read again)."""
        self._refreshed_at = time.monotonic()
        self.target.metadata()
        cluster = self.source.metadata()
        for gone in [t for t in self.topics if t not in cluster.topics]:  # deleted at the source
            log.info("%s: %s is gone from the source; no longer mirrored", self.flow.name, gone)
            del self.topics[gone]
            self.configs.pop(gone, None)
            for key in [k for k in self.positions if k[0] == gone]:
                del self.positions[key]
        for name, info in sorted(cluster.topics.items()):
            if info.internal or info.error_code or not self.config.wanted(self.flow, name):
                continue
            count = len(info.partitions)
            remote = self.config.remote_topic(self.flow, name)
            configs = self._source_configs(name) if self.config.sync_topic_configs else {}
            if name not in self.topics:
                self._ensure_topic(remote, count, configs)
            elif count > self.topics[name]:
                self._grow(remote, count)
            if self.config.sync_topic_configs and name in self.configs and configs != self.configs[name]:
                self.target.alter_configs(RESOURCE_TOPIC, remote, configs, delete=sorted(set(self.configs.get(name, {})) - set(configs)))
                log.info("%s: configs of %s copied to %s: %s", self.flow.name, name, remote, configs)
            self.topics[name] = count
            self.configs[name] = configs

    def _source_configs(self, topic: str) -> dict[str, str]:
        if not self.source_configs:
            return {}
        try:
            entries = self.source.describe_configs(RESOURCE_TOPIC, topic)
        except UnsupportedByBroker as e:
            log.warning("%s: %s: topics are made without the source's configs", self.flow.name, e)
            self.source_configs = False
            return {}
        return {e.name: e.value for e in entries if e.config_source == DYNAMIC_TOPIC_CONFIG and e.value is not None and e.name not in CONFIGS_NOT_COPIED}

    def _ensure_topic(self, remote: str, count: int, configs: dict[str, str]) -> None:
        try:
            self.target.create_topic(remote, count, self.config.replication_factor, configs)
            log.info("%s: created %s on %s (%d partitions)", self.flow.name, remote, self.flow.target.alias, count)
        except KafkaError as e:
            if e.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                raise
            existing = len(self.target.topic(remote).partitions)
            if existing < count:
                self._grow(remote, count)
            if configs:  # made by an earlier run, or another mirror: the source's configs now
                self.target.alter_configs(RESOURCE_TOPIC, remote, configs)

    def _grow(self, remote: str, count: int) -> None:
        try:
            self.target.create_partitions(remote, count)
            log.info("%s: %s grown to %d partitions", self.flow.name, remote, count)
        except KafkaError as e:
            if e.code != ErrorCode.INVALID_PARTITIONS:  # already as many
                raise

    def _take_share(self, share: frozenset) -> None:
        """Copies from now on exactly `share`: partitions dealt to another mirror are dropped,
        new ones start from the progress recorded on the target (another mirror may have
        moved it), else from the source's log start."""
        for key in [k for k in self.positions if k not in share]:
            del self.positions[key]
        new = sorted(key for key in share if key not in self.positions)
        if not new:
            return
        remote = {key: (self.config.remote_topic(self.flow, key[0]), key[1]) for key in new}
        recorded = {(c.topic, c.partition): c.offset for c in self.target.committed_offsets(self.progress_group, list(remote.values()))}
        unknown = [key for key in new if recorded.get(remote[key], -1) < 0]
        earliest = self.source.list_offsets(unknown, EARLIEST) if unknown else {}
        ends = self.target.list_offsets(list(remote.values()), LATEST)
        for key in new:
            self.positions[key] = recorded[remote[key]] if recorded.get(remote[key], -1) >= 0 else earliest[key]
            # The next copied record lands at the target's end (its one writer is this mirror now).
            self.downstream[key] = ends[remote[key]]
            self.syncs.current.pop(key, None)  # another mirror's copies came in between: no linear run across them
        self._write_syncs([(key, self.syncs.advance(key, self.positions[key], self.downstream[key])) for key in new])

    def _write_syncs(self, points: list[tuple[tuple[str, int], list[tuple[int, int]]]]) -> None:
        """Writes (partition, [(upstream, downstream), ...]) syncs to the source's syncs topic."""
        records = [OffsetSync(t, p, up, down) for (t, p), pairs in points for up, down in pairs]
        if not records or not self.syncs_on_source:
            return
        batch = [Record(i, int(time.time() * 1000), s.key(), s.value()) for i, s in enumerate(records)]
        self.source.produce({(self.syncs_topic, 0): batch}, acks=-1)

    def load_syncs(self) -> None:
        """The offset syncs written before (by this mirror's earlier runs): offset translation
        for what was copied then. Makes the syncs topic (compacted, one partition) if missing."""
        try:
            self.source.create_topic(self.syncs_topic, 1, self.config.replication_factor, {"cleanup.policy": "compact"})
        except UnsupportedByBroker as e:
            log.warning("%s: %s: offset syncs are kept in memory only (translation covers this run)", self.flow.name, e)
            self.syncs_on_source = False
            self._syncs_loaded = True
            return
        except KafkaError as e:
            if e.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                raise
        for record in read_partition(self.source, self.syncs_topic, 0):
            try:
                sync = OffsetSync.read(record.key or b"", record.value or b"")
            except (ValueError, UnicodeDecodeError, IndexError):
                continue
            self.syncs.add((sync.topic, sync.partition), sync.upstream, sync.downstream)
        self._syncs_loaded = True

    def lag(self) -> dict[tuple[str, int], int]:
        """Records each mirrored partition's source has that the mirror has not copied."""
        ends = self.source.list_offsets(list(self.positions))
        return {key: max(0, ends[key] - position) for key, position in self.positions.items()}


def read_partition(client: Client, topic: str, partition: int) -> list[Record]:
    """Every record of one partition, from its start to its end now."""
    start, end = client.offsets_of(topic)[partition]
    records: list[Record] = []
    offset = start
    while offset < end:
        fetched = client.fetch({(topic, partition): offset}, max_wait_ms=0)[(topic, partition)]
        if fetched.error_code:
            raise KafkaError(fetched.error_code, context=f"read {topic}-{partition}")
        records += fetched.records
        if fetched.next_offset <= offset:
            break
        offset = fetched.next_offset
    return records
