"""DeleteRecords (21): move partitions' log start offsets forward.

v0-v2 (same semantics; v2 flexible). Per partition, `offset` becomes the new log start
(-1 means the high watermark); whole segments below it are deleted and reads below it get
OFFSET_OUT_OF_RANGE. An offset above the high watermark, or negative other than -1, is
OFFSET_OUT_OF_RANGE; an unknown topic or partition UNKNOWN_TOPIC_OR_PARTITION (low watermark
-1). Answers the new low watermark. As in Kafka, the new log start offset reaches disk with
the periodic log-start-offset checkpoint (and at shutdown): after a crash inside that interval
the records of the partly deleted segment can be readable again. (Writing the checkpoint here
would race the background checkpoint writer, which takes no lock.)
"""

from __future__ import annotations

import logging

from fastlog import _core, protocol
from fastlog.handlers import RequestContext, handles
from fastlog.handlers.common import led_partition, storage_error_code
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType

log = logging.getLogger(__name__)
R = protocol.DeleteRecordsResponse
HIGH_WATERMARK = -1


def delete_below(ctx: RequestContext, topic: str, wanted) -> object:
    """Runs in a worker thread: deleting segments is disk work."""
    index = wanted.partition_index
    partition, error, _ = led_partition(ctx.broker, topic, index)
    if partition is None:
        return R.DeleteRecordsPartitionResult(partition_index=index, low_watermark=-1, error_code=error)
    offset = partition.log.high_watermark if wanted.offset == HIGH_WATERMARK else wanted.offset
    if offset < 0 or offset > partition.log.high_watermark:
        return R.DeleteRecordsPartitionResult(
            partition_index=index, low_watermark=-1, error_code=ErrorCode.OFFSET_OUT_OF_RANGE
        )
    try:
        low = partition.log.delete_records(offset)
    except _core.StorageError as e:
        log.warning("delete records of %s-%d below %d failed: %s", topic, index, offset, e)
        return R.DeleteRecordsPartitionResult(partition_index=index, low_watermark=-1, error_code=storage_error_code(e))
    return R.DeleteRecordsPartitionResult(partition_index=index, low_watermark=low, error_code=0)


def delete_all(ctx: RequestContext, request, allowed: dict[str, bool]) -> list:
    return [
        R.DeleteRecordsTopicResult(name=t.name, partitions=[
            delete_below(ctx, t.name, p) if allowed[t.name] else
            R.DeleteRecordsPartitionResult(partition_index=p.partition_index, low_watermark=-1, error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED)
            for p in t.partitions
        ])
        for t in request.topics
    ]


@handles(21, 0, 2)
async def handle(ctx: RequestContext, request):
    allowed = {t.name: ctx.allows(Operation.DELETE, ResourceType.TOPIC, t.name) for t in request.topics}
    async with ctx.broker.admin_lock:
        topics = await ctx.broker.io_threads.run(delete_all, ctx, request, allowed)
    # Back on the event loop: fetches parked on these partitions re-read them, and one whose
    # offset is now below the log start is answered OFFSET_OUT_OF_RANGE at once.
    for t in topics:
        for p in t.partitions:
            partition = ctx.broker.logs.partition(t.name, p.partition_index)
            if partition is not None and not p.error_code:
                partition.wake_waiters()
    log.info("%s deleted records: %s", ctx.peer, {
        f"{t.name}-{p.partition_index}": p.low_watermark for t in topics for p in t.partitions if not p.error_code
    })
    return R(throttle_time_ms=0, topics=topics)
