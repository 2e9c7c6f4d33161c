"""OffsetCommit (8): store a group's consumed positions.

v0-v9. Acknowledged only once the records are appended to `__consumer_offsets` and
flushed, so an acknowledged commit survives a crash. A member of a group commits with its
generation and member id (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID,
REBALANCE_IN_PROGRESS while the group completes a rebalance); generation -1 (always in v0)
is a "simple" commit, allowed while the group has no members, creating the group if needed.
v1 carries a commit timestamp per partition, v2-v4 a retention time (stored as an explicit
expiry), v6+ the leader epoch, v7+ the group instance id. Per partition:
OFFSET_METADATA_TOO_LARGE (metadata above 4096 bytes), UNKNOWN_TOPIC_OR_PARTITION.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.security.acls import Operation, ResourceType
from fastlog.protocol import ErrorCode

R = protocol.OffsetCommitResponse


@handles(8, 0, 9)
async def handle(ctx: RequestContext, request):
    v = ctx.api_version
    if not ctx.allows(Operation.READ, ResourceType.GROUP, request.group_id):
        return answer(request, lambda topic, partition: ErrorCode.GROUP_AUTHORIZATION_FAILED)
    readable = {t.name for t in request.topics if ctx.allows(Operation.READ, ResourceType.TOPIC, t.name)}
    offsets = [
        (
            t.name,
            p.partition_index,
            p.committed_offset,
            p.committed_leader_epoch if v >= 6 else -1,
            p.committed_metadata,
            p.commit_timestamp if v == 1 else -1,
        )
        for t in request.topics if t.name in readable
        for p in t.partitions
    ]
    results = await ctx.broker.groups.commit_offsets(
        request.group_id,
        request.generation_id_or_member_epoch if v >= 1 else -1,
        request.member_id if v >= 1 else "",
        request.group_instance_id if v >= 7 else None,
        offsets,
        retention_ms=request.retention_time_ms if 2 <= v <= 4 else -1,
    )
    return answer(request, lambda topic, partition: results.get((topic, partition), ErrorCode.TOPIC_AUTHORIZATION_FAILED))


def answer(request, error_of) -> object:
    topics = [
        R.OffsetCommitResponseTopic(
            name=t.name,
            partitions=[
                R.OffsetCommitResponsePartition(partition_index=p.partition_index, error_code=error_of(t.name, p.partition_index))
                for p in t.partitions
            ],
        )
        for t in request.topics
    ]
    return R(throttle_time_ms=0, topics=topics)
