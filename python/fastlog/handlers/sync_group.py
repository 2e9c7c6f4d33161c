"""SyncGroup (14): the leader hands out assignments; every member waits for its own.

v0-v5. In CompletingRebalance the response is parked until the leader's SyncGroup arrives
(which moves the group to Stable and stores it); in Stable the member's assignment is
returned at once. v5+ carry the protocol type and name, checked against the group's
(INCONSISTENT_GROUP_PROTOCOL). Errors: REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION,
UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, COORDINATOR_LOAD_IN_PROGRESS.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.security.acls import Operation, ResourceType
from fastlog.protocol import ErrorCode

R = protocol.SyncGroupResponse


@handles(14, 0, 5)
async def handle(ctx: RequestContext, request):
    v = ctx.api_version
    if not ctx.allows(Operation.READ, ResourceType.GROUP, request.group_id):
        return R(throttle_time_ms=0, error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, assignment=b"")
    result = await ctx.broker.groups.sync(
        request.group_id,
        request.generation_id,
        request.member_id,
        request.group_instance_id if v >= 3 else None,
        request.protocol_type if v >= 5 else None,
        request.protocol_name if v >= 5 else None,
        {a.member_id: a.assignment for a in request.assignments},
    )
    response = R(throttle_time_ms=0, error_code=result.error, assignment=result.assignment)
    if v >= 5:
        response.protocol_type = result.protocol_type
        response.protocol_name = result.protocol_name
    return response
