"""The cluster's metadata as every node sees it: the state built by applying, in order, the
records the metadata quorum committed (`controller.py` proposes them, raft-rs orders them).

Records are JSON objects with a `type`:

- `register_broker` {id, host, port, rack, replication, incarnation, endpoints}: a broker
  (re)registers its client endpoint, the [host, port] its followers fetch from
  (`inter.broker.listener.name`) and {listener name: [host, port]} of each client listener; a new incarnation (a restarted process) gets its offline
  replicas back, a late duplicate of the same one does not;
- `fence_broker` {id}: the controller stopped hearing from it (`broker.session.timeout.ms`,
  or its port refuses connections): clients no longer see it, it leaves the ISR of every
  partition that has another in-sync replica, and each partition it led gets a new leader
  from the rest of its ISR (none: the partition is offline, its ISR left as it was, unless
  `unclean.leader.election.enable` lets an out-of-sync replica lead);
- `shutdown_broker` {id}: it is stopping (Kafka's controlled shutdown): its partitions move
  as when it is fenced, while clients still see it (so they take the new leaders from it);
  it gets no partition back until it registers again;
- `unfence_broker` {id}: it is heard from again; offline partitions whose ISR names it get it
  back as their leader;
- `create_topic` {name, id, replicas: [[broker, ...] per partition], configs}: the first
  replica of each partition leads it, all are in sync; a second create of a name that exists
  is ignored, so the first proposal wins;
- `delete_topic` {name, id}, `add_partitions` {name, id, replicas} (of the new partitions),
  `set_topic_configs` {name, id, configs} (the whole set of overrides): applied only to the
  topic of that id, so a late duplicate cannot touch a newer topic of the same name;
- `replica_offline` {broker, name, id, partition}: the broker cannot write its replica (a full
  disk, an I/O error): the replica is offline until the broker registers again (a restart);
  it leaves the ISR as when fenced, and leads nothing;
- `reassign_partition` {name, id, partition, target}: move the partition's replicas to
  `target` (Kafka's AlterPartitionReassignments): the new replicas are added and catch up as
  followers; once all of them are in the ISR the partition keeps only `target` (its leader
  moves to the first of `target` in sync when the old one is removed). `target` null cancels
  a reassignment in progress: the added replicas go again;
- `allocate_producer_ids` {broker, request, size}: the next `size` producer ids of the cluster
  go to the broker (Kafka's AllocateProducerIds); a repeat of the broker's last request is
  ignored;
- `change_partition` {name, id, partition, partition_epoch, isr?, leader?}: a leader's ISR
  change (Kafka's AlterPartition) or an election; applied only when the partition's epoch is
  still `partition_epoch`, so a change decided on stale state is dropped; a fenced broker is
  left out of an ISR it was not in;
- `alter_scram_credentials` {deletions: [[user, mechanism]], upserts: [{user, mechanism, salt,
  stored_key, server_key, iterations}]} (base64 keys, never a password): one
  AlterUserScramCredentials request's changes to SASL/SCRAM users, applied together;
- `alter_client_quotas` {changes: [[entity, key, value or null]]} (entity [[type, name or
  null]], `fastlog.quotas`): an AlterClientQuotas request's changes, null removing a key;
- `change_acls` {added: [acl], removed: [acl]} (each acl [resource type, name, pattern type,
  principal, host, operation, permission], `security.acls.AclBinding`): a CreateAcls or
  DeleteAcls request's ACLs (a DeleteAcls filter is resolved to the ACLs it matched).

Every change of a partition bumps its `partition_epoch`; a change of leader bumps its
`leader_epoch` too. Applying a record is deterministic and never fails: a record this version
does not know is skipped with a log line, so a newer node's records do not stop an older one.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from fastlog import quotas
from fastlog.security.acls import AclBinding

log = logging.getLogger(__name__)
NO_LEADER = -1


@dataclass
class PartitionImage:
    replicas: list[int]
    isr: list[int]
    leader: int  # NO_LEADER while offline
    leader_epoch: int = 0
    partition_epoch: int = 0
    failed: list[int] = field(default_factory=list)  # brokers whose replica could not be written
    adding: list[int] = field(default_factory=list)  # a reassignment in progress: replicas catching up
    removing: list[int] = field(default_factory=list)  # ...and replicas that go once they have

    def offline_replicas(self, image: "MetadataImage") -> list[int]:
        return [r for r in self.replicas if not image.is_listed(r) or r in self.failed]


@dataclass
class TopicImage:
    name: str
    id: uuid.UUID
    assignments: list[PartitionImage]
    configs: dict[str, str] = field(default_factory=dict)

    @property
    def partitions(self) -> int:
        return len(self.assignments)


@dataclass
class BrokerRegistration:
    id: int
    host: str
    port: int
    rack: Optional[str]
    fenced: bool = False
    replication: tuple[str, int] = ("", 0)  # where followers fetch from it
    shut_down: bool = False  # in (or after) a controlled shutdown, until it registers again
    incarnation: str = ""  # one per start of the broker's process
    endpoints: dict[str, list] = field(default_factory=dict)  # listener name -> [host, port] for clients

    def endpoint(self, listener: Optional[str]) -> tuple[str, int]:
        """Where clients of the named listener reach it (its first listener's if unknown)."""
        host, port = self.endpoints.get(listener or "", (self.host, self.port))
        return host, int(port)


class MetadataImage:
    def __init__(self, unclean_election_default: bool = False) -> None:
        self.brokers: dict[int, BrokerRegistration] = {}
        self.topics: dict[str, TopicImage] = {}
        self.deleted_topics: set[uuid.UUID] = set()  # ids of topics deleted (their logs go too)
        self.last_applied = 0  # index of the last record applied
        self.unclean_election_default = unclean_election_default
        self.leader_elections = 0  # leaders chosen after a fence or unfence, for the metrics
        self.next_producer_id = 0  # the first producer id no broker was given yet
        self.producer_id_blocks: dict[int, tuple[str, int, int]] = {}  # broker -> (request, first id, size) last given
        self.scram: dict[str, dict[str, dict[str, Any]]] = {}  # user -> mechanism -> credential (ScramCredential.to_json)
        self.client_quotas: dict[Any, dict[str, float]] = {}  # quotas.Entity -> key -> value
        self.acls: frozenset[AclBinding] = frozenset()
        self.acls_version = 0  # counts changes of `acls` (the authorizer's cache follows it)

    def listed_brokers(self) -> list[BrokerRegistration]:
        """The brokers clients are told of: not fenced (a broker shutting down included)."""
        return [b for b in sorted(self.brokers.values(), key=lambda b: b.id) if not b.fenced]

    def live_brokers(self) -> list[BrokerRegistration]:
        """The brokers that may lead, join an ISR or get new replicas."""
        return [b for b in self.listed_brokers() if not b.shut_down]

    def is_live(self, broker_id: int) -> bool:
        broker = self.brokers.get(broker_id)
        return broker is not None and not broker.fenced and not broker.shut_down

    def is_listed(self, broker_id: int) -> bool:
        broker = self.brokers.get(broker_id)
        return broker is not None and not broker.fenced

    def partition(self, topic: str, index: int) -> Optional[PartitionImage]:
        found = self.topics.get(topic)
        if found is None or not 0 <= index < found.partitions:
            return None
        return found.assignments[index]

    def replica_load(self) -> dict[int, tuple[int, int]]:
        """(partitions it is the preferred leader of, replicas) per live broker."""
        leaders = {b.id: 0 for b in self.live_brokers()}
        replicas = dict(leaders)
        for topic in self.topics.values():
            for p in topic.assignments:
                if p.replicas[0] in leaders:
                    leaders[p.replicas[0]] += 1
                for r in p.replicas:
                    if r in replicas:
                        replicas[r] += 1
        return {b: (leaders[b], replicas[b]) for b in leaders}

    def assign_replicas(self, partitions: int, factor: int) -> list[list[int]]:
        """Replicas for `partitions` new partitions, `factor` each: round robin over the live
        brokers (ordered so that racks alternate, as Kafka's rack-aware assignment does),
        starting at the one leading fewest partitions; each partition's first replica is its
        preferred leader."""
        brokers = self._rack_alternating(self.live_brokers())
        if factor > len(brokers):
            raise ValueError(f"replication factor {factor} is larger than the {len(brokers)} live brokers")
        load = self.replica_load()
        start = min(range(len(brokers)), key=lambda i: (load[brokers[i]], brokers[i]))
        n = len(brokers)
        return [[brokers[(start + p + j) % n] for j in range(factor)] for p in range(partitions)]

    @staticmethod
    def _rack_alternating(brokers: list[BrokerRegistration]) -> list[int]:
        by_rack: dict[Optional[str], list[int]] = {}
        for b in brokers:
            by_rack.setdefault(b.rack, []).append(b.id)
        if len(by_rack) <= 1:
            return [b.id for b in brokers]
        racks = [by_rack[r] for r in sorted(by_rack, key=lambda r: r or "")]
        out: list[int] = []
        for i in range(max(len(r) for r in racks)):
            out += [r[i] for r in racks if i < len(r)]
        return out

    # -- snapshots: the whole image, so that the quorum's log can drop what it holds ------------

    def to_snapshot(self) -> bytes:
        return encode({
            "version": 1,
            "last_applied": self.last_applied,
            "leader_elections": self.leader_elections,
            "brokers": [asdict(b) for b in self.brokers.values()],
            "topics": [
                {"name": t.name, "id": str(t.id), "configs": t.configs, "assignments": [asdict(p) for p in t.assignments]}
                for t in self.topics.values()
            ],
            "deleted_topics": sorted(str(t) for t in self.deleted_topics),
            "next_producer_id": self.next_producer_id,
            "producer_id_blocks": {str(b): list(block) for b, block in self.producer_id_blocks.items()},
            "scram": self.scram,
            "client_quotas": quotas.to_json(self.client_quotas),
            "acls": sorted(a.to_json() for a in self.acls),
        })

    def load_snapshot(self, data: bytes) -> None:
        """Replaces the whole image with a snapshot's (this node's own at start, or the leader's)."""
        state = json.loads(data)
        self.last_applied = int(state["last_applied"])
        self.leader_elections = int(state.get("leader_elections", 0))
        self.brokers = {}
        for b in state["brokers"]:
            b["replication"] = tuple(b["replication"])
            self.brokers[int(b["id"])] = BrokerRegistration(**b)
        self.topics = {
            t["name"]: TopicImage(t["name"], uuid.UUID(t["id"]), [PartitionImage(**p) for p in t["assignments"]], dict(t["configs"]))
            for t in state["topics"]
        }
        self.deleted_topics = {uuid.UUID(t) for t in state["deleted_topics"]}
        self.next_producer_id = int(state.get("next_producer_id", 0))
        self.producer_id_blocks = {int(b): (str(r), int(f), int(n)) for b, (r, f, n) in state.get("producer_id_blocks", {}).items()}
        self.scram = {str(u): dict(ms) for u, ms in state.get("scram", {}).items()}
        self.client_quotas = quotas.from_json(state.get("client_quotas", []))
        self.acls = frozenset(AclBinding.from_json(a) for a in state.get("acls", []))
        self.acls_version += 1
        log.info("metadata image loaded from a snapshot at %d: %d brokers, %d topics", self.last_applied, len(self.brokers), len(self.topics))

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
        except (KeyError, ValueError, TypeError, IndexError) as e:
            log.error("metadata record %d (%s) is malformed and skipped: %s", index, record.get("type"), e)

    def _apply_alter_scram_credentials(self, record: dict[str, Any]) -> None:
        for user, mechanism in record["deletions"]:
            self.scram.get(str(user), {}).pop(str(mechanism), None)
        for u in record["upserts"]:
            credential = {"salt": str(u["salt"]), "stored_key": str(u["stored_key"]), "server_key": str(u["server_key"]), "iterations": int(u["iterations"])}
            self.scram.setdefault(str(u["user"]), {})[str(u["mechanism"])] = credential
        self.scram = {user: mechanisms for user, mechanisms in self.scram.items() if mechanisms}

    def _apply_alter_client_quotas(self, record: dict[str, Any]) -> None:
        changes = [
            (quotas.entity_of((str(t), None if n is None else str(n)) for t, n in entity), str(key), None if value is None else float(value))
            for entity, key, value in record["changes"]
        ]
        self.client_quotas = quotas.apply_changes(self.client_quotas, changes)

    def _apply_change_acls(self, record: dict[str, Any]) -> None:
        removed = frozenset(AclBinding.from_json(a) for a in record["removed"])
        added = frozenset(AclBinding.from_json(a) for a in record["added"])
        self.acls = (self.acls - removed) | added
        self.acls_version += 1

    def _apply_allocate_producer_ids(self, record: dict[str, Any]) -> None:
        broker, request, size = int(record["broker"]), str(record["request"]), int(record["size"])
        last = self.producer_id_blocks.get(broker)
        if (last is not None and last[0] == request) or not 0 < size <= 1_000_000:
            return
        self.producer_id_blocks[broker] = (request, self.next_producer_id, size)
        self.next_producer_id += size

    def _apply_register_broker(self, record: dict[str, Any]) -> None:
        broker_id = int(record["id"])
        old = self.brokers.get(broker_id)
        host, port = record["host"], int(record["port"])
        replication = record.get("replication") or (host, port)
        incarnation = str(record.get("incarnation", ""))
        endpoints = {str(name): [str(h), int(p)] for name, (h, p) in (record.get("endpoints") or {}).items()}
        self.brokers[broker_id] = BrokerRegistration(
            broker_id, host, port, record.get("rack"), old.fenced if old else False, (replication[0], int(replication[1])),
            incarnation=incarnation, endpoints=endpoints,
        )
        log.info("broker %d registered at %s:%d", broker_id, record["host"], record["port"])
        restarted = old is None or not incarnation or old.incarnation != incarnation
        for topic in self.topics.values():  # a restarted broker tries its failed replicas again
            for p in topic.assignments:
                if restarted and broker_id in p.failed:
                    p.failed.remove(broker_id)
        if old is not None and old.shut_down and not old.fenced:
            self._elect_offline(self.brokers[broker_id])  # back from a shutdown nobody fenced

    def _elect_offline(self, broker: BrokerRegistration) -> None:
        """Offline partitions whose ISR names `broker` get it as their leader."""
        for topic in self.topics.values():
            for index, p in enumerate(topic.assignments):
                if p.leader == NO_LEADER and broker.id in p.isr:
                    self._change(topic, index, p, p.isr, broker.id)
                elif p.leader == NO_LEADER and broker.id in p.replicas and self._unclean_allowed(topic):
                    self._change(topic, index, p, [broker.id], broker.id)

    def _apply_fence_broker(self, record: dict[str, Any]) -> None:
        broker = self.brokers.get(int(record["id"]))
        if broker is None or broker.fenced:
            return
        broker.fenced = True
        log.warning("broker %d fenced: the controller has not heard from it", broker.id)
        self._move_partitions_off(broker)

    def _apply_shutdown_broker(self, record: dict[str, Any]) -> None:
        broker = self.brokers.get(int(record["id"]))
        if broker is None or broker.shut_down:
            return
        broker.shut_down = True
        log.info("broker %d is shutting down: its partitions move to other replicas", broker.id)
        self._move_partitions_off(broker)

    def _move_partitions_off(self, broker: BrokerRegistration) -> None:
        """`broker` leaves every ISR it shares with a live replica; the partitions it led
        get new leaders from the rest of their ISR."""
        for topic in self.topics.values():
            for index, p in enumerate(topic.assignments):
                self._move_partition_off(topic, index, p, broker.id)

    def _can_lead(self, p: PartitionImage, broker_id: int) -> bool:
        return self.is_live(broker_id) and broker_id not in p.failed

    def _move_partition_off(self, topic: TopicImage, index: int, p: PartitionImage, broker_id: int) -> None:
        if broker_id not in p.isr and p.leader != broker_id:
            return
        isr = [r for r in p.isr if r != broker_id] or p.isr  # the last in-sync replica stays named
        leader = p.leader
        if leader == broker_id or leader == NO_LEADER:
            leader = next((r for r in isr if self._can_lead(p, r)), NO_LEADER)
            if leader == NO_LEADER and self._unclean_allowed(topic):
                leader = next((r for r in p.replicas if self._can_lead(p, r)), NO_LEADER)
                if leader != NO_LEADER:
                    isr = [leader]
                    log.warning("%s-%d: unclean election of broker %d (records may be lost)", topic.name, index, leader)
        self._change(topic, index, p, isr, leader)

    def _apply_reassign_partition(self, record: dict[str, Any]) -> None:
        topic = self._topic(record)
        index = int(record["partition"])
        if topic is None or not 0 <= index < topic.partitions:
            return
        p = topic.assignments[index]
        target = record.get("target")
        if target is None:  # cancel: back to the replicas before it
            if not p.adding and not p.removing:
                return
            original = [r for r in p.replicas if r not in p.adding]
            p.adding, p.removing = [], []
            self._set_replicas(topic, index, p, original)
            return
        target = [int(r) for r in target]
        if not target or len(set(target)) != len(target):
            return
        original = [r for r in p.replicas if r not in p.adding]
        p.adding = [r for r in target if r not in original]
        p.removing = [r for r in original if r not in target]
        p.replicas = target + p.removing
        p.partition_epoch += 1
        log.info("%s-%d: reassigning to %s (adding %s, removing %s)", topic.name, index, target, p.adding, p.removing)
        self._complete_reassignment(topic, index, p)

    def _complete_reassignment(self, topic: TopicImage, index: int, p: PartitionImage) -> None:
        """Once every added replica is in sync, the partition keeps only its target."""
        if not (p.adding or p.removing) or any(r not in p.isr for r in p.adding):
            return
        target = [r for r in p.replicas if r not in p.removing]
        p.adding, p.removing = [], []
        log.info("%s-%d: reassignment to %s complete", topic.name, index, target)
        self._set_replicas(topic, index, p, target)

    def _set_replicas(self, topic: TopicImage, index: int, p: PartitionImage, replicas: list[int]) -> None:
        p.replicas = list(replicas)
        p.failed = [r for r in p.failed if r in replicas]
        isr = [r for r in p.isr if r in replicas] or [r for r in replicas if self._can_lead(p, r)][:1]
        leader = p.leader
        if leader not in isr:
            leader = next((r for r in replicas if r in isr and self._can_lead(p, r)), NO_LEADER)
        p.partition_epoch += 1
        self._change(topic, index, p, isr or p.isr, leader)

    def _apply_replica_offline(self, record: dict[str, Any]) -> None:
        topic = self._topic(record)
        index, broker_id = int(record["partition"]), int(record["broker"])
        if topic is None or not 0 <= index < topic.partitions:
            return
        p = topic.assignments[index]
        if broker_id not in p.replicas or broker_id in p.failed:
            return
        p.failed.append(broker_id)
        log.warning("%s-%d: broker %d's replica is offline (%s)", topic.name, index, broker_id, record.get("why", "storage error"))
        self._move_partition_off(topic, index, p, broker_id)

    def _apply_unfence_broker(self, record: dict[str, Any]) -> None:
        broker = self.brokers.get(int(record["id"]))
        if broker is None or not broker.fenced:
            return
        broker.fenced = False
        log.info("broker %d unfenced", broker.id)
        if broker.shut_down:
            return  # back in the metadata; partitions only once it registers again
        self._elect_offline(broker)

    def _unclean_allowed(self, topic: TopicImage) -> bool:
        text = topic.configs.get("unclean.leader.election.enable")
        return self.unclean_election_default if text is None else text.strip().lower() == "true"

    def _change(self, topic: TopicImage, index: int, p: PartitionImage, isr: list[int], leader: int) -> None:
        if leader != p.leader:
            p.leader_epoch += 1
            self.leader_elections += 1
            log.info("%s-%d: leader %s (epoch %d), ISR %s", topic.name, index, leader if leader != NO_LEADER else "none", p.leader_epoch, isr)
        elif isr != p.isr:
            log.info("%s-%d: ISR %s -> %s", topic.name, index, p.isr, isr)
        else:
            return
        p.leader, p.isr = leader, list(isr)
        p.partition_epoch += 1

    def _topic(self, record: dict[str, Any]) -> Optional[TopicImage]:
        """The topic a record names, if it is still the one of the record's id."""
        topic = self.topics.get(record["name"])
        return topic if topic is not None and str(topic.id) == record["id"] else None

    @staticmethod
    def _new_partitions(record: dict[str, Any], count: Optional[int] = None) -> list[PartitionImage]:
        if "replicas" in record:
            return [PartitionImage(list(map(int, r)), list(map(int, r)), int(r[0])) for r in record["replicas"]]
        owner = int(record["owner"])  # records of the single-replica placement
        return [PartitionImage([owner], [owner], owner) for _ in range(count if count is not None else int(record["partitions"]))]

    def _apply_create_topic(self, record: dict[str, Any]) -> None:
        if record["name"] in self.topics or uuid.UUID(record["id"]) in self.deleted_topics:
            return
        topic = TopicImage(record["name"], uuid.UUID(record["id"]), self._new_partitions(record), dict(record.get("configs") or {}))
        self.topics[topic.name] = topic
        log.info("topic %s created: replicas %s", topic.name, [p.replicas for p in topic.assignments][:8])

    def _apply_delete_topic(self, record: dict[str, Any]) -> None:
        topic = self._topic(record)
        if topic is not None:
            del self.topics[topic.name]
            self.deleted_topics.add(topic.id)
            log.info("topic %s deleted", topic.name)

    def _apply_add_partitions(self, record: dict[str, Any]) -> None:
        topic = self._topic(record)
        if topic is None:
            return
        if "replicas" in record:
            topic.assignments += self._new_partitions(record)
        elif int(record["partitions"]) > topic.partitions:
            first = topic.assignments[0].replicas
            topic.assignments += [PartitionImage(list(first), list(first), first[0]) for _ in range(int(record["partitions"]) - topic.partitions)]

    def _apply_set_topic_configs(self, record: dict[str, Any]) -> None:
        topic = self._topic(record)
        if topic is not None:
            topic.configs = dict(record["configs"])

    def _apply_change_partition(self, record: dict[str, Any]) -> None:
        topic = self._topic(record)
        index = int(record["partition"])
        if topic is None or not 0 <= index < topic.partitions:
            return
        p = topic.assignments[index]
        if p.partition_epoch != int(record["partition_epoch"]):
            log.debug("%s-%d: change for partition epoch %s dropped (now %d)", topic.name, index, record["partition_epoch"], p.partition_epoch)
            return
        # A fenced broker (dead, or shutting down) never joins an ISR (KIP-841): a leader
        # that still sees it fetch must not make acks=all wait for it.
        isr = [int(r) for r in record.get("isr", p.isr) if int(r) in p.replicas and (int(r) in p.isr or self._can_lead(p, int(r)))]
        leader = int(record.get("leader", p.leader))
        if not isr or (leader != NO_LEADER and leader not in isr):
            log.warning("%s-%d: change to leader %d, ISR %s refused", topic.name, index, leader, isr)
            return
        self._change(topic, index, p, isr, leader)
        self._complete_reassignment(topic, index, p)


def encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()
