"""Topics and their partition logs on disk, and the checkpoints that make restarts cheap.

A log dir holds Kafka's files: `meta.properties` (cluster and node id), one directory per
partition (`<topic>-<partition>`, with `partition.metadata` naming the topic id),
`recovery-point-offset-checkpoint` and `log-start-offset-checkpoint`. The list of topics with
their ids, partition counts and config overrides is kept in `fastlog-topics.json` (Kafka keeps
it in its metadata log), written atomically.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import trio

from fastlog import _core
from fastlog.config import BrokerConfig, config_text

log = logging.getLogger(__name__)

TOPICS_FILE = "fastlog-topics.json"
RECOVERY_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_CHECKPOINT = "log-start-offset-checkpoint"
# In a cluster, each partition's high watermark (Kafka's file): a restarted broker does not
# show consumers records its followers may never have had.
HIGH_WATERMARK_CHECKPOINT = "replication-offset-checkpoint"
LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_LENGTH = 249
# More partitions than this in one topic is a typo or an attack, not a plan.
MAX_PARTITIONS_PER_TOPIC = 100_000


class TopicError(Exception):
    """A topic operation that cannot be done; `error_code` is the Kafka error to answer with."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


RESERVED_TOPICS = frozenset({"__cluster_metadata"})  # the metadata quorum's log, as in Kafka


def topic_name_problem(name: str) -> Optional[str]:
    """Why `name` is not a legal topic name, or None when it is."""
    if not name:
        return "topic name is empty"
    if name in RESERVED_TOPICS:
        return f"topic name {name!r} is reserved for the cluster's metadata log"
    if name in (".", ".."):
        return f"topic name {name!r} is not allowed"
    if len(name) > MAX_TOPIC_LENGTH:
        return f"topic name is longer than {MAX_TOPIC_LENGTH} characters"
    if not LEGAL_TOPIC.match(name):
        return f"topic name {name!r} has characters other than ASCII letters, digits, '.', '_' and '-'"
    return None


@dataclass(eq=False)
class Partition:
    topic: str
    index: int
    log: _core.Log
    # Fetches parked until data arrives register (event, its loop's token) here; an append
    # sets them all, from whichever network loop it ran on (num.network.threads).
    waiters: set = field(default_factory=set)
    wakes: int = 0  # how many times waiters were woken (appends), for fetches between read and park
    sync_failure_reported: bool = False  # logged (Broker._report_sync_failures)
    _waiters_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_waiter(self, event: trio.Event) -> tuple:
        waiter = (event, trio.lowlevel.current_trio_token())
        with self._waiters_lock:
            self.waiters.add(waiter)
        return waiter

    def remove_waiter(self, waiter: tuple) -> None:
        with self._waiters_lock:
            self.waiters.discard(waiter)

    def wake_waiters(self) -> None:
        with self._waiters_lock:
            self.wakes += 1
            waiters, self.waiters = self.waiters, set()
        if not waiters:
            return
        try:
            here: Optional[trio.lowlevel.TrioToken] = trio.lowlevel.current_trio_token()
        except RuntimeError:  # a worker thread: every waiter is woken through its loop
            here = None
        for event, token in waiters:
            if token is here:
                event.set()
            else:
                try:
                    token.run_sync_soon(event.set)
                except trio.RunFinishedError:  # that loop has stopped
                    pass

    @property
    def dir_name(self) -> str:
        return f"{self.topic}-{self.index}"


@dataclass(eq=False)
class Topic:
    name: str
    id: uuid.UUID
    configs: dict[str, Any]
    partitions: list[Partition]

    @property
    def internal(self) -> bool:
        return self.name.startswith("__")


def write_atomically(path: Path, text: str, mode: int = 0o666) -> None:
    """Replaces `path` with `text`, durably (fsynced, directory too); `mode` before the umask."""
    tmp = path.with_name(path.name + ".tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class LogManager:
    """Owns every partition log of this broker."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.data_dir = config.log_dirs[0].resolve()
        self.topics: dict[str, Topic] = {}
        self.topics_by_id: dict[uuid.UUID, Topic] = {}
        # The same logs by topic name for the Rust core's Produce path (handlers/produce.py).
        self.table = _core.PartitionTable()
        self.cluster_id = ""
        self.defaults = config.topic_defaults()
        self.cleaner_stats = {"bytes_read": 0, "bytes_written": 0, "records_removed": 0}
        self.cleaning_stopped = False
        # Kafka's count: a key map entry is a 16-byte digest and an 8-byte offset.
        self.cleaner_max_keys = int(config["log.cleaner.dedupe.buffer.size"] // 24 * config["log.cleaner.io.buffer.load.factor"])
        self._sync_failures_seen = 0  # _core.sync_failure_count() at the last new_sync_failures
        # Checkpoints are written from worker threads (periodically) and at shutdown.
        self._checkpoint_lock = threading.Lock()
        # Told the seconds each flush (fsync) took; the metrics set it.
        self.on_flush: Optional[Callable[[float], None]] = None
        # Topics whose records must carry schema ids (confluent.key/value.schema.validation):
        # name -> (keys, values), and the names encoded, which Produce looks for in a frame
        # (it takes a slower path for these only). Replaced whole, never changed in place:
        # network loops read them from their threads.
        self.schema_validation: dict[str, tuple[bool, bool]] = {}
        self.schema_validation_names: tuple[bytes, ...] = ()

    # -- start-up and shut-down -------------------------------------------------------------

    def open(self) -> None:
        """Opens every topic's logs, recovering each from its checkpointed recovery point."""
        started = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _core.set_open_file_limit(self.config["open.files.max"])
        self.cluster_id = self._load_meta_properties()
        recovery = self._read_offsets(RECOVERY_CHECKPOINT)
        starts = self._read_offsets(LOG_START_CHECKPOINT)
        high_watermarks = self._read_offsets(HIGH_WATERMARK_CHECKPOINT) if self.config.cluster_mode else {}
        for name, entry in self._read_topics_file().items():
            topic = Topic(name, uuid.UUID(entry["id"]), dict(entry.get("configs", {})), [])
            for index in range(int(entry["partitions"])):
                key = (name, index)
                partition = self._open_partition(topic, index, recovery.get(key, 0), starts.get(key, 0))
                if key in high_watermarks:  # the log opens with its end as high watermark
                    partition.log.high_watermark = high_watermarks[key]
                topic.partitions.append(partition)
            self._register(topic)
        log.info(
            "opened %d topics, %d partitions in %s in %.2fs",
            len(self.topics),
            sum(len(t.partitions) for t in self.topics.values()),
            self.data_dir,
            time.monotonic() - started,
        )

    def _open_partition(self, topic: Topic, index: int, recovery_point: int = 0, log_start: int = 0) -> Partition:
        path = self.data_dir / f"{topic.name}-{index}"
        created = not path.exists()
        partition_log = _core.Log(path, self.log_config(topic), recovery_point, log_start)
        for repair in partition_log.repairs:
            log.warning("recovery of %s: %s", path.name, repair)
        if created or not (path / "partition.metadata").exists():
            topic_id = base64.urlsafe_b64encode(topic.id.bytes).decode().rstrip("=")
            write_atomically(path / "partition.metadata", f"version: 0\ntopic_id: {topic_id}\n")
        return Partition(topic.name, index, partition_log)

    def close(self) -> None:
        """Flushes every log, records the checkpoints, and closes the files (clean shutdown).
        A log that cannot be flushed (an fsync failed, here or on the core's flusher thread) is
        logged and left to recovery at the next start; the others still close cleanly."""
        for partition in self.all_partitions():
            try:
                self._flush(partition.log.flush)
            except _core.StorageError as e:
                log.error("flush of %s failed at shutdown: %s", partition.dir_name, e)
        self.write_checkpoints()
        for partition in self.all_partitions():
            try:
                partition.log.close()
            except _core.StorageError as e:
                log.error("close of %s failed: %s", partition.dir_name, e)

    def _load_meta_properties(self) -> str:
        path = self.data_dir / "meta.properties"
        values: dict[str, str] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep and not key.startswith("#"):
                    values[key.strip()] = value.strip()
        configured = self.config["cluster.id"]
        cluster_id = values.get("cluster.id") or configured
        if configured and cluster_id != configured:
            raise ValueError(f"{path} belongs to cluster {cluster_id}, not the configured {configured}")
        node = values.get("node.id")
        if node is not None and int(node) != self.config.node_id:
            raise ValueError(f"{path} belongs to node {node}, not the configured node.id {self.config.node_id}")
        if not cluster_id and self.config.cluster_mode:
            return ""  # a broker that knows only bootstrap servers learns it from the quorum
        if not cluster_id:
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not path.exists():
            self._write_meta_properties(cluster_id)
        return cluster_id

    def _write_meta_properties(self, cluster_id: str) -> None:
        write_atomically(self.data_dir / "meta.properties", f"version=1\ncluster.id={cluster_id}\nnode.id={self.config.node_id}\n")

    def adopt_cluster_id(self, cluster_id: str) -> None:
        """The cluster id the quorum told a broker that had none (kept in meta.properties)."""
        self.cluster_id = cluster_id
        self._write_meta_properties(cluster_id)

    def _read_topics_file(self) -> dict[str, dict[str, Any]]:
        path = self.data_dir / TOPICS_FILE
        if not path.exists():
            return {}
        return json.loads(path.read_text())["topics"]

    def _write_topics_file(self) -> None:
        topics = {
            t.name: {"id": str(t.id), "partitions": len(t.partitions), "configs": t.configs}
            for t in self.topics.values()
        }
        write_atomically(self.data_dir / TOPICS_FILE, json.dumps({"version": 1, "topics": topics}, indent=1))

    def _read_offsets(self, name: str) -> dict[tuple[str, int], int]:
        path = self.data_dir / name
        try:
            lines = _core.read_checkpoint(path)
        except ValueError as e:
            log.warning("ignoring %s: %s (logs recover from their start)", path, e)
            return {}
        out = {}
        for line in lines:
            parts = line.split()
            if len(parts) == 3:
                out[(parts[0], int(parts[1]))] = int(parts[2])
        return out

    def write_checkpoints(self) -> None:
        with self._checkpoint_lock:
            self._write_checkpoints()

    def _write_checkpoints(self) -> None:
        partitions = list(self.all_partitions())
        _core.write_checkpoint(
            self.data_dir / RECOVERY_CHECKPOINT, [f"{p.topic} {p.index} {p.log.recovery_point}" for p in partitions]
        )
        _core.write_checkpoint(
            self.data_dir / LOG_START_CHECKPOINT, [f"{p.topic} {p.index} {p.log.log_start_offset}" for p in partitions]
        )
        if self.config.cluster_mode:
            self._write_high_watermarks(partitions)

    def write_high_watermarks(self) -> None:
        """Every replica.high.watermark.checkpoint.interval.ms in a cluster (on a worker thread)."""
        with self._checkpoint_lock:
            self._write_high_watermarks(list(self.all_partitions()))

    def _write_high_watermarks(self, partitions: list[Partition]) -> None:
        _core.write_checkpoint(
            self.data_dir / HIGH_WATERMARK_CHECKPOINT, [f"{p.topic} {p.index} {p.log.high_watermark}" for p in partitions]
        )

    # -- lookups ---------------------------------------------------------------------------

    def _register(self, topic: Topic) -> None:
        self.topics[topic.name] = topic
        self.topics_by_id[topic.id] = topic
        self.table.set_topic(topic.name, [p.log for p in topic.partitions])
        self._note_schema_validation(topic)

    def _note_schema_validation(self, topic: Topic) -> None:
        configs = self.effective_configs(topic)
        checks = (configs["confluent.key.schema.validation"], configs["confluent.value.schema.validation"])
        self._set_schema_validation(topic.name, checks if any(checks) else None)

    def _set_schema_validation(self, name: str, checks: Optional[tuple[bool, bool]]) -> None:
        updated = {k: v for k, v in self.schema_validation.items() if k != name}
        if checks is not None:
            updated[name] = checks
        self.schema_validation = updated
        self.schema_validation_names = tuple(n.encode() for n in updated)

    def partition_count(self) -> int:
        """Partitions open now (a snapshot of the topics: workers add and remove them)."""
        return sum(len(t.partitions) for t in list(self.topics.values()))

    def all_partitions(self) -> Iterator[Partition]:
        for topic in list(self.topics.values()):
            yield from topic.partitions

    def partition(self, topic: str, index: int) -> Optional[Partition]:
        found = self.topics.get(topic)
        if found is None or not 0 <= index < len(found.partitions):
            return None
        return found.partitions[index]

    def effective_configs(self, topic: Topic) -> dict[str, Any]:
        return {**self.defaults, **topic.configs}

    def log_config(self, topic: Topic) -> dict[str, Any]:
        """The Kafka-named settings handed to the Rust log."""
        configs = self.effective_configs(topic)
        out = {k: v for k, v in configs.items() if isinstance(v, int) and not isinstance(v, bool)}
        out["message.timestamp.type"] = configs["message.timestamp.type"]
        out["cleanup.policy"] = configs["cleanup.policy"]
        out["compression.type"] = configs["compression.type"]
        out["min.cleanable.dirty.ratio"] = configs["min.cleanable.dirty.ratio"]
        out["preallocate"] = configs["preallocate"]
        return out

    # -- topic administration --------------------------------------------------------------

    def create_topic(self, name: str, partitions: int, configs: dict[str, Any], topic_id: uuid.UUID | None = None) -> Topic:
        problem = topic_name_problem(name)
        if problem:
            raise TopicError(17, problem)  # INVALID_TOPIC_EXCEPTION
        if name in self.topics:
            raise TopicError(36, f"topic {name!r} already exists")  # TOPIC_ALREADY_EXISTS
        if not 1 <= partitions <= MAX_PARTITIONS_PER_TOPIC:
            raise TopicError(  # INVALID_PARTITIONS
                37, f"number of partitions must be between 1 and {MAX_PARTITIONS_PER_TOPIC}, not {partitions}"
            )
        topic = Topic(name, topic_id or uuid.uuid4(), dict(configs), [])
        for index in range(partitions):
            shutil.rmtree(self.data_dir / f"{name}-{index}", ignore_errors=True)
            topic.partitions.append(self._open_partition(topic, index))
        self._register(topic)
        self._write_topics_file()
        log.info("created topic %s with %d partitions, configs %s", name, partitions, configs or "{}")
        return topic

    def unregister_topic(self, name: str) -> Topic:
        """The first half of deleting a topic, on the event loop: no request finds the topic
        from now on, and fetches parked on its partitions wake to answer that it is gone."""
        topic = self.topics.pop(name, None)
        if topic is None:
            raise TopicError(3, f"topic {name!r} does not exist")  # UNKNOWN_TOPIC_OR_PARTITION
        del self.topics_by_id[topic.id]
        self._set_schema_validation(name, None)
        self.table.remove_topic(name)
        self.table.clear_roles(name)  # a topic created again under this name starts without them
        for partition in topic.partitions:
            partition.wake_waiters()
        return topic

    def delete_topic_files(self, topic: Topic) -> None:
        """The second half, disk work for a worker thread: the topics file without the topic
        (written first, so a crash in between leaves no topic whose logs are half deleted),
        then its logs."""
        self._write_topics_file()
        for partition in topic.partitions:
            partition.log.delete()
        log.info("deleted topic %s", topic.name)

    def add_partitions(self, name: str, total: int) -> None:
        topic = self.topics[name]
        if total > MAX_PARTITIONS_PER_TOPIC:
            raise TopicError(37, f"a topic may have at most {MAX_PARTITIONS_PER_TOPIC} partitions, not {total}")
        if total <= len(topic.partitions):
            raise TopicError(
                37, f"topic {name!r} has {len(topic.partitions)} partitions; the new count {total} must be larger"
            )
        for index in range(len(topic.partitions), total):
            topic.partitions.append(self._open_partition(topic, index))
        self.table.set_topic(name, [p.log for p in topic.partitions])
        self._write_topics_file()
        log.info("topic %s now has %d partitions", name, total)

    def set_topic_configs(self, name: str, configs: dict[str, Any]) -> None:
        """Replaces the topic's overrides (already validated) and applies them to its logs."""
        topic = self.topics[name]
        topic.configs = dict(configs)
        self._note_schema_validation(topic)
        self._write_topics_file()
        settings = self.log_config(topic)
        for partition in topic.partitions:
            partition.log.reconfigure(settings)
        log.info("topic %s configs now %s", name, {k: config_text(v) for k, v in configs.items()})

    # -- background work ----------------------------------------------------------------------

    def apply_retention(self) -> int:
        deleted = 0
        for partition in self.all_partitions():
            try:
                deleted += partition.log.apply_retention()
            except _core.StorageError as e:
                log.error("retention of %s failed: %s", partition.dir_name, e)
        return deleted

    def clean_compacted(self) -> int:
        """One compaction pass over every compacted log that is dirty enough; segments cleaned."""
        cleaned = 0
        for topic in list(self.topics.values()):
            if self.cleaning_stopped:
                break
            if "compact" not in self.effective_configs(topic)["cleanup.policy"]:
                continue
            for partition in topic.partitions:
                try:
                    stats = partition.log.clean(max_keys=self.cleaner_max_keys)
                except _core.StorageError as e:
                    log.error("cleaning %s failed: %s", partition.dir_name, e)
                    continue
                if stats is not None:
                    segments, read, written, removed = stats
                    cleaned += segments
                    self.cleaner_stats["bytes_read"] += read
                    self.cleaner_stats["bytes_written"] += written
                    self.cleaner_stats["records_removed"] += removed
                    log.info(
                        "cleaned %s: %d segments, %d records removed, %d -> %d bytes",
                        partition.dir_name, segments, removed, read, written,
                    )
        return cleaned

    def stop_cleaning(self) -> None:
        """For a broker that stops: the compaction pass under way gives up at its next batch
        (one over a large log takes minutes), and no other starts."""
        self.cleaning_stopped = True
        for partition in self.all_partitions():
            partition.log.stop_cleaning()

    def flush_due(self) -> None:
        for topic in list(self.topics.values()):
            if self.effective_configs(topic)["flush.ms"] >= 2**62:
                continue
            for partition in topic.partitions:
                if partition.sync_failure_reported:
                    continue  # logged once; its flushes fail until a restart
                try:
                    self._flush(partition.log.flush_if_due)
                except _core.StorageError as e:
                    log.error("flush of %s failed: %s", partition.dir_name, e)

    def new_sync_failures(self) -> list[tuple[Partition, str]]:
        """Partitions whose sync failed and that are not marked reported yet, with why: a rolled
        segment's flush fails on the core's own thread, where nobody hears of it; the log
        refuses appends since (KAFKA_STORAGE_ERROR). The logs are only read when the process's
        count of failures has moved since the last look."""
        count = _core.sync_failure_count()
        if count == self._sync_failures_seen:
            return []
        found = []
        for partition in self.all_partitions():
            if partition.sync_failure_reported:
                continue
            try:
                why = partition.log.sync_failure
            except _core.StorageError:  # closed: deleted meanwhile
                continue
            if why is not None:
                found.append((partition, why))
        self._sync_failures_seen = count
        return found

    def _flush(self, flush: Callable[[], Any]) -> None:
        """Runs a partition flush, timing it for the metrics when it did flush."""
        started = time.perf_counter()
        flushed = flush()
        if self.on_flush is not None and flushed is not False:
            self.on_flush(time.perf_counter() - started)
