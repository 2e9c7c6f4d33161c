"""Produce (0): append producers' record batches.

v0-v11 are accepted; v0-v2 carry legacy message sets (magic 0/1), which are refused per
partition with CORRUPT_MESSAGE (Kafka 4 refuses them too). acks=0 gets no response at all;
acks=1 and acks=-1 (all) are answered after the append (one replica: the leader is the whole
ISR, so the high watermark moves with the log end). Per-partition errors: UNKNOWN_TOPIC_OR_PARTITION,
CORRUPT_MESSAGE (bad CRC, length, magic), MESSAGE_TOO_LARGE (above max.message.bytes),
KAFKA_STORAGE_ERROR.
"""

from __future__ import annotations

import logging

from fastlog import _core, protocol
from fastlog.handlers import RequestContext, handles
from fastlog.handlers.common import LEADER_EPOCH, storage_error_code
from fastlog.protocol import ErrorCode

log = logging.getLogger(__name__)
R = protocol.ProduceResponse


def append(ctx: RequestContext, topic: str, index: int, records) -> object:
    partition = ctx.broker.logs.partition(topic, index)
    if partition is None:
        return R.PartitionProduceResponse(index=index, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    if not records:
        return R.PartitionProduceResponse(
            index=index, error_code=ErrorCode.CORRUPT_MESSAGE, error_message="produce request without record batches"
        )
    try:
        base_offset, _, append_time, count = partition.log.append(bytes(records), LEADER_EPOCH)
    except _core.StorageError as e:
        code = storage_error_code(e)
        log.warning("refused produce to %s-%d from %s: %s", topic, index, ctx.peer, e)
        return R.PartitionProduceResponse(index=index, error_code=code, error_message=str(e))
    partition.log.high_watermark = partition.log.log_end_offset
    partition.wake_waiters()
    ctx.broker.metrics.record_produce(topic, count, len(records))
    return R.PartitionProduceResponse(
        index=index,
        error_code=0,
        base_offset=base_offset,
        log_append_time_ms=append_time,
        log_start_offset=partition.log.log_start_offset,
    )


@handles(0, 0, 11)
async def handle(ctx: RequestContext, request):
    if request.acks not in (-1, 0, 1):
        responses = [
            R.TopicProduceResponse(
                name=t.name,
                partition_responses=[
                    R.PartitionProduceResponse(index=p.index, error_code=ErrorCode.INVALID_REQUIRED_ACKS)
                    for p in t.partition_data
                ],
            )
            for t in request.topic_data
        ]
        return None if request.acks == 0 else R(responses=responses)
    responses = [
        R.TopicProduceResponse(
            name=t.name, partition_responses=[append(ctx, t.name, p.index, p.records) for p in t.partition_data]
        )
        for t in request.topic_data
    ]
    if request.acks == 0:
        return None
    return R(responses=responses, throttle_time_ms=0)
