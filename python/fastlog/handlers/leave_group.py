"""LeaveGroup (13): members leave a group, which then rebalances.

v0-v5. v0-v2 name one member; v3+ a batch of members (member id and/or group instance id;
an admin may remove a static member by instance id alone) answered one by one. Removing
the last member ends in an Empty group. Per-member errors: UNKNOWN_MEMBER_ID,
FENCED_INSTANCE_ID; group-level: COORDINATOR_LOAD_IN_PROGRESS, UNKNOWN_MEMBER_ID (unknown
group).
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.security.acls import Operation, ResourceType
from fastlog.protocol import ErrorCode

R = protocol.LeaveGroupResponse


@handles(13, 0, 5)
async def handle(ctx: RequestContext, request):
    if not ctx.allows(Operation.READ, ResourceType.GROUP, request.group_id):
        return R(throttle_time_ms=0, error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, members=[])
    if ctx.api_version < 3:
        error, errors = await ctx.broker.groups.leave(request.group_id, [(request.member_id, None)])
        return R(throttle_time_ms=0, error_code=error or (errors[0] if errors else 0))
    wanted = [(m.member_id, m.group_instance_id) for m in request.members]
    error, errors = await ctx.broker.groups.leave(request.group_id, wanted)
    members = [
        R.MemberResponse(member_id=m, group_instance_id=i, error_code=e) for (m, i), e in zip(wanted, errors)
    ]
    return R(throttle_time_ms=0, error_code=error, members=members)
