"""DescribeClientQuotas (48, v0-1) and AlterClientQuotas (49, v0-1): client quotas
(`fastlog.quotas`).

As Kafka: Describe needs DESCRIBE_CONFIGS on the cluster, Alter ALTER_CONFIGS. Describe's
filter is a list of components (entity type, match type 0 a name, 1 the default, 2 any
name); a bad filter (unknown match type, an entity type twice) is INVALID_REQUEST. Alter
answers each entry: an invalid entity, key or value, or an entity given twice, is
INVALID_REQUEST with the reason, and none of that entry's changes is made; `validate_only`
checks without changing anything.
"""

from __future__ import annotations

from typing import Optional

from fastlog import protocol, quotas
from fastlog.handlers import RequestContext, handles
from fastlog.log_manager import TopicError
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType

ADMIN_TIMEOUT_SECONDS = 30.0
ENTITY_TYPES = (quotas.USER, quotas.CLIENT_ID, quotas.IP)


@handles(48, 0, 1)
async def describe(ctx: RequestContext, request):
    R = protocol.DescribeClientQuotasResponse
    if not ctx.allows(Operation.DESCRIBE_CONFIGS, ResourceType.CLUSTER):
        return R(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message="Cluster authorization failed", entries=None)
    components = [(c.entity_type, c.match_type, c.match) for c in request.components]
    problem = _filter_problem(components)
    if problem is not None:
        return R(throttle_time_ms=0, error_code=ErrorCode.INVALID_REQUEST, error_message=problem, entries=None)
    found = quotas.describe(ctx.broker.quotas.store.entries(), components, request.strict)
    entries = [
        R.EntryData(
            entity=[R.EntityData(entity_type=t, entity_name=n) for t, n in entity],
            values=[R.ValueData(key=k, value=v) for k, v in sorted(values.items())],
        )
        for entity, values in sorted(found.items(), key=lambda e: str(e[0]))
    ]
    return R(throttle_time_ms=0, error_code=0, error_message=None, entries=entries)


def _filter_problem(components: list[tuple[str, int, Optional[str]]]) -> Optional[str]:
    types = [c[0] for c in components]
    if len(set(types)) != len(types):
        return "Duplicate entity type in the filter"
    for entity_type, match_type, _ in components:
        if match_type not in (0, 1, 2):
            return f"Unknown match type {match_type}"
        if not entity_type:
            return "An empty entity type in the filter"
    return None


@handles(49, 0, 1)
async def alter(ctx: RequestContext, request):
    R = protocol.AlterClientQuotasResponse
    results = []
    changes: list[tuple[quotas.Entity, str, Optional[float]]] = []
    allowed = ctx.allows(Operation.ALTER_CONFIGS, ResourceType.CLUSTER)
    seen: set = set()
    for entry in request.entries:
        entity = quotas.entity_of((e.entity_type, e.entity_name) for e in entry.entity)
        if not allowed:
            error = (ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed")
        else:
            problem = _entry_problem(entity, entry.ops, seen)
            error = (ErrorCode.INVALID_REQUEST, problem) if problem else (0, None)
        seen.add(entity)
        if not error[0]:
            changes += [(entity, op.key, None if op.remove else float(op.value)) for op in entry.ops]
        results.append((entry, error))
    if changes and not request.validate_only:
        try:
            await ctx.broker.quotas.store.change(changes, ADMIN_TIMEOUT_SECONDS)
        except TopicError as e:  # the cluster's quorum did not take the change in time
            results = [(entry, error if error[0] else (e.error_code, e.message)) for entry, error in results]
    return R(throttle_time_ms=0, entries=[
        R.EntryData(error_code=code, error_message=message,
                    entity=[R.EntityData(entity_type=e.entity_type, entity_name=e.entity_name) for e in entry.entity])
        for entry, (code, message) in results
    ])


def _entry_problem(entity: quotas.Entity, ops, seen: set) -> Optional[str]:
    if not entity:
        return "The entity is empty"
    unknown = [t for t, _ in entity if t not in ENTITY_TYPES]
    if unknown:
        return f"Unknown entity type {unknown[0]!r}"
    problem = quotas.entity_problem(entity)
    if problem is not None:
        return f"Invalid quota entity: {problem}"
    if entity in seen:
        return "The same entity is given twice in one request"
    keys = [op.key for op in ops]
    if len(set(keys)) != len(keys):
        return "A quota key is given twice for one entity"
    for op in ops:
        problem = quotas.key_problem(entity, op.key, None if op.remove else op.value)
        if problem is not None:
            return problem
    return None
