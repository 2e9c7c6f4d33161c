"""EndTxn (26): commit or abort a producer's transaction.

v0-v5. Answered once every partition of the transaction has its COMMIT or ABORT marker (and
the coordinator's state says so). Needs WRITE on the transactional id. Errors: PRODUCER_FENCED
(an older epoch), INVALID_PRODUCER_ID_MAPPING, INVALID_TXN_STATE (no open transaction, or the
other outcome already decided), CONCURRENT_TRANSACTIONS (markers being written: retried).
v5 (KIP-890 part 2) ends the transaction with a new epoch (markers carry it) and answers the
producer id and epoch for the next one; the same request sent again with the old epoch (its
answer lost) gets the same answer.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType
from fastlog.transaction_coordinator import as_version_knows

R = protocol.EndTxnResponse


@handles(26, 0, 5)
async def handle(ctx: RequestContext, request):
    if not ctx.allows(Operation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id):
        return R(throttle_time_ms=0, error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    bump = ctx.api_version >= 5
    error, producer_id, epoch = await ctx.broker.transactions.end_txn(
        request.transactional_id, request.producer_id, request.producer_epoch, request.committed, bump_epoch=bump
    )
    return R(throttle_time_ms=0, error_code=as_version_knows(error, ctx.api_version, 2), producer_id=producer_id, producer_epoch=epoch)
