"""JoinGroup (11): join a group and wait for the rebalance to complete.

v0-v9. The response is parked until the group's rebalance completes (or fails for this
member). v0 has no rebalance timeout (the session timeout serves); v4+ members without a
member id get MEMBER_ID_REQUIRED with a new id and must rejoin with it (KIP-394); v5+ carry
`group_instance_id` (static membership, KIP-345); v7+ answer with the protocol type and a
nullable protocol name; v9 tells a static leader rejoining a stable group to skip assignment.
Errors: COORDINATOR_LOAD_IN_PROGRESS, INVALID_GROUP_ID, INVALID_SESSION_TIMEOUT,
INCONSISTENT_GROUP_PROTOCOL, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, MEMBER_ID_REQUIRED,
REBALANCE_IN_PROGRESS.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.security.acls import Operation, ResourceType
from fastlog.protocol import ErrorCode

R = protocol.JoinGroupResponse


def client_host(ctx: RequestContext) -> str:
    return "/" + ctx.peer.rsplit(":", 1)[0]


@handles(11, 0, 9)
async def handle(ctx: RequestContext, request):
    v = ctx.api_version
    if not ctx.allows(Operation.READ, ResourceType.GROUP, request.group_id):
        return R(throttle_time_ms=0, error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, generation_id=-1,
                 protocol_name=None if v >= 7 else "", leader="", member_id="", members=[])
    result = await ctx.broker.groups.join(
        request.group_id,
        request.member_id,
        request.group_instance_id if v >= 5 else None,
        ctx.header.client_id or "",
        client_host(ctx),
        request.session_timeout_ms,
        request.rebalance_timeout_ms if v >= 1 else request.session_timeout_ms,
        request.protocol_type,
        [(p.name, p.metadata) for p in request.protocols],
        require_known_member_id=v >= 4,
        api_version=v,
    )
    members = [
        R.JoinGroupResponseMember(member_id=m, group_instance_id=i if v >= 5 else None, metadata=meta)
        for m, i, meta in result.members
    ]
    response = R(
        throttle_time_ms=0,
        error_code=result.error,
        generation_id=result.generation,
        protocol_name=result.protocol_name if v >= 7 else (result.protocol_name or ""),
        leader=result.leader,
        member_id=result.member_id,
        members=members,
    )
    if v >= 7:
        response.protocol_type = result.protocol_type
    if v >= 9:
        response.skip_assignment = result.skip_assignment
    return response
