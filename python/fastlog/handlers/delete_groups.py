"""DeleteGroups (42): delete empty groups with their committed offsets.

v0-v2. Tombstones for the group and each of its offsets are appended to
`__consumer_offsets`. Per-group errors: GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP (members
remain), COORDINATOR_LOAD_IN_PROGRESS.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.security.acls import Operation, ResourceType
from fastlog.protocol import ErrorCode

R = protocol.DeleteGroupsResponse


@handles(42, 0, 2)
async def handle(ctx: RequestContext, request):
    allowed = [g for g in request.groups_names if ctx.allows(Operation.DELETE, ResourceType.GROUP, g)]
    results = await ctx.broker.groups.delete_groups(allowed) if allowed else {}
    results = {g: results.get(g, ErrorCode.GROUP_AUTHORIZATION_FAILED) for g in request.groups_names}
    return R(
        throttle_time_ms=0,
        results=[R.DeletableGroupResult(group_id=g, error_code=results[g]) for g in request.groups_names],
    )
