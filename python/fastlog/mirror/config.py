"""`fastlog mirror`'s settings, with MirrorMaker 2's names.

    clusters = a, b
    a.bootstrap.servers = 127.0.0.1:9092
    b.bootstrap.servers = 127.0.0.1:9192
    a->b.enabled = true
    a->b.topics = orders.*, payments        # regexes, comma separated (default .*)
    topics.exclude = .*[\\-\\.]internal, .*\\.replica, __.*   # (also per flow: a->b.topics.exclude)
    replication.policy.class = org.apache.kafka.connect.mirror.DefaultReplicationPolicy
    replication.policy.separator = .
    sync.topic.configs.enabled = true
    refresh.topics.interval.seconds = 600
    replication.factor = -1                 # of topics made on the target (-1: the target's default)
    a.security.protocol = SASL_SSL          # any client setting, per cluster (a.sasl.jaas.config, ...)
    groups = .*                             # consumer groups checkpointed (groups.exclude: console-consumer-.*, connect-.*, __.*)
    emit.checkpoints.enabled = true
    emit.checkpoints.interval.seconds = 60
    sync.group.offsets.enabled = false      # translated offsets written into the target's idle groups
    sync.group.offsets.interval.seconds = 60
    emit.heartbeats.enabled = true
    emit.heartbeats.interval.seconds = 1

The default policy names a topic `orders` of cluster `a` `a.orders` on the target, and never
mirrors a topic back to the cluster it came from (`b.orders` on `a` is not copied to `b`);
IdentityReplicationPolicy keeps names (and so cannot see cycles: use it one way).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

from fastlog.config import ConfigError, read_properties
from fastlog.security.client_side import ClientSecurity

DEFAULT_POLICY = "org.apache.kafka.connect.mirror.DefaultReplicationPolicy"
IDENTITY_POLICY = "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"
POLICIES = {DEFAULT_POLICY: "default", "DefaultReplicationPolicy": "default", IDENTITY_POLICY: "identity", "IdentityReplicationPolicy": "identity"}
DEFAULT_EXCLUDE = r".*[\-\.]internal, .*\.replica, __.*"
DEFAULT_GROUPS_EXCLUDE = "console-consumer-.*, connect-.*, __.*"
# Topic configs MM2 does not copy (they describe the source cluster, not the data).
CONFIGS_NOT_COPIED = frozenset({
    "follower.replication.throttled.replicas", "leader.replication.throttled.replicas", "message.timestamp.difference.max.ms",
    "message.timestamp.type", "unclean.leader.election.enable", "min.insync.replicas",
})
CLIENT_KEY = re.compile(r"^(security\.protocol|ssl\..+|sasl\..+)$")


@dataclass(frozen=True)
class Cluster:
    alias: str
    bootstrap: str
    security: ClientSecurity


@dataclass
class Flow:
    """One direction: the topics of `source` copied to `target`."""

    source: Cluster
    target: Cluster
    topics: list[re.Pattern]
    exclude: list[re.Pattern]
    groups: list[re.Pattern] = field(default_factory=list)
    groups_exclude: list[re.Pattern] = field(default_factory=list)

    def wants_group(self, group: str) -> bool:
        if group.startswith("mm2-"):  # the mirror's own progress
            return False
        return any(p.fullmatch(group) for p in self.groups) and not any(p.fullmatch(group) for p in self.groups_exclude)

    @property
    def name(self) -> str:
        return f"{self.source.alias}->{self.target.alias}"


@dataclass
class MirrorConfig:
    flows: list[Flow]
    policy: str = "default"  # or "identity"
    separator: str = "."
    sync_topic_configs: bool = True
    refresh_topics_seconds: float = 600.0
    replication_factor: int = -1
    clusters: dict[str, Cluster] = field(default_factory=dict)
    emit_checkpoints: bool = True
    checkpoints_seconds: float = 60.0
    sync_group_offsets: bool = False
    sync_group_offsets_seconds: float = 60.0
    emit_heartbeats: bool = True
    heartbeats_seconds: float = 1.0
    exactly_once: bool = False  # exactly.once.source.support=enabled: each round in a transaction of the target

    def remote_topic(self, flow: Flow, topic: str) -> str:
        return topic if self.policy == "identity" else f"{flow.source.alias}{self.separator}{topic}"

    def topic_source(self, topic: str) -> Optional[str]:
        """The cluster alias a mirrored topic's name says it came from (default policy), or None."""
        if self.policy == "identity" or self.separator not in topic:
            return None
        return topic.split(self.separator, 1)[0]

    def wanted(self, flow: Flow, topic: str) -> bool:
        """Whether `flow` copies `topic`: it matches the flow's patterns and no exclusion, and it
        did not pass through the target on its way here (no cycles, in rings of any size: MM2's
        isCycle walks every upstream hop)."""
        if not any(p.fullmatch(topic) for p in flow.topics) or any(p.fullmatch(topic) for p in flow.exclude):
            return False
        while (source := self.topic_source(topic)) is not None:
            if source == flow.target.alias:
                return False
            topic = topic.split(self.separator, 1)[1]
        return True

    @classmethod
    def from_file(cls, path: str) -> "MirrorConfig":
        return cls.from_settings(read_properties(path), path)

    @classmethod
    def from_settings(cls, settings: Mapping[str, str], source: str = "mirror config") -> "MirrorConfig":
        aliases = [a.strip() for a in settings.get("clusters", "").split(",") if a.strip()]
        if len(aliases) < 2:
            raise ConfigError(f"{source}: clusters needs two aliases or more (clusters = a, b)")
        clusters = {alias: _cluster(settings, alias, source) for alias in aliases}
        flows = []
        for a in aliases:
            for b in aliases:
                if a != b and _bool(settings.get(f"{a}->{b}.enabled", "false"), f"{a}->{b}.enabled", source):
                    topics = _patterns(settings.get(f"{a}->{b}.topics", settings.get("topics", ".*")), f"{a}->{b}.topics", source)
                    exclude = _patterns(settings.get(f"{a}->{b}.topics.exclude", settings.get("topics.exclude", DEFAULT_EXCLUDE)), "topics.exclude", source)
                    groups = _patterns(settings.get(f"{a}->{b}.groups", settings.get("groups", ".*")), f"{a}->{b}.groups", source)
                    groups_exclude = _patterns(settings.get(f"{a}->{b}.groups.exclude", settings.get("groups.exclude", DEFAULT_GROUPS_EXCLUDE)), "groups.exclude", source)
                    flows.append(Flow(clusters[a], clusters[b], topics, exclude, groups, groups_exclude))
        if not flows:
            raise ConfigError(f"{source}: no flow enabled (set {aliases[0]}->{aliases[1]}.enabled = true)")
        policy_name = settings.get("replication.policy.class", DEFAULT_POLICY).strip()
        if policy_name not in POLICIES:
            raise ConfigError(f"{source}: replication.policy.class={policy_name}: one of {DEFAULT_POLICY}, {IDENTITY_POLICY}")
        config = cls(flows, POLICIES[policy_name], clusters=clusters)
        config.separator = settings.get("replication.policy.separator", ".")
        if not config.separator:
            raise ConfigError(f"{source}: replication.policy.separator is empty")
        config.sync_topic_configs = _bool(settings.get("sync.topic.configs.enabled", "true"), "sync.topic.configs.enabled", source)
        config.refresh_topics_seconds = _number(settings.get("refresh.topics.interval.seconds", "600"), "refresh.topics.interval.seconds", source)
        config.replication_factor = int(_number(settings.get("replication.factor", "-1"), "replication.factor", source))
        config.emit_checkpoints = _bool(settings.get("emit.checkpoints.enabled", "true"), "emit.checkpoints.enabled", source)
        config.checkpoints_seconds = _number(settings.get("emit.checkpoints.interval.seconds", "60"), "emit.checkpoints.interval.seconds", source)
        config.sync_group_offsets = _bool(settings.get("sync.group.offsets.enabled", "false"), "sync.group.offsets.enabled", source)
        config.sync_group_offsets_seconds = _number(settings.get("sync.group.offsets.interval.seconds", "60"), "sync.group.offsets.interval.seconds", source)
        config.emit_heartbeats = _bool(settings.get("emit.heartbeats.enabled", "true"), "emit.heartbeats.enabled", source)
        config.heartbeats_seconds = _number(settings.get("emit.heartbeats.interval.seconds", "1"), "emit.heartbeats.interval.seconds", source)
        support = settings.get("exactly.once.source.support", "disabled").strip().lower()
        if support not in ("enabled", "disabled", "preparing"):
            raise ConfigError(f"{source}: exactly.once.source.support={support}: enabled or disabled")
        config.exactly_once = support == "enabled"
        return config


def _cluster(settings: Mapping[str, str], alias: str, source: str) -> Cluster:
    bootstrap = settings.get(f"{alias}.bootstrap.servers", "").strip()
    if not bootstrap:
        raise ConfigError(f"{source}: {alias}.bootstrap.servers is not set")
    prefix = f"{alias}."
    client = {k[len(prefix):]: v for k, v in settings.items() if k.startswith(prefix) and CLIENT_KEY.match(k[len(prefix):])}
    return Cluster(alias, bootstrap, ClientSecurity.from_settings(client, f"{source} ({alias}.*)"))


def _patterns(text: str, key: str, source: str) -> list[re.Pattern]:
    try:
        return [re.compile(p.strip()) for p in text.split(",") if p.strip()]
    except re.error as e:
        raise ConfigError(f"{source}: {key}: {e}") from None


def _bool(text: str, key: str, source: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise ConfigError(f"{source}: {key}={text}: true or false")
    return value == "true"


def _number(text: str, key: str, source: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{source}: {key}={text} is not a number") from None
