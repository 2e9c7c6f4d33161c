"""InitProducerId (22): hand an idempotent producer its id and epoch.

v0-v5. Ids come from a block reserved on disk (`producer-id-block`), so an id is never
handed out twice across restarts. A producer that asks again with its id and epoch (v3+,
KIP-360) gets the epoch bumped. Transactions are not supported yet: a transactional id is
refused with INVALID_REQUEST and a log line. Full sequence checking is the delivery issue's.
"""

from __future__ import annotations

import logging

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode

log = logging.getLogger(__name__)
R = protocol.InitProducerIdResponse
MAX_EPOCH = 32767


@handles(22, 0, 5)
async def handle(ctx: RequestContext, request):
    if request.transactional_id is not None:
        log.warning("refused transactional producer %r from %s: transactions are not supported yet", request.transactional_id, ctx.peer)
        return R(error_code=ErrorCode.INVALID_REQUEST, producer_id=-1, producer_epoch=-1)
    if request.producer_id >= 0 and 0 <= request.producer_epoch < MAX_EPOCH - 1:
        return R(error_code=0, producer_id=request.producer_id, producer_epoch=request.producer_epoch + 1)
    producer_id = await ctx.broker.producer_ids.next_id()
    return R(error_code=0, producer_id=producer_id, producer_epoch=0)
