"""CreatePartitions (37): add partitions to existing topics.

v0-v3 (same semantics; v2+ flexible). Counts only grow: a count equal to or below the current
one is INVALID_PARTITIONS with a message saying which. `assignments`, when given, must list
one replica set per new partition (else INVALID_REPLICA_ASSIGNMENT), of registered brokers, each
once (a single node: exactly [this node]).
An unknown topic is UNKNOWN_TOPIC_OR_PARTITION; a topic named twice INVALID_REQUEST.
`validate_only` checks without adding. The new partitions are created empty and persisted,
so the count survives a restart.
"""

from __future__ import annotations

import logging

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.handlers.configs import AdminError, check_replicas, check_single_replica, duplicates
from fastlog.log_manager import TopicError
from fastlog.topic_admin import partition_limit_error, replication_factor_of
from fastlog.protocol import ErrorCode
from fastlog.quotas import MutationQuota
from fastlog.security.acls import Operation, ResourceType

log = logging.getLogger(__name__)
R = protocol.CreatePartitionsResponse


def result(name: str, code: int = 0, message=None) -> object:
    return R.CreatePartitionsTopicResult(name=name, error_code=code, error_message=message)


def check(ctx: RequestContext, wanted) -> int:
    """How many partitions to add; AdminError when the request cannot be met."""
    topic = ctx.broker.topics.get(wanted.name)
    if topic is None:
        raise AdminError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{wanted.name}' does not exist.")
    current = topic.partitions
    if wanted.count < current:
        raise AdminError(
            ErrorCode.INVALID_PARTITIONS,
            f"Topic currently has {current} partitions, which is higher than the requested {wanted.count}.",
        )
    if wanted.count == current:
        raise AdminError(ErrorCode.INVALID_PARTITIONS, f"Topic already has {current} partitions.")
    added = wanted.count - current
    if limit := partition_limit_error(ctx.broker, wanted.count, added, replication_factor_of(ctx.broker.topics.get(wanted.name))):
        raise AdminError(limit.error_code, limit.message)
    if wanted.assignments is not None:
        if len(wanted.assignments) != added:
            raise AdminError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"Attempted to add {added} additional partitions, but {len(wanted.assignments)} assignments were given.",
            )
        for offset, assignment in enumerate(wanted.assignments):
            what = f"partition {current + offset}"
            if ctx.broker.controller is None:
                check_single_replica(ctx.broker.node_id, assignment.broker_ids, what)
            else:
                check_replicas(set(ctx.broker.controller.image.brokers), assignment.broker_ids, what)
    return added


async def grow(ctx: RequestContext, wanted, validate_only: bool) -> object:
    if not ctx.allows(Operation.ALTER, ResourceType.TOPIC, wanted.name):
        return result(wanted.name, ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")
    try:
        check(ctx, wanted)
    except AdminError as e:
        return result(wanted.name, e.error_code, e.message)
    if validate_only:
        return result(wanted.name)
    try:
        replicas = [list(a.broker_ids) for a in wanted.assignments] if wanted.assignments is not None else None
        await ctx.broker.topics.add_partitions(wanted.name, wanted.count, replicas)
    except TopicError as e:
        return result(wanted.name, e.error_code, e.message)
    log.info("%s grew topic %s to %d partitions", ctx.peer, wanted.name, wanted.count)
    return result(wanted.name)


@handles(37, 0, 3)
async def handle(ctx: RequestContext, request):
    repeated = duplicates(t.name for t in request.topics)
    results = [result(name, ErrorCode.INVALID_REQUEST, "Duplicate topic name.") for name in sorted(repeated)]
    mutations = MutationQuota(ctx.broker.quotas, ctx.principal, ctx.header.client_id, strict=ctx.api_version >= 3)
    async with ctx.broker.topic_changes():
        for wanted in request.topics:
            if wanted.name in repeated:
                continue
            if mutations.exceeded():
                results.append(result(wanted.name, ErrorCode.THROTTLING_QUOTA_EXCEEDED, MutationQuota.REFUSAL))
                continue
            before = ctx.broker.topics.get(wanted.name)
            grown = await grow(ctx, wanted, request.validate_only)
            if not grown.error_code and not request.validate_only and before is not None:
                mutations.charge(wanted.count - len(before.assignments))
            results.append(grown)
    return R(throttle_time_ms=mutations.throttle_ms, results=results)
