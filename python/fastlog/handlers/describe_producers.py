"""DescribeProducers (61): the idempotent and transactional producers a partition leader has
state for: epoch, last sequence, last timestamp, coordinator epoch and the first offset of an
open transaction (-1: none), which is how `kafka-transactions.sh find-hanging` finds hanging
transactions. Needs READ on the topic (TOPIC_AUTHORIZATION_FAILED); a partition led elsewhere:
NOT_LEADER_OR_FOLLOWER; one that does not exist: UNKNOWN_TOPIC_OR_PARTITION.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.handlers.common import led_partition
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType

R = protocol.DescribeProducersResponse


def describe(ctx: RequestContext, topic: str, index: int, allowed: bool):
    if not allowed:
        return R.PartitionResponse(partition_index=index, error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, active_producers=[])
    partition, error, _ = led_partition(ctx.broker, topic, index)
    if partition is None:
        return R.PartitionResponse(partition_index=index, error_code=error, active_producers=[])
    producers = [
        R.ProducerState(producer_id=pid, producer_epoch=epoch, last_sequence=seq, last_timestamp=ts,
                        coordinator_epoch=coordinator_epoch, current_txn_start_offset=txn_start)
        for pid, epoch, seq, ts, coordinator_epoch, txn_start in partition.log.producers()
    ]
    return R.PartitionResponse(partition_index=index, error_code=0, active_producers=producers)


@handles(61, 0, 0)
async def handle(ctx: RequestContext, request):
    topics = []
    for t in request.topics:
        allowed = ctx.allows(Operation.READ, ResourceType.TOPIC, t.name)
        topics.append(R.TopicResponse(name=t.name, partitions=[describe(ctx, t.name, i, allowed) for i in t.partition_indexes]))
    return R(throttle_time_ms=0, topics=topics)
