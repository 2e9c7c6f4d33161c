"""The cluster's metadata as every node sees it: the state built by applying, in order, the
records the metadata quorum committed (`controller.py` proposes them, raft-rs orders them).

Records are JSON objects with a `type`:

- `register_broker` {id, host, port, rack}: a broker (re)registers its client endpoint;
- `fence_broker` {id}: the controller stopped hearing from it (`broker.session.timeout.ms`):
  clients are no longer sent to it;
- `unfence_broker` {id}: it is heard from again.
- `create_topic` {name, id, partitions, owner, configs}: a topic, all of whose partitions the
  broker `owner` hosts (placement is per topic until partitions are replicated); a second
  create of a name that exists is ignored, so the first proposal wins;
- `delete_topic` {name, id}, `add_partitions` {name, id, partitions} (the new total),
  `set_topic_configs` {name, id, configs} (the whole set of overrides): applied only to the
  topic of that id, so a late duplicate cannot touch a newer topic of the same name.

Applying a record is deterministic and never fails: a record this version does not know is
skipped with a log line, so a newer node's records do not stop an older one.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

log = logging.getLogger(__name__)


@dataclass
class TopicImage:
    name: str
    id: uuid.UUID
    partitions: int
    owner: int  # the broker that hosts every partition
    configs: dict[str, str] = field(default_factory=dict)


@dataclass
class BrokerRegistration:
    id: int
    host: str
    port: int
    rack: Optional[str]
    fenced: bool = False


class MetadataImage:
    def __init__(self) -> None:
        self.brokers: dict[int, BrokerRegistration] = {}
        self.topics: dict[str, TopicImage] = {}
        self.deleted_topics: set[uuid.UUID] = set()  # ids of topics deleted (their logs go too)
        self.last_applied = 0  # index of the last record applied

    def live_brokers(self) -> list[BrokerRegistration]:
        return [b for b in sorted(self.brokers.values(), key=lambda b: b.id) if not b.fenced]

    def is_live(self, broker_id: int) -> bool:
        broker = self.brokers.get(broker_id)
        return broker is not None and not broker.fenced

    def least_loaded_broker(self) -> Optional[int]:
        """The live broker hosting the fewest partitions (the lowest id on a tie)."""
        load = {b.id: 0 for b in self.live_brokers()}
        for topic in self.topics.values():
            if topic.owner in load:
                load[topic.owner] += topic.partitions
        return min(load, key=lambda b: (load[b], b)) if load else None

    def apply(self, index: int, data: bytes) -> None:
        self.last_applied = index
        try:
            record = json.loads(data)
            handler = getattr(self, f"_apply_{record['type']}", None)
        except (ValueError, KeyError, TypeError):
            log.error("metadata record %d is not readable; skipped: %r", index, data[:200])
            return
        if handler is None:
            log.warning("metadata record %d of unknown type %r skipped", index, record.get("type"))
            return
        try:
            handler(record)
        except (KeyError, ValueError, TypeError) as e:
            log.error("metadata record %d (%s) is malformed and skipped: %s", index, record.get("type"), e)

    def _apply_register_broker(self, record: dict[str, Any]) -> None:
        broker_id = int(record["id"])
        self.brokers[broker_id] = BrokerRegistration(broker_id, record["host"], int(record["port"]), record.get("rack"))
        log.info("broker %d registered at %s:%d", broker_id, record["host"], record["port"])

    def _apply_fence_broker(self, record: dict[str, Any]) -> None:
        broker = self.brokers.get(int(record["id"]))
        if broker is not None and not broker.fenced:
            broker.fenced = True
            log.warning("broker %d fenced: the controller has not heard from it", broker.id)

    def _apply_unfence_broker(self, record: dict[str, Any]) -> None:
        broker = self.brokers.get(int(record["id"]))
        if broker is not None and broker.fenced:
            broker.fenced = False
            log.info("broker %d unfenced", broker.id)


    def _topic(self, record: dict[str, Any]) -> Optional[TopicImage]:
        """The topic a record names, if it is still the one of the record's id."""
        topic = self.topics.get(record["name"])
        return topic if topic is not None and str(topic.id) == record["id"] else None

    def _apply_create_topic(self, record: dict[str, Any]) -> None:
        if record["name"] in self.topics or uuid.UUID(record["id"]) in self.deleted_topics:
            return
        topic = TopicImage(record["name"], uuid.UUID(record["id"]), int(record["partitions"]), int(record["owner"]), dict(record.get("configs") or {}))
        self.topics[topic.name] = topic
        log.info("topic %s created: %d partitions on broker %d", topic.name, topic.partitions, topic.owner)

    def _apply_delete_topic(self, record: dict[str, Any]) -> None:
        topic = self._topic(record)
        if topic is not None:
            del self.topics[topic.name]
            self.deleted_topics.add(topic.id)
            log.info("topic %s deleted", topic.name)

    def _apply_add_partitions(self, record: dict[str, Any]) -> None:
        topic = self._topic(record)
        if topic is not None and int(record["partitions"]) > topic.partitions:
            topic.partitions = int(record["partitions"])

    def _apply_set_topic_configs(self, record: dict[str, Any]) -> None:
        topic = self._topic(record)
        if topic is not None:
            topic.configs = dict(record["configs"])


def encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()
