"""AddOffsetsToTxn (25): add a group's `__consumer_offsets` partition to a transaction, so that
the offsets the producer then commits with TxnOffsetCommit take effect with it.

v0-v4. Needs WRITE on the transactional id and READ on the group.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType
from fastlog.transaction_coordinator import as_version_knows

R = protocol.AddOffsetsToTxnResponse


@handles(25, 0, 4)
async def handle(ctx: RequestContext, request):
    if not ctx.allows(Operation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id):
        return R(throttle_time_ms=0, error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    if not ctx.allows(Operation.READ, ResourceType.GROUP, request.group_id):
        return R(throttle_time_ms=0, error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    if not request.group_id:
        return R(throttle_time_ms=0, error_code=ErrorCode.INVALID_GROUP_ID)
    coordinator = ctx.broker.transactions
    partition = coordinator.offsets_partition(request.group_id)
    errors = await coordinator.add_partitions(request.transactional_id, request.producer_id, request.producer_epoch, [partition])
    return R(throttle_time_ms=0, error_code=as_version_knows(errors[partition], ctx.api_version, 2))
