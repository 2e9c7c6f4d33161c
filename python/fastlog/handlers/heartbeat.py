"""Heartbeat (12): a member says it is alive; the answer says whether to rejoin.

v0-v4 (v3+ `group_instance_id`). NONE in Stable and CompletingRebalance,
REBALANCE_IN_PROGRESS while the group prepares a rebalance (the member must rejoin);
UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID, COORDINATOR_LOAD_IN_PROGRESS.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.security.acls import Operation, ResourceType
from fastlog.protocol import ErrorCode

R = protocol.HeartbeatResponse


@handles(12, 0, 4)
async def handle(ctx: RequestContext, request):
    if not ctx.allows(Operation.READ, ResourceType.GROUP, request.group_id):
        return R(throttle_time_ms=0, error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    instance = request.group_instance_id if ctx.api_version >= 3 else None
    error = ctx.broker.groups.heartbeat(request.group_id, request.generation_id, request.member_id, instance)
    return R(throttle_time_ms=0, error_code=error)
