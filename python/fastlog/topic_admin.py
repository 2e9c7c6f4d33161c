"""Where the admin APIs find and change topics: one interface, two sources of truth.

- A single node (`LocalTopics`): the log manager's topics; changes are disk work on a worker
  thread.
- A cluster (`ClusterTopics`): the metadata image every node builds from the quorum; changes
  are records the controller commits (`Controller.create_topic`, ...), and each broker brings
  its own logs in line with the image (`reconcile`), then its replicas' roles
  (`ReplicaManager.update`). A broker holding a replica of any partition of a topic opens logs
  for all of its partitions (those it holds no replica of stay empty and are never served);
  a replica moved away (a reassignment) is emptied, and a topic with none left is deleted.

Handlers (CreateTopics, DeleteTopics, CreatePartitions, the configs APIs, Metadata) use
`broker.topics`, so they work the same way in both.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Mapping, Optional

import trio

from fastlog.config import config_text, validate_topic_configs
from fastlog.log_manager import MAX_PARTITIONS_PER_TOPIC, Topic, TopicError
from fastlog.metadata_image import PartitionImage

if TYPE_CHECKING:
    from fastlog.broker import Broker
    from fastlog.metadata_image import TopicImage

log = logging.getLogger(__name__)
ADMIN_TIMEOUT_SECONDS = 30
RECONCILE_RETRY_SECONDS = 5


POLICY_VIOLATION = 44


def partition_limit_error(broker: "Broker", topic_partitions: int, adding: int, factor: int = 1) -> Optional[TopicError]:
    """Why a topic may not have `topic_partitions` partitions, `adding` of them new with
    `factor` replicas each (None: it may): above `max.partitions.per.topic`
    (INVALID_PARTITIONS), or taking a broker past `max.partitions` (POLICY_VIOLATION): this
    node's partitions on a single node; in a cluster, the replicas of every partition against
    `max.partitions` for each registered broker. Each message names the limit."""
    config = broker.config
    per_topic, per_broker = config["max.partitions.per.topic"], config["max.partitions"]
    if topic_partitions > per_topic:
        return TopicError(37, f"{topic_partitions} partitions exceed the broker's limit of {per_topic} per topic (max.partitions.per.topic)")
    if broker.controller is None:
        hosted = sum(len(t.partitions) for t in list(broker.logs.topics.values()))
        if hosted + adding > per_broker:
            return TopicError(POLICY_VIOLATION, f"{adding} more partitions would make {hosted + adding} on this broker, above its limit of "
                                                f"{per_broker} (max.partitions)")
        return None
    image = broker.controller.image
    replicas = sum(len(p.replicas) for t in list(image.topics.values()) for p in t.assignments)
    brokers = max(1, len(image.brokers))
    wanted = replicas + adding * max(1, factor)
    if wanted > per_broker * brokers:
        return TopicError(POLICY_VIOLATION, f"{adding} more partitions of {max(1, factor)} replicas would make {wanted} replicas on the cluster's "
                                            f"{brokers} brokers, above their limit of {per_broker} each (max.partitions)")
    return None


def replication_factor_of(view: "Optional[TopicView]") -> int:
    return len(view.assignments[0].replicas) if view is not None and view.assignments else 1


def check_partition_count(partitions: int) -> None:
    """The partition counts a broker can open (checked before the controller commits one)."""
    if not 1 <= partitions <= MAX_PARTITIONS_PER_TOPIC:
        raise TopicError(37, f"number of partitions must be between 1 and {MAX_PARTITIONS_PER_TOPIC}, not {partitions}")


@dataclass
class TopicView:
    name: str
    id: uuid.UUID
    assignments: list[PartitionImage]  # replicas, ISR, leader and epoch of each partition
    # The topic's overrides: parsed already (a single node), or as the image keeps them (text),
    # parsed only when asked for: Metadata, which lists every topic, never needs them.
    overrides: Mapping[str, Any]
    overrides_parsed: bool = True

    @property
    def internal(self) -> bool:
        return self.name.startswith("__")

    @property
    def partitions(self) -> int:
        return len(self.assignments)

    @property
    def replication_factor(self) -> int:
        return len(self.assignments[0].replicas) if self.assignments else 0

    @cached_property
    def configs(self) -> dict[str, Any]:
        return dict(self.overrides) if self.overrides_parsed else validate_topic_configs(self.overrides, warn=False)


class LocalTopics:
    def __init__(self, broker: "Broker") -> None:
        self.broker = broker
        self.logs = broker.logs

    def _view(self, topic: Optional[Topic]) -> Optional[TopicView]:
        if topic is None:
            return None
        me = self.broker.node_id
        return TopicView(topic.name, topic.id, [PartitionImage([me], [me], me) for _ in topic.partitions], topic.configs)

    def get(self, name: str) -> Optional[TopicView]:
        return self._view(self.logs.topics.get(name))

    def by_id(self, topic_id: uuid.UUID) -> Optional[TopicView]:
        return self._view(self.logs.topics_by_id.get(topic_id))

    def all(self) -> list[TopicView]:
        return [self._view(t) for t in list(self.logs.topics.values())]  # type: ignore[misc]

    def is_live(self, broker_id: int) -> bool:
        return broker_id == self.broker.node_id

    async def create(self, name: str, partitions: int, configs: dict[str, Any], factor: int = 1, replicas: Optional[list[list[int]]] = None) -> TopicView:
        if error := partition_limit_error(self.broker, partitions, partitions):
            raise error
        topic = await self.broker.io_threads.run(self.logs.create_topic, name, partitions, configs)
        return self._view(topic)  # type: ignore[return-value]

    async def delete(self, name: str) -> None:
        await self.broker.io_threads.run(self.logs.delete_topic_files, self.logs.unregister_topic(name))

    async def add_partitions(self, name: str, total: int, replicas: Optional[list[list[int]]] = None) -> None:
        current = self.logs.topics[name].partitions if name in self.logs.topics else []
        if error := partition_limit_error(self.broker, total, total - len(current)):
            raise error
        await self.broker.io_threads.run(self.logs.add_partitions, name, total)

    async def set_configs(self, name: str, configs: dict[str, Any]) -> None:
        await self.broker.io_threads.run(self.logs.set_topic_configs, name, configs)


class ClusterTopics:
    def __init__(self, broker: "Broker") -> None:
        self.broker = broker
        self.controller = broker.controller
        self.image = broker.controller.image

    def _view(self, topic: Optional["TopicImage"]) -> Optional[TopicView]:
        if topic is None:
            return None
        return TopicView(topic.name, topic.id, topic.assignments, topic.configs, overrides_parsed=False)

    def get(self, name: str) -> Optional[TopicView]:
        return self._view(self.image.topics.get(name))

    def by_id(self, topic_id: uuid.UUID) -> Optional[TopicView]:
        return self._view(next((t for t in self.image.topics.values() if t.id == topic_id), None))

    def all(self) -> list[TopicView]:
        return [self._view(t) for t in list(self.image.topics.values())]  # type: ignore[misc]

    def is_live(self, broker_id: int) -> bool:
        return self.image.is_listed(broker_id)

    async def create(self, name: str, partitions: int, configs: dict[str, Any], factor: int = 1, replicas: Optional[list[list[int]]] = None) -> TopicView:
        check_partition_count(partitions)
        if error := partition_limit_error(self.broker, partitions, partitions, len(replicas[0]) if replicas else factor):
            raise error
        texts = {k: config_text(v) for k, v in configs.items()}
        topic = await self.controller.create_topic(name, partitions, factor, texts, ADMIN_TIMEOUT_SECONDS, replicas)
        return self._view(topic)  # type: ignore[return-value]

    def request_create(self, name: str, partitions: int, factor: int, configs: Optional[dict[str, str]] = None) -> None:
        """Asks the controller to create a topic without waiting (auto-creation: the client is
        told LEADER_NOT_AVAILABLE or COORDINATOR_NOT_AVAILABLE and asks again, as Kafka has it)."""
        try:
            self.controller.propose_topic(name, partitions, factor, configs or {})
        except (TopicError, ValueError) as e:
            log.info("auto-creation of %s not proposed: %s", name, e)

    async def delete(self, name: str) -> None:
        await self.controller.delete_topic(name, ADMIN_TIMEOUT_SECONDS)

    async def add_partitions(self, name: str, total: int, replicas: Optional[list[list[int]]] = None) -> None:
        check_partition_count(total)
        view = self.get(name)
        current = len(view.assignments) if view is not None else 0
        if error := partition_limit_error(self.broker, total, max(0, total - current), replication_factor_of(view)):
            raise error
        await self.controller.add_partitions(name, total, ADMIN_TIMEOUT_SECONDS, replicas)

    async def set_configs(self, name: str, configs: dict[str, Any]) -> None:
        await self.controller.set_topic_configs(name, {k: config_text(v) for k, v in configs.items()}, ADMIN_TIMEOUT_SECONDS)

    # -- this broker's logs, kept as the image says ------------------------------------------------

    async def reconcile(self) -> None:
        """Runs while the broker runs: after each change of the image (and every few seconds
        while a change could not be made, e.g. a full disk), deletes the local topics the image
        deleted, creates, grows and reconfigures the ones this broker holds replicas of, and
        gives the replica manager the partitions' new leaders and ISRs."""
        while True:
            applied = self.controller.applied
            async with self.broker.admin_lock:
                complete = await self._reconcile_once()
                if self.broker.replicas is not None:
                    self.broker.replicas.update()
                complete = await self._remove_moved_replicas() and complete
            with trio.move_on_after(math.inf if complete else RECONCILE_RETRY_SECONDS):
                await applied.wait()

    async def _reconcile_once(self) -> bool:
        """One pass; False when some topic could not be brought in line (retried later)."""
        logs = self.broker.logs
        complete = True
        me = self.broker.node_id
        mine = [t for t in self.image.topics.values() if any(me in p.replicas for p in t.assignments)]
        others = {t.name: t.partitions for t in self.image.topics.values() if t not in mine}
        logs.table.set_hosted_elsewhere(others)  # the Rust Produce path answers NOT_LEADER_OR_FOLLOWER
        for topic in list(logs.topics.values()):
            if topic.id in self.image.deleted_topics:
                await trio.to_thread.run_sync(logs.delete_topic_files, logs.unregister_topic(topic.name))
        for wanted in mine:
            if wanted.name in self.image.topics:
                try:
                    await self._reconcile_topic(wanted)
                except Exception:
                    log.exception("could not bring topic %s in line with the cluster's metadata", wanted.name)
                    complete = False
        return complete

    async def _remove_moved_replicas(self) -> bool:
        """Frees what this broker holds of partitions that are no longer its replicas (a
        reassignment moved them): a topic with no replica left here is deleted here, a
        partition of a topic it still has other replicas of is emptied. Done after the replica
        manager stopped following them. False when some could not be removed (retried later)."""
        logs, me = self.broker.logs, self.broker.node_id
        complete = True
        for local in list(logs.topics.values()):
            wanted = self.image.topics.get(local.name)
            if wanted is None or wanted.id != local.id:
                continue  # not the cluster's topic: `_reconcile_topic` says so and leaves it alone
            held = [me in p.replicas for p in wanted.assignments]
            try:
                if not any(held):
                    log.info("topic %s has no replica here any more: its logs are deleted", local.name)
                    await trio.to_thread.run_sync(logs.delete_topic_files, logs.unregister_topic(local.name))
                    continue
                for partition in local.partitions:
                    index = partition.index
                    if index < len(held) and not held[index] and partition.log.log_end_offset > 0:
                        log.info("%s-%d is no longer a replica here: its log is emptied", local.name, index)
                        await trio.to_thread.run_sync(partition.log.restart_at, 0)
            except Exception:
                log.exception("could not remove the replicas of %s moved away from this broker", local.name)
                complete = False
        return complete

    async def _reconcile_topic(self, wanted: "TopicImage") -> None:
        logs = self.broker.logs
        configs = validate_topic_configs(wanted.configs, warn=False)
        local = logs.topics.get(wanted.name)
        if local is not None and local.id != wanted.id:
            if local.id not in self.image.deleted_topics:  # never delete what the cluster never had
                log.error(
                    "topic %s here (id %s) is not the cluster's (id %s): left alone; "
                    "move its directories away to let this broker host the cluster's topic",
                    wanted.name, local.id, wanted.id,
                )
                return
            await trio.to_thread.run_sync(logs.delete_topic_files, logs.unregister_topic(local.name))
            local = None
        if local is None:
            await trio.to_thread.run_sync(logs.create_topic, wanted.name, wanted.partitions, configs, wanted.id)
            return
        if len(local.partitions) < wanted.partitions:
            await trio.to_thread.run_sync(logs.add_partitions, wanted.name, wanted.partitions)
        if local.configs != configs:
            await trio.to_thread.run_sync(logs.set_topic_configs, wanted.name, configs)
