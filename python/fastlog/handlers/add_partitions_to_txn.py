"""AddPartitionsToTxn (24): add partitions to a producer's open transaction (opening it).

v0-v5. v0-v3 carry one transaction; v4+ (KIP-890) a batch of them, each possibly `verify_only`
(whether the partitions are in the transaction, adding none), sent by brokers: they need
CLUSTER_ACTION on the cluster, as in Kafka. The client needs WRITE on the transactional id
(TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and on each topic (TOPIC_AUTHORIZATION_FAILED for those,
OPERATION_NOT_ATTEMPTED for the rest). A partition that does not exist gets
UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED; the coordinator's own
errors (`TransactionCoordinator.add_partitions`) apply to every partition.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType
from fastlog.transaction_coordinator import as_version_knows

R = protocol.AddPartitionsToTxnResponse


def topic_results(errors: dict, version: int) -> list:
    by_topic: dict[str, list] = {}
    for (topic, index), code in errors.items():
        by_topic.setdefault(topic, []).append(R.AddPartitionsToTxnPartitionResult(partition_index=index, partition_error_code=as_version_knows(code, version, 2)))
    return [R.AddPartitionsToTxnTopicResult(name=t, results_by_partition=parts) for t, parts in by_topic.items()]


async def add(ctx: RequestContext, transactional_id: str, producer_id: int, producer_epoch: int, topics: list, verify_only: bool) -> dict:
    wanted = [(t.name, p) for t in topics for p in t.partitions]
    if not ctx.allows(Operation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id):
        return {tp: ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED for tp in wanted}
    denied = {t.name for t in topics if not ctx.allows(Operation.WRITE, ResourceType.TOPIC, t.name)}
    if denied:
        return {tp: ErrorCode.TOPIC_AUTHORIZATION_FAILED if tp[0] in denied else ErrorCode.OPERATION_NOT_ATTEMPTED for tp in wanted}
    return await ctx.broker.transactions.add_partitions(transactional_id, producer_id, producer_epoch, wanted, verify_only)


@handles(24, 0, 5)
async def handle(ctx: RequestContext, request):
    if ctx.api_version < 4:
        errors = await add(ctx, request.v3_and_below_transactional_id, request.v3_and_below_producer_id,
                           request.v3_and_below_producer_epoch, request.v3_and_below_topics, False)
        return R(throttle_time_ms=0, results_by_topic_v3_and_below=topic_results(errors, ctx.api_version))
    if not ctx.allows(Operation.CLUSTER_ACTION, ResourceType.CLUSTER):
        return R(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, results_by_transaction=[])
    results = []
    for txn in request.transactions:
        errors = await add(ctx, txn.transactional_id, txn.producer_id, txn.producer_epoch, txn.topics, txn.verify_only)
        results.append(R.AddPartitionsToTxnResult(transactional_id=txn.transactional_id, topic_results=topic_results(errors, ctx.api_version)))
    return R(throttle_time_ms=0, error_code=0, results_by_transaction=results)
