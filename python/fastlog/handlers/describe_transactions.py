"""DescribeTransactions (65): the coordinator's state of transactional ids.

v0. Per id: TRANSACTIONAL_ID_AUTHORIZATION_FAILED without DESCRIBE on it,
TRANSACTIONAL_ID_NOT_FOUND for an unknown one, NOT_COORDINATOR /
COORDINATOR_LOAD_IN_PROGRESS where the coordinator is not (yet) here. States have Kafka's names
(Empty, Ongoing, PrepareCommit, ...).
"""

from __future__ import annotations

from collections import defaultdict

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType

R = protocol.DescribeTransactionsResponse


def describe(ctx: RequestContext, transactional_id: str):
    coordinator = ctx.broker.transactions
    empty = R.TransactionState(transactional_id=transactional_id, transaction_state="", producer_id=-1, producer_epoch=-1, topics=[])
    if not ctx.allows(Operation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, transactional_id):
        empty.error_code = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        return empty
    if error := coordinator.unavailable():
        empty.error_code = error
        return empty
    meta = coordinator.txns.get(transactional_id)
    if meta is None:
        empty.error_code = ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
        return empty
    by_topic: dict[str, list[int]] = defaultdict(list)
    for topic, index in sorted(meta.partitions):
        by_topic[topic].append(index)
    return R.TransactionState(
        error_code=0,
        transactional_id=transactional_id,
        transaction_state=meta.state.kafka_name,
        transaction_timeout_ms=meta.timeout_ms,
        transaction_start_time_ms=meta.start_ms,
        producer_id=meta.producer_id,
        producer_epoch=meta.producer_epoch,
        topics=[R.TopicData(topic=t, partitions=ids) for t, ids in by_topic.items()],
    )


@handles(65, 0, 0)
async def handle(ctx: RequestContext, request):
    return R(throttle_time_ms=0, transaction_states=[describe(ctx, t) for t in request.transactional_ids])
