"""OffsetDelete (47): delete a group's committed offsets of some partitions.

v0. The group must be Empty, or a consumer group not subscribed to the topic
(GROUP_SUBSCRIBED_TO_TOPIC per partition); a non-empty group of another protocol type gets
NON_EMPTY_GROUP, an unknown one GROUP_ID_NOT_FOUND. Tombstones are appended before answering.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.security.acls import Operation, ResourceType
from fastlog.protocol import ErrorCode

R = protocol.OffsetDeleteResponse


@handles(47, 0, 0)
async def handle(ctx: RequestContext, request):
    if not ctx.allows(Operation.DELETE, ResourceType.GROUP, request.group_id):
        return R(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, throttle_time_ms=0, topics=[])
    readable = {t.name for t in request.topics if ctx.allows(Operation.READ, ResourceType.TOPIC, t.name)}
    wanted = [(t.name, p.partition_index) for t in request.topics for p in t.partitions if t.name in readable]
    error, results = await ctx.broker.groups.delete_offsets(request.group_id, wanted)
    results = {**{(t.name, p.partition_index): ErrorCode.TOPIC_AUTHORIZATION_FAILED for t in request.topics for p in t.partitions}, **results}
    if error:
        return R(error_code=error, throttle_time_ms=0, topics=[])
    topics = [
        R.OffsetDeleteResponseTopic(
            name=t.name,
            partitions=[
                R.OffsetDeleteResponsePartition(partition_index=p.partition_index, error_code=results[(t.name, p.partition_index)])
                for p in t.partitions
            ],
        )
        for t in request.topics
    ]
    return R(error_code=0, throttle_time_ms=0, topics=topics)
