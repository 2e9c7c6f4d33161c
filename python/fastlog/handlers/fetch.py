"""Fetch (1): read record batches, waiting up to max_wait_ms for min_bytes to arrive.

v4-v17 (magic-2 batches; v0-v3 would need down-conversion). Topics by name, or by topic id
from v13. Records go from the segment file to the socket with sendfile: a partition's data is
a `FileSlice`, which the codec keeps as a separate part. Budgets: `partition_max_bytes` per
partition and `max_bytes` for the response, except that the first non-empty partition
returns at least one whole batch (KIP-74). Consumers see nothing past the high watermark
(read_uncommitted) or the last stable offset (read_committed; equal until transactions exist).

Fetch sessions (KIP-227): the broker creates none and answers with session id 0, which tells
clients to keep sending full fetch requests; an incremental request naming a session gets
FETCH_SESSION_ID_NOT_FOUND so the client starts over.
"""

from __future__ import annotations

import uuid

import trio

from fastlog import _core, protocol
from fastlog.handlers import RequestContext, handles
from fastlog.handlers.common import leader_epoch_error, storage_error_code
from fastlog.protocol import ErrorCode

R = protocol.FetchResponse
ZERO_UUID = uuid.UUID(int=0)


def read_partitions(ctx: RequestContext, request) -> tuple[list, int, list]:
    """One pass over the requested partitions: (topic responses, bytes found, partitions)."""
    manager = ctx.broker.logs
    by_id = ctx.api_version >= 13
    remaining = request.max_bytes
    total = 0
    watched = []
    topics = []
    for wanted in request.topics:
        topic = manager.topics_by_id.get(wanted.topic_id) if by_id else manager.topics.get(wanted.topic)
        results = []
        for fp in wanted.partitions:
            partition = topic.partitions[fp.partition] if topic and 0 <= fp.partition < len(topic.partitions) else None
            if partition is None:
                missing = ErrorCode.UNKNOWN_TOPIC_ID if by_id and topic is None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                results.append(R.PartitionData(partition_index=fp.partition, error_code=missing, records=b""))
                continue
            watched.append(partition)
            log = partition.log
            data = R.PartitionData(
                partition_index=fp.partition,
                high_watermark=log.high_watermark,
                last_stable_offset=log.high_watermark,
                log_start_offset=log.log_start_offset,
                aborted_transactions=[] if request.isolation_level == 1 else None,
                records=b"",
            )
            epoch_error = leader_epoch_error(fp.current_leader_epoch)
            if epoch_error is not None:
                data.error_code = epoch_error
            else:
                budget = min(fp.partition_max_bytes, max(remaining, 0))
                try:
                    found = log.read(fp.fetch_offset, budget, min_one=total == 0)
                except _core.StorageError as e:
                    data.error_code = storage_error_code(e)
                    found = None
                if found is not None:
                    data.records = found
                    total += len(found)
                    remaining -= len(found)
            results.append(data)
        topics.append(
            R.FetchableTopicResponse(
                topic=topic.name if topic else wanted.topic,
                topic_id=topic.id if topic else wanted.topic_id,
                partitions=results,
            )
        )
    return topics, total, watched


@handles(1, 4, 17)
async def handle(ctx: RequestContext, request):
    if request.session_id != 0:
        return R(error_code=ErrorCode.FETCH_SESSION_ID_NOT_FOUND, session_id=0, responses=[])
    deadline = trio.current_time() + max(request.max_wait_ms, 0) / 1000
    while True:
        topics, total, watched = read_partitions(ctx, request)
        errors = any(p.error_code for t in topics for p in t.partitions)
        if total >= request.min_bytes or errors or trio.current_time() >= deadline or not watched:
            ctx.broker.metrics.bytes_out_pending += total
            return R(throttle_time_ms=0, error_code=0, session_id=0, responses=topics)
        # Park until an append to one of these partitions, or the deadline.
        arrived = trio.Event()
        for partition in watched:
            partition.waiters.add(arrived)
        try:
            with trio.move_on_at(deadline):
                await arrived.wait()
        finally:
            for partition in watched:
                partition.waiters.discard(arrived)
