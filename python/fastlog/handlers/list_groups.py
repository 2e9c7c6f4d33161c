"""ListGroups (16): the groups this coordinator knows.

v0-v5. v4+ filter by state (`states_filter`, case-insensitive; empty: all) and answer
with each group's state; v5+ filter by type (only "classic" groups exist here).
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType

R = protocol.ListGroupsResponse


@handles(16, 0, 5)
async def handle(ctx: RequestContext, request):
    coordinator = ctx.broker.groups
    if not coordinator.loaded:
        return R(throttle_time_ms=0, error_code=ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, groups=[])
    v = ctx.api_version
    states = {s.lower() for s in request.states_filter} if v >= 4 else set()
    types = {t.lower() for t in request.types_filter} if v >= 5 else set()
    groups = []
    every_group = ctx.allows(Operation.DESCRIBE, ResourceType.CLUSTER, log_denied=False)
    for group in coordinator.list_groups():
        if not every_group and not ctx.allows(Operation.DESCRIBE, ResourceType.GROUP, group.group_id, log_denied=False):
            continue  # the client sees only the groups it may describe
        if states and group.state.value.lower() not in states:
            continue
        if types and "classic" not in types:
            continue
        entry = R.ListedGroup(group_id=group.group_id, protocol_type=group.protocol_type or "")
        if v >= 4:
            entry.group_state = group.state.value
        if v >= 5:
            entry.group_type = "Classic"
        groups.append(entry)
    return R(throttle_time_ms=0, error_code=0, groups=groups)
