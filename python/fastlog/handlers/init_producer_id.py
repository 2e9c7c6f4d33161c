"""InitProducerId (22): hand an idempotent producer its id and epoch.

v0-v5. Ids come from a block reserved on disk (`producer-id-block`), or in a cluster from a
block the controller gives this broker, so an id is never handed out twice (while no block
can be had: COORDINATOR_LOAD_IN_PROGRESS, which clients retry, as Kafka answers). As in Kafka, a producer without a transactional id gets a
new id with epoch 0 every time, whatever id and epoch it sends (v3+ fields are for
transactional producers). A transactional id goes to the transaction coordinator
(`TransactionCoordinator.init_producer_id`: the id's producer id with a new epoch, fencing older
producers and aborting a transaction left open; INVALID_TRANSACTION_TIMEOUT above
transaction.max.timeout.ms). Sequences are checked per partition by the Rust core.
"""

from __future__ import annotations

import logging

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.producer_ids import ProducerIdsUnavailable
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType
from fastlog.transaction_coordinator import as_version_knows

log = logging.getLogger(__name__)
R = protocol.InitProducerIdResponse


def may_write_idempotently(ctx: RequestContext) -> bool:
    """An idempotent producer needs IDEMPOTENT_WRITE on the cluster, or WRITE on some topic
    (KIP-679: Kafka 3's producers are idempotent by default)."""
    authorizer = ctx.broker.authorizer
    if authorizer is None or ctx.allows(Operation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, log_denied=False):
        return True
    if authorizer.authorize_any(ctx.principal, ctx.host, Operation.WRITE, ResourceType.TOPIC):
        return True
    return ctx.allows(Operation.IDEMPOTENT_WRITE, ResourceType.CLUSTER)  # denied: logged and counted


@handles(22, 0, 5)
async def handle(ctx: RequestContext, request):
    if request.transactional_id is not None and not ctx.allows(Operation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id):
        return R(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, producer_id=-1, producer_epoch=-1)
    if request.transactional_id is None and not may_write_idempotently(ctx):
        return R(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, producer_id=-1, producer_epoch=-1)
    if request.transactional_id is not None:
        producer_id, epoch = (request.producer_id, request.producer_epoch) if ctx.api_version >= 3 else (-1, -1)
        error, producer_id, epoch = await ctx.broker.transactions.init_producer_id(
            request.transactional_id, request.transaction_timeout_ms, producer_id, epoch
        )
        return R(error_code=as_version_knows(error, ctx.api_version, 4), producer_id=producer_id, producer_epoch=epoch)
    try:
        producer_id = await ctx.broker.producer_ids.next_id()
    except ProducerIdsUnavailable as e:
        log.warning("no producer id for %s: %s", ctx.peer, e)
        return R(error_code=ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, producer_id=-1, producer_epoch=-1)
    return R(error_code=0, producer_id=producer_id, producer_epoch=0)
