"""Broker and topic configuration, with Apache Kafka's key names.

Broker settings come from, in rising precedence: defaults, a `server.properties`-style file,
environment variables (`FASTLOG_LOG_DIRS=/data` sets `log.dirs`), and `--override key=value`.
Unknown keys and invalid values are refused at start-up with a message naming the key.
Topic configs (`retention.ms`, `cleanup.policy`, ...) default to their broker-level counterparts.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

log = logging.getLogger(__name__)

LONG_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
DEFAULT_PROTOCOL_MAP = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
# Keys a `listener.name.<listener>.` prefix may set for one listener (and PLAIN's JAAS config
# as `listener.name.<listener>.plain.sasl.jaas.config`, Kafka's per-mechanism form).
PER_LISTENER_KEYS = ("max.connections", "max.connection.creation.rate")
PER_LISTENER_PREFIXES = ("ssl.", "sasl.", "plain.sasl.", "scram-sha-256.sasl.", "scram-sha-512.sasl.", "connections.max.reauth.ms")


class ConfigError(ValueError):
    """A configuration key is unknown or its value is invalid."""


def parse_ip_counts(key: str, raw: Any) -> dict[str, int]:
    """`max.connections.per.ip.overrides`: `host:count,...` -> {host: count}."""
    counts = {}
    for item in filter(None, (part.strip() for part in str(raw).split(","))):
        host, sep, count = item.rpartition(":")
        if not sep or not host or not count.strip().isdigit():
            raise ConfigError(f"{key}: {item!r} is not IP:COUNT")
        counts[host.strip().strip("[]")] = int(count)
    return counts


def _ip_counts(key: str, raw: Any) -> str:
    parse_ip_counts(key, raw)
    return str(raw).strip()


def _int(lo: int = -(2**63), hi: int = LONG_MAX) -> Callable[[str, Any], int]:
    def parse(key: str, raw: Any) -> int:
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{key}: {raw!r} is not an integer") from None
        if not lo <= value <= hi:
            raise ConfigError(f"{key}: {value} is outside [{lo}, {hi}]")
        return value

    return parse


def _gzip_level(key: str, raw: Any) -> int:
    """-1 (zlib's default, 6) or 1-9: Kafka refuses 0, which would store batches uncompressed."""
    value = _int(-1, 9)(key, raw)
    if value == 0:
        raise ConfigError(f"{key}: 0 is not a gzip level (-1 or 1 to 9)")
    return value


def _float(lo: float, hi: float) -> Callable[[str, Any], float]:
    def parse(key: str, raw: Any) -> float:
        try:
            value = float(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{key}: {raw!r} is not a number") from None
        if not lo <= value <= hi:
            raise ConfigError(f"{key}: {value} is outside [{lo}, {hi}]")
        return value

    return parse


def _bool(key: str, raw: Any) -> bool:
    text = str(raw).strip().lower()
    if text not in ("true", "false"):
        raise ConfigError(f"{key}: {raw!r} is not true or false")
    return text == "true"


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def parse(key: str, raw: Any) -> str:
        value = str(raw).strip()
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
        return value

    return parse


def _list_of(*choices: str) -> Callable[[str, Any], str]:
    def parse(key: str, raw: Any) -> str:
        items = [item.strip() for item in str(raw).split(",") if item.strip()]
        bad = [item for item in items if item not in choices]
        if bad or not items:
            raise ConfigError(f"{key}: {raw!r} must be a list of {', '.join(choices)}")
        return ",".join(items)

    return parse


def _string(key: str, raw: Any) -> str:
    return str(raw).strip()


def _optional_string(key: str, raw: Any) -> Optional[str]:
    text = str(raw).strip()
    return text or None


def http_listener_addresses(text: str, key: str = "listeners") -> list[tuple[str, int]]:
    """(host, port) of comma-separated `http://host:port` URLs; empty or -1 is none (off)."""
    text = text.strip()
    if text in ("", "-1"):
        return []
    out = []
    for url in text.split(","):
        match = re.fullmatch(r"http://(\[[0-9a-fA-F:]+\]|[^:/\s\[\]]*):(\d{1,5})/?", url.strip())
        if match is None or int(match.group(2)) > 65535:
            raise ConfigError(f"{key}: {url.strip()!r} is not http://HOST:PORT")
        out.append((match.group(1).strip("[]") or "0.0.0.0", int(match.group(2))))
    return out


def _http_listeners(key: str, raw: Any) -> str:
    text = str(raw).strip()
    http_listener_addresses(text, key)
    return text


COMPRESSION_TYPES = ("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd")


@dataclass(frozen=True)
class TopicConfigKey:
    name: str
    parse: Callable[[str, Any], Any]
    broker_key: Optional[str]
    default: Any
    doc: str
    # Kafka 3.x accepts it, but it changes nothing (deprecated, or a feature fastlog lacks):
    # a value set for it is kept and shown, with a warning in the log.
    no_effect: bool = False


def _no_effect(name: str, parse: Callable[[str, Any], Any], default: Any, doc: str) -> TopicConfigKey:
    return TopicConfigKey(name, parse, None, default, doc, no_effect=True)


# Kafka's topic configs, each with the broker setting that supplies its default.
TOPIC_CONFIGS: dict[str, TopicConfigKey] = {
    key.name: key
    for key in [
        TopicConfigKey("cleanup.policy", _list_of("delete", "compact"), "log.cleanup.policy", "delete", "delete or compact old segments"),
        TopicConfigKey("compression.type", _choice(*COMPRESSION_TYPES), "compression.type", "producer", "codec the broker stores batches with"),
        TopicConfigKey("delete.retention.ms", _int(0), "log.cleaner.delete.retention.ms", 86_400_000, "how long tombstones are kept after compaction"),
        TopicConfigKey("file.delete.delay.ms", _int(0), "log.segment.delete.delay.ms", 60_000, "delay before a deleted segment's files go"),
        TopicConfigKey("flush.messages", _int(1), "log.flush.interval.messages", LONG_MAX, "fsync after this many messages"),
        TopicConfigKey("flush.ms", _int(0), "log.flush.interval.ms", LONG_MAX, "fsync after this many milliseconds"),
        TopicConfigKey("index.interval.bytes", _int(0, INT_MAX), "log.index.interval.bytes", 4096, "bytes between offset index entries"),
        TopicConfigKey("max.compaction.lag.ms", _int(1), "log.cleaner.max.compaction.lag.ms", LONG_MAX, "longest a record may stay uncompacted"),
        TopicConfigKey("max.message.bytes", _int(0, INT_MAX), "message.max.bytes", 1_048_588, "largest record batch accepted"),
        TopicConfigKey("message.timestamp.type", _choice("CreateTime", "LogAppendTime"), "log.message.timestamp.type", "CreateTime", "whose timestamp records keep"),
        TopicConfigKey("message.timestamp.before.max.ms", _int(0), "log.message.timestamp.before.max.ms", LONG_MAX, "how far in the past a timestamp may be"),
        TopicConfigKey("message.timestamp.after.max.ms", _int(0), "log.message.timestamp.after.max.ms", LONG_MAX, "how far in the future a timestamp may be"),
        TopicConfigKey("min.cleanable.dirty.ratio", _float(0.0, 1.0), "log.cleaner.min.cleanable.ratio", 0.5, "dirty share that triggers compaction"),
        TopicConfigKey("min.compaction.lag.ms", _int(0), "log.cleaner.min.compaction.lag.ms", 0, "youngest a record may be compacted"),
        TopicConfigKey("min.insync.replicas", _int(1, INT_MAX), "min.insync.replicas", 1, "replicas that must acknowledge acks=all"),
        # Off by default, as in Kafka: the reservation (a fallocate on the append path) makes
        # appends wait for block bitmaps to load, while it spares them the allocation lock during
        # a flush's writeback (bench/README.md, "preallocate").
        TopicConfigKey("preallocate", _bool, "log.preallocate", False, "reserve the active segment's blocks ahead of its appends"),
        TopicConfigKey("retention.bytes", _int(), "log.retention.bytes", -1, "size kept per partition (-1: no limit)"),
        TopicConfigKey("retention.ms", _int(-1), "log.retention.ms", 604_800_000, "time kept (-1: forever)"),
        TopicConfigKey("segment.bytes", _int(14, INT_MAX), "log.segment.bytes", 1_073_741_824, "size of a segment file"),
        TopicConfigKey("segment.index.bytes", _int(4, INT_MAX), "log.index.size.max.bytes", 10_485_760, "largest offset index of a segment"),
        TopicConfigKey("segment.jitter.ms", _int(0), "log.roll.jitter.ms", 0, "random jitter subtracted from segment.ms"),
        TopicConfigKey("segment.ms", _int(1), "log.roll.ms", 604_800_000, "age at which a segment rolls"),
        TopicConfigKey("unclean.leader.election.enable", _bool, "unclean.leader.election.enable", False, "allow out-of-sync leaders"),
        # Confluent Server's broker-side schema validation (the built-in schema registry's ids)
        TopicConfigKey("confluent.value.schema.validation", _bool, None, False, "refuse records whose value is not framed with an id registered under <topic>-value"),
        TopicConfigKey("confluent.key.schema.validation", _bool, None, False, "refuse records whose key is not framed with an id registered under <topic>-key"),
        TopicConfigKey("message.downconversion.enable", _bool, "log.message.downconversion.enable", True, "convert batches down for Fetch v0-v3 readers (else UNSUPPORTED_VERSION)"),
        _no_effect("message.format.version", _string, "3.0-IV1", "on-disk message format (deprecated in Kafka 3: always v2)"),
        _no_effect("message.timestamp.difference.max.ms", _int(0), LONG_MAX, "deprecated in Kafka 3.6 for message.timestamp.before/after.max.ms"),
        TopicConfigKey("compression.gzip.level", _gzip_level, "compression.gzip.level", -1, "gzip level when the broker compresses for compression.type (-1: 6)"),
        _no_effect("compression.lz4.level", _int(1, 17), 9, "lz4 level when the broker compresses (fastlog's lz4 has one level)"),
        TopicConfigKey("compression.zstd.level", _int(-131072, 22), "compression.zstd.level", 3, "zstd level when the broker compresses for compression.type"),
        _no_effect("leader.replication.throttled.replicas", _string, "", "replicas throttled on the leader (replication is not throttled)"),
        _no_effect("follower.replication.throttled.replicas", _string, "", "replicas throttled on followers (replication is not throttled)"),
        _no_effect("remote.storage.enable", _bool, False, "tiered storage (not in fastlog)"),
        _no_effect("local.retention.ms", _int(-2), -2, "local retention with tiered storage (not in fastlog)"),
        _no_effect("local.retention.bytes", _int(-2), -2, "local retention with tiered storage (not in fastlog)"),
        _no_effect("remote.log.copy.disable", _bool, False, "tiered storage (not in fastlog)"),
        _no_effect("remote.log.delete.on.disable", _bool, False, "tiered storage (not in fastlog)"),
    ]
}


@dataclass(frozen=True)
class BrokerKey:
    name: str
    parse: Callable[[str, Any], Any]
    default: Any
    doc: str


def _broker_keys() -> dict[str, BrokerKey]:
    keys = [
        BrokerKey("node.id", _int(0, INT_MAX), 0, "this broker's id"),
        BrokerKey("broker.id", _int(-1, INT_MAX), -1, "alias of node.id"),
        BrokerKey("listeners", _string, "PLAINTEXT://127.0.0.1:9092", "where the broker listens"),
        BrokerKey("advertised.listeners", _optional_string, None, "addresses given to clients (default: listeners)"),
        BrokerKey("log.dirs", _optional_string, None, "data directories (comma separated)"),
        BrokerKey("log.dir", _string, "fastlog-data", "data directory when log.dirs is not set"),
        BrokerKey("num.partitions", _int(1, INT_MAX), 1, "partitions of an auto-created topic"),
        BrokerKey("default.replication.factor", _int(1, 32767), 1, "replication factor of an auto-created topic"),
        BrokerKey("auto.create.topics.enable", _bool, True, "create topics on first metadata request"),
        BrokerKey("delete.topic.enable", _bool, True, "allow topic deletion"),
        BrokerKey("log.retention.hours", _int(-1, INT_MAX), 168, "hours of retention"),
        BrokerKey("log.retention.minutes", _int(-1, INT_MAX), None, "minutes of retention (wins over hours)"),
        BrokerKey("log.retention.ms", _int(-1), None, "milliseconds of retention (wins over minutes)"),
        BrokerKey("log.roll.hours", _int(1, INT_MAX), 168, "hours before a segment rolls"),
        BrokerKey("log.retention.check.interval.ms", _int(1), 300_000, "how often retention runs"),
        BrokerKey("log.flush.scheduler.interval.ms", _int(1), 1_000, "how often flush.ms is checked"),
        BrokerKey("log.cleaner.backoff.ms", _int(1), 15_000, "how often compacted logs are checked for cleaning"),
        BrokerKey("log.cleaner.dedupe.buffer.size", _int(1), 134_217_728, "memory of a compaction pass's key map (24 bytes a key, as Kafka counts)"),
        BrokerKey("log.cleaner.io.buffer.load.factor", _float(0.01, 1.0), 0.9, "share of log.cleaner.dedupe.buffer.size a pass fills"),
        BrokerKey("log.flush.offset.checkpoint.interval.ms", _int(1), 60_000, "how often recovery points are saved"),
        BrokerKey("log.flush.start.offset.checkpoint.interval.ms", _int(1), 60_000, "how often log start offsets are saved"),
        BrokerKey("socket.request.max.bytes", _int(1, INT_MAX), 104_857_600, "largest request frame accepted"),
        BrokerKey("queued.max.requests", _int(1, INT_MAX), 500, "requests in flight per connection"),
        BrokerKey("connections.max.idle.ms", _int(-1), 600_000, "idle connections are closed after this"),
        BrokerKey("max.connections", _int(1, INT_MAX), INT_MAX, "connections accepted at once (also per listener: listener.name.<name>.max.connections)"),
        BrokerKey("max.connections.per.ip", _int(0, INT_MAX), INT_MAX, "connections accepted at once from one IP address"),
        BrokerKey("max.connections.per.ip.overrides", _ip_counts, "", "per-IP exceptions to max.connections.per.ip (IP:COUNT,...)"),
        BrokerKey("max.connection.creation.rate", _int(1, INT_MAX), INT_MAX,
                  "new connections accepted per second (also per listener: listener.name.<name>.max.connection.creation.rate); the next accept waits"),
        BrokerKey("max.request.entries", _int(1, INT_MAX), 200_000,
                  "topics, partitions and other array entries one request may name in all (more: the connection is closed)"),
        BrokerKey("max.incremental.fetch.session.cache.slots", _int(0, INT_MAX), 1000, "incremental fetch sessions kept (a client keeps at most a quarter)"),
        BrokerKey("quota.window.num", _int(2, 1000), 11, "samples a client quota's rate is measured over"),
        BrokerKey("quota.window.size.seconds", _int(1, 3600), 1, "length of each sample"),
        BrokerKey("num.network.threads", _int(1, 64), min(os.cpu_count() or 1, 8), "threads (each a Trio loop) serving client connections"),
        BrokerKey("num.io.threads", _int(1, 256), 8,
                  "disk work of requests (flush.messages fsyncs, group and transaction flushes, topic files, DeleteRecords) running at once, across every network loop"),
        BrokerKey("offsets.topic.num.partitions", _int(1, INT_MAX), 50, "partitions of __consumer_offsets"),
        BrokerKey("offsets.retention.minutes", _int(1, INT_MAX), 10080, "committed offsets of empty groups are kept this long"),
        BrokerKey("max.partitions.per.topic", _int(1, 100_000), 10_000,
                  "most partitions a topic may have (CreateTopics, CreatePartitions, auto-creation)"),
        BrokerKey("max.partitions", _int(1, INT_MAX), 20_000,
                  "most partitions a single node hosts (each costs files, memory, recovery time)"),
        BrokerKey("transaction.state.log.num.partitions", _int(1, INT_MAX), 50, "partitions of __transaction_state"),
        BrokerKey("transaction.state.log.replication.factor", _int(1, 32767), 3,
                  "replication factor of __transaction_state (at most the live brokers)"),
        BrokerKey("transaction.max.timeout.ms", _int(1, INT_MAX), 900_000, "largest transaction.timeout.ms a producer may ask for"),
        BrokerKey("transactional.id.expiration.ms", _int(1, INT_MAX), 604_800_000,
                  "a transactional id without a transaction for this long is forgotten"),
        BrokerKey("transaction.abort.timed.out.transaction.cleanup.interval.ms", _int(1, INT_MAX), 10_000,
                  "how often transactions past their timeout are looked for and aborted"),
        BrokerKey("transaction.remove.expired.transaction.cleanup.interval.ms", _int(1, INT_MAX), 3_600_000,
                  "how often expired transactional ids are looked for"),
        BrokerKey("transaction.partition.verification.enable", _bool, True,
                  "a transactional write to a partition not yet added to its transaction is refused (KIP-890)"),
        BrokerKey("group.initial.rebalance.delay.ms", _int(0), 3000, "wait for more members of a new group"),
        BrokerKey("group.min.session.timeout.ms", _int(0), 6000, "smallest session timeout allowed"),
        BrokerKey("group.max.session.timeout.ms", _int(0), 1_800_000, "largest session timeout allowed"),
        BrokerKey("cluster.id", _optional_string, None, "cluster id (default: generated once and kept in meta.properties)"),
        BrokerKey("open.files.max", _int(16, INT_MAX), 4096, "segment files kept open at once across all partitions"),
        BrokerKey("metrics.host", _string, "127.0.0.1", "address of the Prometheus endpoint (http://host:port/metrics)"),
        BrokerKey("metrics.port", _int(-1, 65535), 9404, "port of the Prometheus endpoint (-1: off, 0: any free port)"),
        BrokerKey("console.enable", _bool, True, "serve the web console at / beside /metrics (metrics.host, metrics.port)"),
        BrokerKey("console.listeners", _http_listeners, "", "where the console listens instead (http://HOST:PORT, comma-separated; empty: beside /metrics)"),
        BrokerKey("console.read.only", _bool, False, "the console shows but changes nothing (no config edits, test messages or offset resets)"),
        BrokerKey("console.sample.interval.ms", _int(500, 60_000), 5000, "how often the console samples rates and lag for its charts"),
        BrokerKey("log.format", _choice("text", "json"), "text", "broker log lines as text, or as JSON lines"),
        # The schema registry built in (Confluent Schema Registry's REST API; -1 or empty: off).
        BrokerKey("schema.registry.listeners", _http_listeners, "http://127.0.0.1:8081", "where the schema registry listens (http://HOST:PORT, comma-separated; -1: off)"),
        BrokerKey("schema.registry.topic", _string, "_schemas", "the compacted topic schemas are kept in (Confluent's kafkastore.topic)"),
        BrokerKey("schema.registry.topic.replication.factor", _int(-1, 32767), -1, "its replication factor (-1: the live brokers, at most 3)"),
        # A cluster (KRaft's names): empty voters is a single node, a cluster of one without a quorum.
        BrokerKey("process.roles", _string, "broker,controller", "roles of this node: broker, controller, or both"),
        BrokerKey("controller.quorum.voters", _string, "", "the metadata quorum: id@host:port,... (empty or one voter: a single node)"),
        BrokerKey("controller.quorum.bootstrap.servers", _string, "", "controllers a broker-only node may start from (host:port,...) when it does not list the voters"),
        BrokerKey("controller.listener.names", _string, "CONTROLLER", "listener the quorum speaks on (not served to clients)"),
        BrokerKey("controller.quorum.election.timeout.ms", _int(100, INT_MAX), 1000, "a follower without a leader for this long starts an election"),
        # Kafka's default is 9 s; the quorum hears from every node each tick, so fastlog fences
        # (and moves leadership off) a dead broker sooner.
        BrokerKey("broker.session.timeout.ms", _int(100, INT_MAX), 3000, "a broker the controller does not hear from for this long is fenced"),
        BrokerKey("broker.rack", _optional_string, None, "rack of this broker, given to clients"),
        BrokerKey("metadata.log.max.record.bytes.between.snapshots", _int(1, INT_MAX), 20 * 1024 * 1024, "bytes of metadata records after which the image is snapshotted and the log compacted"),
        BrokerKey("inter.broker.listener.name", _optional_string, None, "listener followers fetch from (default: the first client listener)"),
        BrokerKey("replica.lag.time.max.ms", _int(1, INT_MAX), 30_000, "a follower not caught up for this long leaves the ISR"),
        BrokerKey("replica.high.watermark.checkpoint.interval.ms", _int(1, INT_MAX), 5000, "how often high watermarks are saved (a cluster)"),
        BrokerKey("replica.fetch.wait.max.ms", _int(0, INT_MAX), 500, "how long a follower's fetch waits at the leader for new records"),
        BrokerKey("replica.fetch.max.bytes", _int(1, INT_MAX), 8_388_608, "bytes a follower asks for per partition (Kafka: 1 MiB; more per round trip replicates faster)"),
        BrokerKey("replica.fetch.response.max.bytes", _int(1, INT_MAX), 10_485_760, "bytes a follower asks for per fetch"),
        BrokerKey("auto.leader.rebalance.enable", _bool, True, "move leadership back to each partition's preferred replica"),
        BrokerKey("leader.imbalance.check.interval.seconds", _int(1, INT_MAX), 300, "how often preferred leaders are checked"),
        BrokerKey("log.verify.on.start.enable", _bool, True, "a cluster broker checks every batch of its replicas once after start (damaged ones go offline)"),
        BrokerKey("offsets.topic.replication.factor", _int(1, 32767), 3, "replication factor of __consumer_offsets (at most the live brokers)"),
        # Security (Kafka's names): each listener's protocol, TLS and SASL. A `listener.name.<name>.`
        # prefix sets any of the ssl.* and sasl.* keys for one listener.
        BrokerKey("listener.security.protocol.map", _string, DEFAULT_PROTOCOL_MAP, "security protocol of each listener name (NAME:PROTOCOL,...)"),
        BrokerKey("ssl.keystore.type", _choice("JKS", "PKCS12", "PEM"), "JKS", "format of the keystore (JKS files written by Java 9+ keytool are PKCS12 and are read as such)"),
        BrokerKey("ssl.keystore.location", _optional_string, None, "the broker's certificate and key: a PKCS12 or PEM file"),
        BrokerKey("ssl.keystore.password", _optional_string, None, "password of the keystore file"),
        BrokerKey("ssl.key.password", _optional_string, None, "password of the private key"),
        BrokerKey("ssl.keystore.certificate.chain", _optional_string, None, "PEM certificate chain inline (ssl.keystore.type=PEM)"),
        BrokerKey("ssl.keystore.key", _optional_string, None, "PEM private key inline (ssl.keystore.type=PEM)"),
        BrokerKey("ssl.truststore.type", _choice("JKS", "PKCS12", "PEM"), "JKS", "format of the truststore"),
        BrokerKey("ssl.truststore.location", _optional_string, None, "certificates trusted to sign clients' certificates: a PKCS12 or PEM file"),
        BrokerKey("ssl.truststore.password", _optional_string, None, "password of the truststore file"),
        BrokerKey("ssl.truststore.certificates", _optional_string, None, "PEM trusted certificates inline (ssl.truststore.type=PEM)"),
        BrokerKey("ssl.client.auth", _choice("none", "requested", "required"), "none", "whether clients must present a certificate"),
        BrokerKey("ssl.enabled.protocols", _list_of("TLSv1.2", "TLSv1.3"), "TLSv1.2,TLSv1.3", "TLS versions accepted"),
        BrokerKey("ssl.protocol", _string, "TLSv1.3", "accepted for Kafka's configs; ssl.enabled.protocols decides"),
        BrokerKey("ssl.cipher.suites", _string, "", "TLS 1.2 cipher suites, OpenSSL or IANA names (empty: OpenSSL's secure defaults)"),
        BrokerKey("ssl.principal.mapping.rules", _string, "DEFAULT", "how a client certificate's subject becomes a principal name"),
        BrokerKey("ssl.endpoint.identification.algorithm", _string, "https", "clients' setting; a broker checks no host name"),
        BrokerKey("sasl.enabled.mechanisms", _list_of(*SASL_MECHANISMS), "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", "SASL mechanisms offered on SASL listeners"),
        BrokerKey("sasl.mechanism.inter.broker.protocol", _string, "GSSAPI", "how followers log in to a SASL inter-broker listener: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
        BrokerKey("sasl.jaas.config", _optional_string, None, "JAAS login module config (PlainLoginModule's user_NAME=\"password\" entries are PLAIN's users)"),
        BrokerKey("java.security.auth.login.config", _optional_string, None, "a JAAS file; its KafkaServer section (or <listener>.KafkaServer) holds PLAIN's users"),
        BrokerKey("sasl.server.max.receive.size", _int(1, INT_MAX), 524_288, "largest frame read from a client before it has authenticated"),
        BrokerKey("connection.failed.authentication.delay.ms", _int(0, INT_MAX), 100, "a failed authentication is answered (and closed) after this delay"),
        BrokerKey("connections.max.reauth.ms", _int(0), 0, "an authenticated SASL session must re-authenticate within this (0: never)"),
        # OAUTHBEARER (KIP-768): JWTs checked against the keys of a JWKS.
        BrokerKey("sasl.oauthbearer.jwks.endpoint.url", _optional_string, None, "the JWKS OAUTHBEARER tokens are checked against: a file: or https: URL"),
        BrokerKey("sasl.oauthbearer.jwks.endpoint.refresh.ms", _int(1000, INT_MAX), 3_600_000, "how often a JWKS URL is fetched again"),
        BrokerKey("sasl.oauthbearer.jwks.endpoint.retry.backoff.ms", _int(0, INT_MAX), 100, "accepted for Kafka's configs (a failed fetch is retried at the next login after a second)"),
        BrokerKey("sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms", _int(0, INT_MAX), 10_000, "accepted for Kafka's configs"),
        BrokerKey("sasl.oauthbearer.expected.audience", _optional_string, None, "audiences a token must name one of (comma separated; empty: not checked)"),
        BrokerKey("sasl.oauthbearer.expected.issuer", _optional_string, None, "the issuer a token must name (empty: not checked)"),
        BrokerKey("sasl.oauthbearer.sub.claim.name", _string, "sub", "the claim holding the principal's name"),
        BrokerKey("sasl.oauthbearer.scope.claim.name", _string, "scope", "the claim holding the token's scopes"),
        BrokerKey("sasl.oauthbearer.clock.skew.seconds", _int(0, INT_MAX), 30, "leeway for a token's exp, nbf and iat"),
        BrokerKey("authorizer.class.name", _string, "", "the ACL authorizer: StandardAuthorizer (Kafka's class names, or fastlog) or empty for none (everything allowed)"),
        BrokerKey("super.users", _optional_string, None, "principals allowed everything, whatever the ACLs (User:admin;User:broker)"),
        BrokerKey("allow.everyone.if.no.acl.found", _bool, False, "a resource with no ACL at all is open to everyone (default: closed)"),
        BrokerKey("scram.iterations.min", _int(1, INT_MAX), 4096, "fewest SCRAM iterations AlterUserScramCredentials accepts"),
    ]
    keys += [
        BrokerKey(k.broker_key, k.parse, k.default, k.doc)
        for k in TOPIC_CONFIGS.values()
        if k.broker_key and k.broker_key not in ("log.retention.ms", "log.roll.ms")
    ]
    keys.append(BrokerKey("log.roll.ms", _int(1), None, "milliseconds before a segment rolls (wins over hours)"))
    return {k.name: k for k in keys}


BROKER_KEYS = _broker_keys()

# Kafka settings that make no difference to fastlog: accepted with a log line, so an
# existing server.properties starts without edits.
IGNORED_KEYS = frozenset(
    """socket.send.buffer.bytes socket.receive.buffer.bytes
    num.recovery.threads.per.data.dir
    transaction.state.log.replication.factor transaction.state.log.min.isr
    ssl.keymanager.algorithm ssl.trustmanager.algorithm ssl.secure.random.implementation
    ssl.engine.factory.class principal.builder.class zookeeper.connect zookeeper.connection.timeout.ms
    log.cleaner.enable log.cleaner.threads num.replica.fetchers
    group.coordinator.rebalance.protocols share.coordinator.state.topic.replication.factor
    share.coordinator.state.topic.min.isr""".split()
)


def read_properties(path: str | os.PathLike[str], what: str = "") -> dict[str, str]:
    """A properties file's settings; ConfigError naming the file when it cannot be read."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read {what + ' ' if what else ''}{path}: {e.strerror}") from None
    return parse_properties(text, str(path))


def parse_properties(text: str, source: str = "config") -> dict[str, str]:
    """Parses Java-properties text: `key=value` or `key: value`, `#`/`!` comments."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if sep < 0:
            raise ConfigError(f"{source}:{number}: expected key=value, got {line!r}")
        values[line[:sep].strip()] = line[sep + 1 :].strip()
    return values


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """`FASTLOG_LOG_RETENTION_MS=5` -> `log.retention.ms=5`, for keys fastlog knows."""
    out = {}
    for name, value in environ.items():
        if name.startswith("FASTLOG_") and name != "FASTLOG_CONFIG":
            key = name[len("FASTLOG_") :].lower().replace("_", ".")
            if key in BROKER_KEYS:
                out[key] = value
    return out


@dataclass(frozen=True)
class Listener:
    name: str
    host: str
    port: int
    protocol: str = "PLAINTEXT"  # its security protocol (listener.security.protocol.map)

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def parse_protocol_map(text: str, controller_names: set[str]) -> dict[str, str]:
    """`NAME:PROTOCOL,...`; a controller listener not named is PLAINTEXT (as in KRaft)."""
    protocols = {name: "PLAINTEXT" for name in controller_names}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, protocol = item.partition(":")
        protocol = protocol.strip().upper()
        if not sep or not name.strip() or protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(f"listener.security.protocol.map: {item!r} is not NAME:PROTOCOL with PROTOCOL one of {', '.join(SECURITY_PROTOCOLS)}")
        protocols[name.strip()] = protocol
    return protocols


def parse_listeners(key: str, text: str) -> list[Listener]:
    listeners = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = item.partition("://")
        host, colon, port = address.rpartition(":")
        if not sep or not colon:
            raise ConfigError(f"{key}: {item!r} is not NAME://host:port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        listeners.append(Listener(name, host or "0.0.0.0", _int(0, 65535)(key, port)))
    if not listeners:
        raise ConfigError(f"{key}: no listener given")
    return listeners


def parse_voters(text: str) -> dict[int, tuple[str, int]]:
    """`1@host:9093,2@host:9093` -> {1: ("host", 9093), ...}."""
    voters: dict[int, tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        node, at, address = item.partition("@")
        host, colon, port = address.rpartition(":")
        if not at or not colon or not node.isdigit():
            raise ConfigError(f"controller.quorum.voters: {item!r} is not id@host:port")
        voters[int(node)] = (host.strip("[]"), _int(1, 65535)("controller.quorum.voters", port))
    return voters


def parse_roles(text: str) -> set[str]:
    roles = {r.strip() for r in text.split(",") if r.strip()}
    if not roles or not roles <= {"broker", "controller"}:
        raise ConfigError(f"process.roles={text}: expected broker, controller, or broker,controller")
    return roles


def parse_addresses(key: str, text: str) -> list[tuple[str, int]]:
    """`host:9093,host2:9093` -> [("host", 9093), ...]."""
    addresses = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, colon, port = item.rpartition(":")
        if not colon or not host:
            raise ConfigError(f"{key}: {item!r} is not host:port")
        addresses.append((host.strip("[]"), _int(1, 65535)(key, port)))
    return addresses


def cluster_id_for(voters: dict[int, tuple[str, int]]) -> str:
    """The cluster id every node of a cluster derives alike from its voters, when `cluster.id`
    is not set (Kafka has `kafka-storage format` write one; fastlog needs no format step)."""
    name = ",".join(f"{i}@{h}:{p}" for i, (h, p) in sorted(voters.items()))
    return base64.urlsafe_b64encode(uuid.uuid5(uuid.NAMESPACE_URL, f"fastlog:{name}").bytes).decode().rstrip("=")


REGISTRY_CLIENT_PREFIX = "schema.registry.kafkastore."


class BrokerConfig:
    """Validated broker settings: `config["log.segment.bytes"]` or the properties below."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = {k: v.default for k, v in BROKER_KEYS.items()}
        self.explicit: set[str] = set()
        # `listener.name.<listener>.<key>`: per listener (lower-cased name) -> key -> raw value.
        self.per_listener: dict[str, dict[str, str]] = {}
        # `schema.registry.kafkastore.<client setting>`: how the built-in schema registry
        # reaches the broker (Confluent's kafkastore.security.protocol, .sasl.jaas.config, ...).
        self.registry_client: dict[str, str] = {}
        for key, raw in (values or {}).items():
            key = key.strip()
            if key.startswith("listener.name."):
                self._set_per_listener(key, raw)
                continue
            if key.startswith(REGISTRY_CLIENT_PREFIX):
                self.registry_client[key[len(REGISTRY_CLIENT_PREFIX):]] = str(raw).strip()
                continue
            if key in IGNORED_KEYS:
                log.info("config %s has no effect in fastlog; ignored", key)
                continue
            spec = BROKER_KEYS.get(key)
            if spec is None:
                raise ConfigError(f"unknown config key {key!r}")
            self._values[key] = spec.parse(key, raw)
            self.explicit.add(key)
        self.listeners = parse_listeners("listeners", self["listeners"])
        advertised = self["advertised.listeners"]
        self.advertised_listeners = parse_listeners("advertised.listeners", advertised) if advertised else self.listeners
        if self["broker.id"] >= 0 and "node.id" not in self.explicit:
            self._values["node.id"] = self["broker.id"]
        self.roles = parse_roles(self["process.roles"])
        voters = parse_voters(self["controller.quorum.voters"])
        self.quorum_bootstrap = parse_addresses("controller.quorum.bootstrap.servers", self["controller.quorum.bootstrap.servers"])
        # A combined node with one voter or none (Kafka's stock KRaft server.properties) is a
        # single node, run as before; anything else is a cluster.
        single = self.roles == {"broker", "controller"} and len(voters) <= 1 and not self.quorum_bootstrap
        self.quorum_voters = {} if single else voters
        self._cluster = not single
        controller_names = {n.strip() for n in self["controller.listener.names"].split(",")} if self._cluster else set()
        self._set_protocols(controller_names)
        self.controller_listeners = [l for l in self.listeners if l.name in controller_names]
        self.client_listeners = [l for l in self.listeners if l.name not in controller_names]
        if self._cluster:
            self._check_cluster(controller_names)

    def _set_per_listener(self, key: str, raw: Any) -> None:
        listener, _, setting = key[len("listener.name.") :].partition(".")
        if not listener or not (setting.startswith(PER_LISTENER_PREFIXES) or setting in PER_LISTENER_KEYS):
            raise ConfigError(f"unknown config key {key!r} (listener.name.<listener>. sets ssl.*, sasl.*, <mechanism>.sasl.jaas.config, "
                              "max.connections and max.connection.creation.rate)")
        base = setting.split(".", 1)[1] if setting.startswith(("plain.", "scram-sha-256.", "scram-sha-512.")) else setting
        spec = BROKER_KEYS.get(base)
        if spec is None:
            raise ConfigError(f"unknown config key {key!r}")
        spec.parse(key, raw)  # refused now, not when the listener opens
        self.per_listener.setdefault(listener.lower(), {})[setting] = str(raw).strip()

    def _set_protocols(self, controller_names: set[str]) -> None:
        names = {n.strip() for n in self["controller.listener.names"].split(",")} | controller_names
        protocols = parse_protocol_map(self["listener.security.protocol.map"], names)
        named = []
        for listener in self.listeners:
            protocol = protocols.get(listener.name)
            if protocol is None:
                if "listener.security.protocol.map" in self.explicit:
                    raise ConfigError(f"listeners: {listener.name} has no security protocol in listener.security.protocol.map")
                protocol = "PLAINTEXT"  # a name fastlog took before the map existed (REPLICATION, INTERNAL)
            if listener.name in controller_names and protocol not in ("PLAINTEXT", "SSL"):
                raise ConfigError(f"the controller listener {listener.name} is {protocol}: fastlog's quorum speaks PLAINTEXT or SSL "
                                  "(authenticate its nodes with ssl.client.auth=required)")
            named.append(Listener(listener.name, listener.host, listener.port, protocol))
        self.listeners = named
        # The metadata quorum's protocol (PLAINTEXT or SSL): a broker-only node, which has no
        # controller listener, takes it from listener.security.protocol.map.
        controller_name = self["controller.listener.names"].split(",")[0].strip()
        self.controller_protocol = protocols.get(controller_name, "PLAINTEXT")
        if self.controller_protocol not in ("PLAINTEXT", "SSL"):
            raise ConfigError(f"the controller listener {controller_name} is {self.controller_protocol}: fastlog's quorum speaks PLAINTEXT or SSL")
        self.controller_listener_name = controller_name
        if not self["advertised.listeners"]:
            self.advertised_listeners = named

    def listener_setting(self, listener: str, key: str, mechanism: Optional[str] = None) -> Any:
        """`key` for one listener: `listener.name.<listener>.[<mechanism>.]key` if set, else
        the broker-wide value."""
        overrides = self.per_listener.get(listener.lower(), {})
        for setting in ([f"{mechanism.lower()}.{key}"] if mechanism else []) + [key]:
            if setting in overrides:
                return BROKER_KEYS[key].parse(setting, overrides[setting])
        return self[key]

    def _check_cluster(self, controller_names: set[str]) -> None:
        voters = self.quorum_voters
        if "controller" in self.roles:
            if self.node_id not in voters:
                raise ConfigError(f"node.id {self.node_id} is a controller but not one of controller.quorum.voters {sorted(voters)}")
            if len(self.controller_listeners) != 1:
                raise ConfigError(f"listeners needs exactly one listener named in controller.listener.names ({', '.join(sorted(controller_names))})")
        else:
            if not voters and not self.quorum_bootstrap:
                raise ConfigError("a broker-only node needs controller.quorum.voters or controller.quorum.bootstrap.servers")
            if self.node_id in voters:
                raise ConfigError(f"node.id {self.node_id} is one of controller.quorum.voters but process.roles has no controller")
            if self.controller_listeners:
                raise ConfigError("a broker-only node does not listen on the controller listener: remove it from listeners")
        if "broker" in self.roles and not self.client_listeners:
            raise ConfigError("listeners needs a listener for clients besides the controller listener")
        if "broker" not in self.roles and self.client_listeners:
            raise ConfigError(f"a controller-only node serves no clients: listeners {[l.name for l in self.client_listeners]} are not controller listeners")
        if self["advertised.listeners"]:
            self.advertised_listeners = [l for l in self.advertised_listeners if l.name not in controller_names]
        inter_broker = self["inter.broker.listener.name"]
        if inter_broker and "broker" in self.roles and inter_broker not in {l.name for l in self.client_listeners}:
            raise ConfigError(f"inter.broker.listener.name={inter_broker} names none of the listeners besides the controller's")
        if not self["cluster.id"] and voters:  # every node derives the same one (else: learned from the quorum)
            self._values["cluster.id"] = cluster_id_for(voters)

    @property
    def cluster_mode(self) -> bool:
        return self._cluster

    @property
    def is_broker(self) -> bool:
        return "broker" in self.roles

    @property
    def is_voter(self) -> bool:
        return self._cluster and "controller" in self.roles

    @classmethod
    def load(
        cls,
        config_file: str | os.PathLike[str] | None = None,
        overrides: Iterable[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> "BrokerConfig":
        values: dict[str, str] = {}
        if config_file is not None:
            values.update(read_properties(config_file, "config file"))
        values.update(env_overrides(os.environ if environ is None else environ))
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--override expects KEY=VALUE, got {item!r}")
            values[key.strip()] = value.strip()
        return cls(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    @property
    def node_id(self) -> int:
        return self["node.id"]

    @property
    def log_dirs(self) -> list[Path]:
        text = self["log.dirs"] or self["log.dir"]
        return [Path(p.strip()) for p in text.split(",") if p.strip()]

    def retention_ms(self) -> int:
        if self["log.retention.ms"] is not None:
            return self["log.retention.ms"]
        if self["log.retention.minutes"] is not None:
            return self["log.retention.minutes"] * 60_000
        hours = self["log.retention.hours"]
        return -1 if hours < 0 else hours * 3_600_000

    def roll_ms(self) -> int:
        if self["log.roll.ms"] is not None:
            return self["log.roll.ms"]
        return self["log.roll.hours"] * 3_600_000

    def topic_defaults(self) -> dict[str, Any]:
        """Every topic config with the value the broker's settings give it."""
        out = {}
        for key in TOPIC_CONFIGS.values():
            if key.name == "retention.ms":
                out[key.name] = self.retention_ms()
            elif key.name == "segment.ms":
                out[key.name] = self.roll_ms()
            elif key.broker_key and key.broker_key in self._values:
                out[key.name] = self._values[key.broker_key]
            else:
                out[key.name] = key.default
        return out

    def items(self) -> list[tuple[str, Any]]:
        return sorted(self._values.items())


def validate_topic_configs(configs: Mapping[str, Optional[str]], *, warn: bool = True) -> dict[str, Any]:
    """Parses topic-level overrides; raises ConfigError for unknown keys or bad values. Keys
    that have no effect here are logged (`warn`) when a client sets them."""
    out = {}
    for key, raw in configs.items():
        spec = TOPIC_CONFIGS.get(key)
        if spec is None:
            raise ConfigError(f"unknown topic config {key!r}")
        if raw is None:
            raise ConfigError(f"topic config {key} needs a value")
        out[key] = spec.parse(key, raw)
        if spec.no_effect and warn:
            log.warning("topic config %s=%s is accepted, as Kafka 3 accepts it, but has no effect in fastlog", key, raw)
    return out


def config_text(value: Any) -> str:
    """A config value as Kafka shows it (`true`, not `True`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
