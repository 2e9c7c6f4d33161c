"""CreateTopics (19): create topics, or only check that they could be (`validate_only`, v1+).

v0-v7. Per topic, in Kafka's order of checks: a name given twice in one request gets
INVALID_REQUEST (once); an illegal name INVALID_TOPIC_EXCEPTION; an existing topic
TOPIC_ALREADY_EXISTS. Without a manual assignment, `num_partitions` -1 means `num.partitions`
(0 or below -1: INVALID_PARTITIONS) and `replication_factor` -1 means
`default.replication.factor` (0 or below -1, or above the live brokers: INVALID_REPLICATION_FACTOR); in a cluster the
controller spreads the replicas over the live brokers.
A manual assignment needs both set to -1 (as Kafka's controller requires), partitions numbered
0..n-1, and replica lists of registered brokers, each once, all of one length (a single node:
exactly [this node]); else INVALID_REPLICA_ASSIGNMENT. The topic gets one partition per
assignment. Configs are checked like Kafka's LogConfig: unknown
keys, null or bad values give INVALID_CONFIG. v1+ carry an error message; v5+ answer with the
partition count, replication factor and every config with its source; v7 with the topic id.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Optional

from fastlog import protocol
from fastlog.config import ConfigError, validate_topic_configs
from fastlog.handlers import RequestContext, handles
from fastlog.handlers.configs import AdminError, check_replicas, check_single_replica, duplicates, topic_config_entries
from fastlog.log_manager import TopicError, topic_name_problem
from fastlog.topic_admin import partition_limit_error
from fastlog.protocol import ErrorCode
from fastlog.quotas import MutationQuota
from fastlog.security.acls import Operation, ResourceType

log = logging.getLogger(__name__)
R = protocol.CreateTopicsResponse


def error_result(name: str, code: int, message: str) -> object:
    return R.CreatableTopicResult(name=name, error_code=code, error_message=message)


def partition_count(ctx: RequestContext, topic) -> tuple[int, int, Optional[list[list[int]]]]:
    """The partition count, replication factor and manual assignment (or None) `topic` asks
    for; AdminError when its layout is impossible."""
    node = ctx.broker.node_id
    if topic.assignments:
        if topic.replication_factor != -1:
            raise AdminError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                "A manual partition assignment was specified, but replication factor was not set to -1.",
            )
        if topic.num_partitions != -1:
            raise AdminError(
                ErrorCode.INVALID_PARTITIONS,
                "A manual partition assignment was specified, but numPartitions was not set to -1.",
            )
        indexes = sorted(a.partition_index for a in topic.assignments)
        if indexes != list(range(len(indexes))):
            raise AdminError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT, "partitions should be a consecutive 0-based integer sequence"
            )
        replicas = [list(a.broker_ids) for a in sorted(topic.assignments, key=lambda a: a.partition_index)]
        if ctx.broker.controller is None:
            for index, ids in enumerate(replicas):
                check_single_replica(node, ids, f"partition {index}")
            return len(indexes), 1, None
        for index, ids in enumerate(replicas):
            check_replicas(set(ctx.broker.controller.image.brokers), ids, f"partition {index}")
        if len({len(ids) for ids in replicas}) != 1:
            raise AdminError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "All partitions should have the same number of replicas")
        return len(indexes), len(replicas[0]), replicas
    count = topic.num_partitions
    if count == -1:
        count = ctx.broker.config["num.partitions"]
    if count <= 0:
        raise AdminError(ErrorCode.INVALID_PARTITIONS, "Number of partitions was set to an invalid non-positive value.")
    factor = topic.replication_factor
    if factor == -1:
        factor = ctx.broker.config["default.replication.factor"]
    if factor <= 0:
        raise AdminError(
            ErrorCode.INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0, or -1 to use the default value."
        )
    brokers = len(ctx.broker.live_brokers())
    if factor > brokers:
        raise AdminError(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            f"Unable to replicate the partition {factor} time(s): The target replication factor of {factor} "
            f"cannot be reached because only {brokers} broker(s) are registered.",
        )
    return count, factor, None


def parse_configs(topic) -> dict[str, Any]:
    try:
        return validate_topic_configs({c.name: c.value for c in topic.configs})
    except ConfigError as e:
        raise AdminError(ErrorCode.INVALID_CONFIG, str(e)) from None


async def create_one(ctx: RequestContext, topic, validate_only: bool) -> object:
    topics = ctx.broker.topics
    name = topic.name
    if not (ctx.allows(Operation.CREATE, ResourceType.CLUSTER, log_denied=False) or ctx.allows(Operation.CREATE, ResourceType.TOPIC, name)):
        return error_result(name, ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")
    problem = topic_name_problem(name)
    if problem:
        return error_result(name, ErrorCode.INVALID_TOPIC_EXCEPTION, problem)
    if topics.get(name) is not None:
        return error_result(name, ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
    try:
        count, factor, replicas = partition_count(ctx, topic)
        configs = parse_configs(topic)
    except AdminError as e:
        return error_result(name, e.error_code, e.message)
    if limit := partition_limit_error(ctx.broker, count, count, len(replicas[0]) if replicas else factor):
        return error_result(name, limit.error_code, limit.message)
    topic_id = uuid.UUID(int=0)
    if not validate_only:
        try:
            created = await topics.create(name, count, configs, factor, replicas)
        except TopicError as e:
            return error_result(name, e.error_code, e.message)
        topic_id = created.id
        log.info("%s created topic %s (%d partitions, replication factor %d)", ctx.peer, name, count, factor)
    return success_result(ctx, name, topic_id, count, configs, factor)


def success_result(ctx: RequestContext, name: str, topic_id: uuid.UUID, count: int, configs: dict[str, Any], factor: int = 1) -> object:
    result = R.CreatableTopicResult(name=name, topic_id=topic_id, error_code=0, error_message=None)
    if ctx.api_version >= 5 and not ctx.allows(Operation.DESCRIBE_CONFIGS, ResourceType.TOPIC, name, log_denied=False):
        result.topic_config_error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        result.num_partitions = result.replication_factor = -1
    elif ctx.api_version >= 5:
        effective = {**ctx.broker.logs.defaults, **configs}
        result.num_partitions = count
        result.replication_factor = factor
        result.configs = [
            R.CreatableTopicConfigs(
                name=e.name, value=e.value, read_only=e.read_only, config_source=e.source, is_sensitive=False
            )
            for e in topic_config_entries(ctx.broker.config, effective, configs)
        ]
    return result


@handles(19, 0, 7)
async def handle(ctx: RequestContext, request):
    validate_only = bool(ctx.api_version >= 1 and request.validate_only)
    repeated = duplicates(t.name for t in request.topics)
    results = [
        error_result(name, ErrorCode.INVALID_REQUEST, "Duplicate topic name.") for name in sorted(repeated)
    ]
    mutations = MutationQuota(ctx.broker.quotas, ctx.principal, ctx.header.client_id, strict=ctx.api_version >= 6)
    async with ctx.broker.topic_changes():
        for topic in request.topics:
            if topic.name in repeated:
                continue
            if mutations.exceeded():
                results.append(error_result(topic.name, ErrorCode.THROTTLING_QUOTA_EXCEEDED, MutationQuota.REFUSAL))
                continue
            created = await create_one(ctx, topic, validate_only)
            if not created.error_code and not validate_only:
                mutations.charge(partitions_asked(ctx, topic))
            results.append(created)
    for refused in (r for r in results if r.error_code):
        log.info("%s: creating topic %s refused with %s: %s", ctx.peer, refused.name, ErrorCode(refused.error_code).name, refused.error_message)
    return R(throttle_time_ms=mutations.throttle_ms, topics=results)


def partitions_asked(ctx: RequestContext, topic) -> int:
    if topic.assignments:
        return len(topic.assignments)
    return topic.num_partitions if topic.num_partitions > 0 else ctx.broker.config["num.partitions"]
