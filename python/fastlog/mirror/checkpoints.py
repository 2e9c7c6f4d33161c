"""Consumer groups across the mirror (MM2's checkpoint connector) and heartbeats.

Every `emit.checkpoints.interval.seconds` the committed offsets of the source's consumer groups
(`groups`, `groups.exclude`) on mirrored topics are translated (`offsets.py`) and written as
checkpoints to `<source>.checkpoints.internal` on the target, where Kafka's RemoteClusterUtils
and fastlog read them. With `sync.group.offsets.enabled`, the translated offsets are also
committed into the target's groups of the same name, for the remote topics, so a consumer
moved to the target resumes where it was: only for groups with no member on the target, and
only forward (an offset the target's group already passed stays).

Every `emit.heartbeats.interval.seconds` a heartbeat (source, target, now) goes to the
target's `heartbeats` topic; mirrored on, it shows how far behind each hop is.
"""

from __future__ import annotations

import logging
import time

from fastlog.client import KafkaError, UnsupportedByBroker
from fastlog.mirror.records import Checkpoint, Heartbeat
from fastlog.mirror.replicator import Replicator
from fastlog.protocol import ErrorCode
from fastlog.records import Record

log = logging.getLogger(__name__)

HEARTBEATS_TOPIC = "heartbeats"
IDLE_GROUP_STATES = frozenset({"Empty", "Dead", ""})


class GroupsAndHeartbeats:
    def __init__(self, replicator: Replicator) -> None:
        self.replicator = replicator
        self.config = replicator.config
        self.flow = replicator.flow
        self.checkpoints_topic = f"{self.flow.source.alias}.checkpoints.internal"
        self._checkpointed_at = float("-inf")
        self._synced_at = float("-inf")
        self._heartbeat_at = float("-inf")
        self._made: set[str] = set()  # topics made (or found) on the target
        self.checkpoints_written = 0
        self.emitting_checkpoints = self.config.emit_checkpoints  # off for a source without group APIs
        self.syncing_group_offsets = self.config.sync_group_offsets

    def run_once(self) -> None:
        now = time.monotonic()
        if self.config.emit_heartbeats and now - self._heartbeat_at >= self.config.heartbeats_seconds:
            self._heartbeat_at = now
            self._write(HEARTBEATS_TOPIC, [Heartbeat(self.flow.source.alias, self.flow.target.alias, int(time.time() * 1000))])
        due_checkpoints = self.emitting_checkpoints and now - self._checkpointed_at >= self.config.checkpoints_seconds
        due_sync = self.syncing_group_offsets and now - self._synced_at >= self.config.sync_group_offsets_seconds
        if not (due_checkpoints or due_sync):
            return
        try:
            checkpoints = self.translate_groups()
        except UnsupportedByBroker as e:  # a source without group APIs (librdkafka's mock)
            log.warning("%s: %s: no checkpoints or group offset sync for this flow", self.flow.name, e)
            self.emitting_checkpoints = self.syncing_group_offsets = False
            return
        if due_checkpoints:
            self._checkpointed_at = now
            if checkpoints:
                self._write(self.checkpoints_topic, checkpoints)
                self.checkpoints_written += len(checkpoints)
        if due_sync:
            self._synced_at = now
            self.sync_group_offsets(checkpoints)

    def translate_groups(self) -> list[Checkpoint]:
        """A checkpoint per mirrored partition each wanted source group committed."""
        source, replicator = self.replicator.source, self.replicator
        out = []
        for listed in source.list_groups():
            group = listed.group_id
            if not self.flow.wants_group(group):
                continue
            for committed in source.committed_offsets(group):
                key = (committed.topic, committed.partition)
                if committed.offset < 0 or key not in replicator.positions:  # another mirror's share: it checkpoints those
                    continue
                downstream = replicator.syncs.translate(key, committed.offset)
                if downstream is not None:
                    remote = self.config.remote_topic(self.flow, committed.topic)
                    out.append(Checkpoint(group, remote, committed.partition, committed.offset, downstream, committed.metadata or ""))
        return out

    def sync_group_offsets(self, checkpoints: list[Checkpoint]) -> None:
        target = self.replicator.target
        by_group: dict[str, list[Checkpoint]] = {}
        for checkpoint in checkpoints:
            by_group.setdefault(checkpoint.group, []).append(checkpoint)
        for group, points in by_group.items():
            try:
                state = target.describe_group(group).group_state
            except KafkaError as e:
                log.debug("%s: group %s on the target: %s", self.flow.name, group, e)
                continue
            if state not in IDLE_GROUP_STATES:
                continue  # consumers there own its offsets now
            current = {(c.topic, c.partition): c.offset for c in target.committed_offsets(group, [(p.topic, p.partition) for p in points])}
            forward = {(p.topic, p.partition): p.downstream for p in points if p.downstream > current.get((p.topic, p.partition), -1)}
            if forward:
                target.commit_offsets(group, forward)
                log.info("%s: offsets of group %s synced to the target: %s", self.flow.name, group, forward)

    def _write(self, topic: str, items: list) -> None:
        target = self.replicator.target
        if topic not in self._made:
            try:
                target.create_topic(topic, 1, self.config.replication_factor, {"cleanup.policy": "compact"})
            except KafkaError as e:
                if e.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                    raise
            self._made.add(topic)
        now = int(time.time() * 1000)
        target.produce({(topic, 0): [Record(i, now, item.key(), item.value()) for i, item in enumerate(items)]}, acks=-1)
