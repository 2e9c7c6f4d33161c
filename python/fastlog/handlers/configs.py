"""Config descriptions and checks shared by the admin handlers (CreateTopics, DescribeConfigs,
AlterConfigs, IncrementalAlterConfigs, CreatePartitions).

Config sources follow Kafka's ConfigSource ids: a topic override is DYNAMIC_TOPIC_CONFIG (1);
otherwise a topic config comes from its broker synonym, STATIC_BROKER_CONFIG (4) when that key
was set in the broker's configuration, else DEFAULT_CONFIG (5). Broker configs are
STATIC_BROKER_CONFIG or DEFAULT_CONFIG and read-only (no dynamic broker configs).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Optional

from fastlog.config import BROKER_KEYS, INT_MAX, TOPIC_CONFIGS, BrokerConfig, config_text
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType

# ConfigResource.Type ids.
TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8
# ConfigSource ids.
DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG, DYNAMIC_BROKER_LOGGER_CONFIG = 1, 4, 5, 6
# ConfigType ids (DescribeConfigs v3+).
BOOLEAN, STRING, INT, LONG, DOUBLE, LIST = 1, 2, 3, 5, 6, 7

# Broker keys a topic config takes its default from, most specific first (Kafka's synonyms).
TOPIC_SYNONYMS: dict[str, tuple[str, ...]] = {
    key.name: (key.broker_key,) if key.broker_key else () for key in TOPIC_CONFIGS.values()
}
TOPIC_SYNONYMS["retention.ms"] = ("log.retention.ms", "log.retention.minutes", "log.retention.hours")
TOPIC_SYNONYMS["segment.ms"] = ("log.roll.ms", "log.roll.hours")


@dataclass
class ConfigEntry:
    name: str
    value: Optional[str]
    source: int
    read_only: bool
    synonyms: list[tuple[str, Optional[str], int]]
    config_type: int
    doc: Optional[str]


class AdminError(Exception):
    """A per-resource failure: the Kafka error code and message to answer with."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


def config_type(parse: Any) -> int:
    """Kafka's ConfigDef type of a key, read off its parser."""
    name = getattr(parse, "__qualname__", "")
    if name.startswith("_bool"):
        return BOOLEAN
    if name.startswith("_list_of"):
        return LIST
    bounds = inspect.getclosurevars(parse).nonlocals if getattr(parse, "__closure__", None) else {}
    hi = bounds.get("hi")
    if isinstance(hi, float):
        return DOUBLE
    if isinstance(hi, int):
        return INT if hi <= INT_MAX else LONG
    return STRING


def _text(value: Any) -> Optional[str]:
    return None if value is None else config_text(value)


def topic_config_entries(config: BrokerConfig, effective: dict[str, Any], overrides: dict[str, Any]) -> list[ConfigEntry]:
    entries = []
    for name in sorted(effective):
        spec = TOPIC_CONFIGS[name]
        synonyms = []
        if name in overrides:
            synonyms.append((name, _text(overrides[name]), DYNAMIC_TOPIC_CONFIG))
        for broker_key in TOPIC_SYNONYMS[name]:
            if broker_key in config.explicit:
                synonyms.append((broker_key, _text(config[broker_key]), STATIC_BROKER_CONFIG))
        for broker_key in TOPIC_SYNONYMS[name]:
            if BROKER_KEYS[broker_key].default is not None:
                synonyms.append((broker_key, _text(BROKER_KEYS[broker_key].default), DEFAULT_CONFIG))
                break
        source = synonyms[0][2] if synonyms else DEFAULT_CONFIG
        entries.append(ConfigEntry(name, _text(effective[name]), source, False, synonyms, config_type(spec.parse), spec.doc))
    return entries


def broker_config_entries(config: BrokerConfig) -> list[ConfigEntry]:
    entries = []
    for name, value in config.items():
        spec = BROKER_KEYS[name]
        source = STATIC_BROKER_CONFIG if name in config.explicit else DEFAULT_CONFIG
        synonyms = [(name, _text(value), source)]
        if source == STATIC_BROKER_CONFIG and spec.default is not None:
            synonyms.append((name, _text(spec.default), DEFAULT_CONFIG))
        entries.append(ConfigEntry(name, _text(value), source, True, synonyms, config_type(spec.parse), spec.doc))
    return entries


# -- loggers (BROKER_LOGGER resources) -------------------------------------------------------

KAFKA_LEVELS = {"ALL": 1, "TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40, "FATAL": 50, "OFF": 60}
ROOT_LOGGER = "root"


def level_name(level: int) -> str:
    for name, value in sorted(KAFKA_LEVELS.items(), key=lambda kv: -kv[1]):
        if level >= value:
            return name
    return "ALL"


def logger_entries() -> list[ConfigEntry]:
    """The root logger and fastlog's named loggers with their effective levels."""
    names = sorted(n for n, l in logging.root.manager.loggerDict.items() if isinstance(l, logging.Logger))
    out = [ConfigEntry(ROOT_LOGGER, level_name(logging.root.level), DYNAMIC_BROKER_LOGGER_CONFIG, False, [], STRING, None)]
    for name in names:
        level = level_name(logging.getLogger(name).getEffectiveLevel())
        out.append(ConfigEntry(name, level, DYNAMIC_BROKER_LOGGER_CONFIG, False, [], STRING, None))
    return out


def parse_level(name: str, level: Optional[str]) -> int:
    """The Python level for a Kafka level name; None (DELETE) is NOTSET, except for root."""
    if level is None:
        if name == ROOT_LOGGER:
            raise AdminError(ErrorCode.INVALID_CONFIG, "the root logger's level cannot be removed")
        return logging.NOTSET
    value = KAFKA_LEVELS.get(level.strip().upper())
    if value is None:
        raise AdminError(
            ErrorCode.INVALID_CONFIG, f"cannot set logger {name} to {level!r}: not one of {', '.join(KAFKA_LEVELS)}"
        )
    return value


def set_logger_level(name: str, level: Optional[str]) -> None:
    """SET (level) or DELETE (None: back to the parent's level) of one logger."""
    value = parse_level(name, level)
    (logging.root if name == ROOT_LOGGER else logging.getLogger(name)).setLevel(value)


# -- resource checks ---------------------------------------------------------------------------


def check_broker_name(node_id: int, name: str) -> None:
    """A broker resource names this node or is "" (the cluster-wide default resource)."""
    if name == "":
        return
    try:
        wanted = int(name)
    except ValueError:
        raise AdminError(ErrorCode.INVALID_REQUEST, f"broker id must be an integer, not {name!r}") from None
    if wanted != node_id:
        raise AdminError(ErrorCode.INVALID_REQUEST, f"unexpected broker id: expected {node_id} or empty string, got {name}")


def duplicates(keys: Iterable[Any]) -> set[Any]:
    seen: set[Any] = set()
    out: set[Any] = set()
    for key in keys:
        (out if key in seen else seen).add(key)
    return out


def check_replicas(registered: set[int], broker_ids: list[int], what: str) -> None:
    """A manual assignment in a cluster: registered brokers, each once."""
    if not broker_ids:
        raise AdminError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"{what}: the replica list is empty")
    if len(set(broker_ids)) != len(broker_ids):
        raise AdminError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"{what}: duplicate brokers in {list(broker_ids)}")
    unknown = sorted(set(broker_ids) - registered)
    if unknown:
        raise AdminError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"{what}: brokers {unknown} are not registered")


def check_single_replica(node_id: int, broker_ids: list[int], what: str) -> None:
    """A manual assignment can only place each partition on this broker, once."""
    if not broker_ids:
        raise AdminError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"{what}: the replica list is empty")
    if list(broker_ids) != [node_id]:
        raise AdminError(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            f"{what}: replicas {list(broker_ids)} cannot be placed; the only broker is {node_id}",
        )


def config_refusal(ctx: Any, resource: Any, operation: int) -> Optional[tuple[int, str]]:
    """Why the ACLs refuse describing (DESCRIBE_CONFIGS) or altering (ALTER_CONFIGS) a
    resource's configs, or None: a topic's are checked on the topic, a broker's on the cluster."""
    if resource.resource_type == TOPIC:
        if not ctx.allows(operation, ResourceType.TOPIC, resource.resource_name):
            return ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Topic authorization failed"
    elif resource.resource_type in (BROKER, BROKER_LOGGER) and not ctx.allows(operation, ResourceType.CLUSTER):
        return ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed"
    return None


async def alter_each(
    ctx: Any,
    request: Any,
    alter: Callable[[Any, Any, bool], Awaitable[None]],
    result: Callable[..., Any],
) -> list:
    """AlterConfigs and IncrementalAlterConfigs: each resource altered under the admin lock,
    a resource named twice refused, failures answered per resource with their error."""
    repeated = duplicates((r.resource_type, r.resource_name) for r in request.resources)
    responses = []
    async with ctx.broker.topic_changes():
        for resource in request.resources:
            if (resource.resource_type, resource.resource_name) in repeated:
                responses.append(result(resource, ErrorCode.INVALID_REQUEST, "Duplicate resource."))
                continue
            refusal = config_refusal(ctx, resource, Operation.ALTER_CONFIGS)
            if refusal is not None:
                responses.append(result(resource, *refusal))
                continue
            try:
                await alter(ctx, resource, request.validate_only)
            except AdminError as e:
                responses.append(result(resource, e.error_code, e.message))
            else:
                responses.append(result(resource))
    return responses
