"""ListOffsets (2): offsets by time, and the special earliest / latest / max-timestamp.

v0-v10. Timestamps: -2 earliest (log start), -1 latest (high watermark, or last stable
offset for read_committed), -3 the record with the largest timestamp (KIP-734), -4 earliest
local (= earliest without tiered storage), -5 earliest pending upload (none: -1); T >= 0 the
first record with timestamp >= T, or offset -1 when there is none. v0 answers in
`old_style_offsets`, with Kafka's segment-based semantics (`offsets_before`). From v1, a partition named more than once is answered INVALID_REQUEST.
"""

from __future__ import annotations

import time
from pathlib import Path

from fastlog import _core, protocol
from fastlog.handlers import RequestContext, handles
from fastlog.handlers.common import led_partition, leader_epoch_error, storage_error_code
from fastlog.handlers.configs import duplicates
from fastlog.protocol import ErrorCode
from fastlog.records import decode_batches
from fastlog.security.acls import Operation, ResourceType

R = protocol.ListOffsetsResponse
LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL, EARLIEST_PENDING_UPLOAD = -1, -2, -3, -4, -5


def first_record_at_or_after(batch: bytes, timestamp: int, floor: int) -> tuple[int, int]:
    for record in decode_batches(batch)[0].records:
        if record.timestamp >= timestamp and record.offset >= floor:
            return record.offset, record.timestamp
    return -1, -1


def lookup(log: _core.Log, timestamp: int, read_committed: bool = False) -> tuple[int, int]:
    """(timestamp, offset) that answers `timestamp` for this log; read_committed sees nothing
    at or past the last stable offset."""
    visible_end = log.last_stable_offset if read_committed else log.high_watermark
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        return -1, log.log_start_offset
    if timestamp == LATEST:
        return -1, visible_end
    if timestamp == EARLIEST_PENDING_UPLOAD:
        return -1, -1
    if timestamp == MAX_TIMESTAMP:
        max_ts, offset = log.max_timestamp()
        if max_ts < 0 or offset < log.log_start_offset:
            return -1, -1
        batch = log.read_bytes(offset, 1, max_offset=log.log_end_offset)
        found_offset, found_ts = first_record_at_or_after(batch, max_ts, log.log_start_offset)
        return (found_ts, found_offset) if found_offset >= 0 else (max_ts, offset)
    found = log.batch_for_timestamp(timestamp)
    if found is None:
        return -1, -1
    offset, ts = first_record_at_or_after(found[1], timestamp, log.log_start_offset)
    if offset >= visible_end:
        return -1, -1
    return ts, offset


def offsets_before(log: _core.Log, timestamp: int, max_count: int) -> list[int]:
    """ListOffsets v0, as Kafka answers it (`legacyFetchOffsetsBefore`): each segment's base
    offset stamped with the segment file's last modification, plus the log end stamped now;
    latest is the last entry, earliest the first, a time T the last entry stamped at or before
    T; then up to `max_count` offsets from there back, largest first."""
    entries, last_size = [], 0
    for segment in sorted(Path(log.path).glob("*.log")):  # 20-digit base offsets sort as numbers
        try:
            stat = segment.stat()
        except OSError:  # deleted by retention meanwhile
            continue
        entries.append((max(int(segment.stem), log.log_start_offset), stat.st_mtime_ns // 1_000_000))
        last_size = stat.st_size
    if last_size > 0:
        entries.append((log.high_watermark, time.time_ns() // 1_000_000))
    if timestamp == LATEST:
        start = len(entries) - 1
    elif timestamp == EARLIEST:
        start = 0 if entries else -1
    else:
        start = max((i for i, (_, stamped) in enumerate(entries) if stamped <= timestamp), default=-1)
    count = max(0, min(max_count, start + 1))
    return sorted((entries[i][0] for i in range(start, start - count, -1)), reverse=True)


def answer(ctx: RequestContext, topic: str, wanted, allowed: bool, read_committed: bool = False) -> object:
    if not allowed:
        return R.ListOffsetsPartitionResponse(partition_index=wanted.partition_index, error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED)
    partition, error, leader_epoch = led_partition(ctx.broker, topic, wanted.partition_index)
    response = R.ListOffsetsPartitionResponse(partition_index=wanted.partition_index)
    if partition is None:
        response.error_code = error
        return response
    epoch_error = leader_epoch_error(wanted.current_leader_epoch, leader_epoch)
    if epoch_error is not None:
        response.error_code = epoch_error
        return response
    if ctx.api_version == 0:  # v0 has only the list of offsets (sarama's default Version asks so)
        response.old_style_offsets = offsets_before(partition.log, wanted.timestamp, wanted.max_num_offsets)
        return response
    try:
        timestamp, offset = lookup(partition.log, wanted.timestamp, read_committed)
    except _core.StorageError as e:
        response.error_code = storage_error_code(e)
        return response
    response.timestamp, response.offset = timestamp, offset
    if ctx.api_version >= 4:
        response.leader_epoch = leader_epoch if offset >= 0 else -1
    return response


def refused_duplicate(wanted) -> object:
    return R.ListOffsetsPartitionResponse(partition_index=wanted.partition_index, error_code=ErrorCode.INVALID_REQUEST)


@handles(2, 0, 10)
async def handle(ctx: RequestContext, request):
    # As Kafka (v1+): a partition named twice is answered INVALID_REQUEST, every time it is named
    repeated = set() if ctx.api_version == 0 else duplicates((t.name, p.partition_index) for t in request.topics for p in t.partitions)
    allowed = {t.name: ctx.allows(Operation.DESCRIBE, ResourceType.TOPIC, t.name) for t in request.topics}
    read_committed = ctx.api_version >= 2 and request.isolation_level == 1
    topics = [
        R.ListOffsetsTopicResponse(
            name=t.name,
            partitions=[refused_duplicate(p) if (t.name, p.partition_index) in repeated else answer(ctx, t.name, p, allowed[t.name], read_committed) for p in t.partitions],
        )
        for t in request.topics
    ]
    return R(throttle_time_ms=0, topics=topics)
