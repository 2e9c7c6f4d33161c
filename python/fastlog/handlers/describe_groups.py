"""DescribeGroups (15): state, protocol and members of groups.

v0-v5 (v3+ authorized operations when asked; v4+ group instance ids). Members' metadata
and assignments are shown in Stable only (as Kafka does). An unknown group is described as
Dead with no members and no error (v6's GROUP_ID_NOT_FOUND is not offered).
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.group_coordinator import GroupState
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType

R = protocol.DescribeGroupsResponse


def describe(ctx: RequestContext, group_id: str, include_operations: bool) -> object:
    coordinator = ctx.broker.groups
    ops = ctx.authorized_operations(ResourceType.GROUP, group_id) if include_operations else -2147483648
    if not ctx.allows(Operation.DESCRIBE, ResourceType.GROUP, group_id):
        return R.DescribedGroup(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, group_id=group_id,
                                group_state="", protocol_type="", protocol_data="", authorized_operations=-2147483648)
    if coordinator.unavailable():  # NOT_COORDINATOR elsewhere in a cluster, or still loading
        return R.DescribedGroup(error_code=coordinator.unavailable(), group_id=group_id,
                                group_state="", protocol_type="", protocol_data="", authorized_operations=ops)
    group = coordinator.describe(group_id)
    if group is None:
        return R.DescribedGroup(error_code=0, group_id=group_id, group_state=GroupState.DEAD.value,
                                protocol_type="", protocol_data="", authorized_operations=ops)
    stable = group.state == GroupState.STABLE
    members = [
        R.DescribedGroupMember(
            member_id=m.member_id,
            group_instance_id=m.group_instance_id if ctx.api_version >= 4 else None,
            client_id=m.client_id,
            client_host=m.client_host,
            member_metadata=m.metadata(group.protocol_name) if stable else b"",
            member_assignment=m.assignment if stable else b"",
        )
        for m in group.members.values()
    ]
    return R.DescribedGroup(
        error_code=0,
        group_id=group_id,
        group_state=group.state.value,
        protocol_type=group.protocol_type or "",
        protocol_data=(group.protocol_name or "") if stable else "",
        members=members,
        authorized_operations=ops,
    )


@handles(15, 0, 5)
async def handle(ctx: RequestContext, request):
    include = ctx.api_version >= 3 and request.include_authorized_operations
    return R(throttle_time_ms=0, groups=[describe(ctx, g, include) for g in request.groups])
