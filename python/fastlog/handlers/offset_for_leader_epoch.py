"""OffsetForLeaderEpoch (23): where a leader epoch ends in a partition's log (KIP-101/KIP-320).

v0-v4. Consumers ask it after a leader change to detect log truncation. Per partition the
answer is the largest epoch <= the one asked for and the offset where it ends (the log end
for the latest epoch); an epoch the log does not know gives -1/-1. v2+ `current_leader_epoch`
is checked (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH). Unknown topic or partition:
UNKNOWN_TOPIC_OR_PARTITION with -1/-1. v0 has no leader epoch in the answer.
"""

from __future__ import annotations

from fastlog import _core, protocol
from fastlog.handlers import RequestContext, handles
from fastlog.handlers.common import led_partition, leader_epoch_error, storage_error_code
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType

R = protocol.OffsetForLeaderEpochResponse


def answer(ctx: RequestContext, topic: str, wanted) -> object:
    out = R.EpochEndOffset(partition=wanted.partition, error_code=0, end_offset=-1)
    partition, missing, leader_epoch = led_partition(ctx.broker, topic, wanted.partition)
    error = missing or None
    if error is None and ctx.api_version >= 2:
        error = leader_epoch_error(wanted.current_leader_epoch, leader_epoch)
    epoch = -1
    if error is None:
        try:
            epoch, out.end_offset = partition.log.end_offset_for_epoch(wanted.leader_epoch)
        except _core.StorageError as e:
            error = storage_error_code(e)
    if error is not None:
        out.error_code = error
    if ctx.api_version >= 1:
        out.leader_epoch = epoch
    return out


@handles(23, 0, 4)
async def handle(ctx: RequestContext, request):
    # As Kafka: CLUSTER_ACTION (a follower's) allows every topic, else DESCRIBE on each.
    every_topic = ctx.allows(Operation.CLUSTER_ACTION, ResourceType.CLUSTER, log_denied=False)
    allowed = {t.topic: every_topic or ctx.allows(Operation.DESCRIBE, ResourceType.TOPIC, t.topic) for t in request.topics}
    refusal = ErrorCode.TOPIC_AUTHORIZATION_FAILED
    topics = [
        R.OffsetForLeaderTopicResult(topic=t.topic, partitions=[
            answer(ctx, t.topic, p) if allowed[t.topic] else R.EpochEndOffset(partition=p.partition, error_code=refusal, end_offset=-1)
            for p in t.partitions
        ])
        for t in request.topics
    ]
    return R(throttle_time_ms=0, topics=topics)
