"""FindCoordinator (10): which broker coordinates a group (or a transactional id).

v0-v6. v0-v3 ask for one key (v0: a group; v1+ `key_type`), v4+ for a batch of
`coordinator_keys` with one answer each. Key type 0 (group): this broker, the only one;
`__consumer_offsets` is created here when missing, as Kafka does. Key type 1 (transaction):
COORDINATOR_NOT_AVAILABLE until transactions exist; other types: INVALID_REQUEST.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode

R = protocol.FindCoordinatorResponse
GROUP, TRANSACTION = 0, 1


async def lookup(ctx: RequestContext, key: str, key_type: int) -> tuple[int, str | None]:
    """(error, message) for one key; NONE means this broker coordinates it."""
    if key_type == TRANSACTION:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE, "transactions are not supported yet"
    if key_type != GROUP:
        return ErrorCode.INVALID_REQUEST, f"unknown coordinator key type {key_type}"
    if not key:
        return ErrorCode.INVALID_REQUEST, "empty group id"
    await ctx.broker.groups.store.ensure_topic()
    return ErrorCode.NONE, None


@handles(10, 0, 6)
async def handle(ctx: RequestContext, request):
    host, port = ctx.broker.advertised_address()
    node = ctx.broker.node_id
    if ctx.api_version < 4:
        error, message = await lookup(ctx, request.key, request.key_type)
        found = error == ErrorCode.NONE
        response = R(throttle_time_ms=0, error_code=error, node_id=node if found else -1,
                     host=host if found else "", port=port if found else -1)
        if ctx.api_version >= 1:
            response.error_message = message
        return response
    coordinators = []
    for key in request.coordinator_keys:
        error, message = await lookup(ctx, key, request.key_type)
        found = error == ErrorCode.NONE
        coordinators.append(R.Coordinator(key=key, node_id=node if found else -1, host=host if found else "",
                                          port=port if found else -1, error_code=error, error_message=message))
    return R(throttle_time_ms=0, coordinators=coordinators)
