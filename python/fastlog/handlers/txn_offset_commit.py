"""TxnOffsetCommit (28): a transactional producer commits a group's offsets inside its
transaction (consume-transform-produce); they take effect when the transaction commits.

v0-v4. Needs WRITE on the transactional id, READ on the group and on each topic. v3+ carry the
group member's generation and id, checked as OffsetCommit checks them (ILLEGAL_GENERATION,
UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID); v0-v2 are not checked against the group, as in Kafka.
With partition verification on, the group's `__consumer_offsets` partition must be in the open
transaction (AddOffsetsToTxn first): else INVALID_TXN_STATE (or the producer's error).
OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT while such offsets are pending.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType
from fastlog.transaction_coordinator import NEEDS_COORDINATOR

R = protocol.TxnOffsetCommitResponse


def answer(request, error_of) -> object:
    topics = [
        R.TxnOffsetCommitResponseTopic(
            name=t.name,
            partitions=[R.TxnOffsetCommitResponsePartition(partition_index=p.partition_index, error_code=error_of(t.name, p.partition_index)) for p in t.partitions],
        )
        for t in request.topics
    ]
    return R(throttle_time_ms=0, topics=topics)


@handles(28, 0, 4)
async def handle(ctx: RequestContext, request):
    v = ctx.api_version
    if not ctx.allows(Operation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id):
        return answer(request, lambda t, p: ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    if not ctx.allows(Operation.READ, ResourceType.GROUP, request.group_id):
        return answer(request, lambda t, p: ErrorCode.GROUP_AUTHORIZATION_FAILED)
    coordinator = ctx.broker.transactions
    topic, index = coordinator.offsets_partition(request.group_id)
    unverified = coordinator.verify(request.transactional_id, request.producer_id, request.producer_epoch, topic, index)
    if unverified == NEEDS_COORDINATOR:
        unverified = await coordinator.verify_remotely(request.transactional_id, request.producer_id, request.producer_epoch, topic, index)
    if unverified:
        return answer(request, lambda t, p: unverified)
    readable = {t.name for t in request.topics if ctx.allows(Operation.READ, ResourceType.TOPIC, t.name)}
    offsets = [
        (t.name, p.partition_index, p.committed_offset, p.committed_leader_epoch if v >= 2 else -1, p.committed_metadata, -1)
        for t in request.topics if t.name in readable
        for p in t.partitions
    ]
    results = await ctx.broker.groups.txn_commit_offsets(
        request.group_id,
        request.producer_id,
        request.producer_epoch,
        request.generation_id if v >= 3 else -1,
        request.member_id if v >= 3 else "",
        request.group_instance_id if v >= 3 else None,
        offsets,
    )
    return answer(request, lambda t, p: results.get((t, p), ErrorCode.TOPIC_AUTHORIZATION_FAILED))
