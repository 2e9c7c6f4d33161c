"""FindCoordinator (10): which broker coordinates a group (or a transactional id).

v0-v6. v0-v3 ask for one key (v0: a group; v1+ `key_type`), v4+ for a batch of
`coordinator_keys` with one answer each. Key type 0 (group): the broker hosting
`__consumer_offsets` (this one when alone; in a cluster where the controller placed it), which
is created when missing, as Kafka does. Key type 1 (transaction): the broker hosting
`__transaction_state` (created likewise). Other types: INVALID_REQUEST.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.log_manager import TopicError
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType

R = protocol.FindCoordinatorResponse
GROUP, TRANSACTION = 0, 1


NOT_FOUND = (-1, "", -1)


async def lookup(ctx: RequestContext, key: str, key_type: int) -> tuple[int, str | None, tuple[int, str, int]]:
    """(error, message, (node id, host, port) of the coordinator) for one key."""
    if key_type == GROUP and not ctx.allows(Operation.DESCRIBE, ResourceType.GROUP, key):
        return ErrorCode.GROUP_AUTHORIZATION_FAILED, "Group authorization failed", NOT_FOUND
    if key_type == TRANSACTION and not ctx.allows(Operation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, key):
        return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "Transactional Id authorization failed", NOT_FOUND
    if key_type not in (GROUP, TRANSACTION):
        return ErrorCode.INVALID_REQUEST, f"unknown coordinator key type {key_type}", NOT_FOUND
    if not key:
        return ErrorCode.INVALID_REQUEST, "empty group id" if key_type == GROUP else "empty transactional id", NOT_FOUND
    store = ctx.broker.groups.store if key_type == GROUP else ctx.broker.transactions.store
    try:
        view = await store.ensure_view()
    except TopicError as e:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE, e.message, NOT_FOUND
    leader = view.assignments[0].leader  # the leader of partition 0 coordinates every group (transaction)
    for node, host, port, _ in ctx.broker.live_brokers(ctx.listener):
        if node == leader:
            return ErrorCode.NONE, None, (node, host, port)
    return ErrorCode.COORDINATOR_NOT_AVAILABLE, f"{store.topic} has no live leader (broker {leader})", NOT_FOUND


@handles(10, 0, 6)
async def handle(ctx: RequestContext, request):
    if ctx.api_version < 4:
        error, message, (node, host, port) = await lookup(ctx, request.key, request.key_type)
        response = R(throttle_time_ms=0, error_code=error, node_id=node, host=host, port=port)
        if ctx.api_version >= 1:
            response.error_message = message
        return response
    coordinators = []
    for key in request.coordinator_keys:
        error, message, (node, host, port) = await lookup(ctx, key, request.key_type)
        coordinators.append(R.Coordinator(key=key, node_id=node, host=host, port=port, error_code=error, error_message=message))
    return R(throttle_time_ms=0, coordinators=coordinators)
