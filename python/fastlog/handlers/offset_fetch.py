"""OffsetFetch (9): a group's committed offsets.

v0-v9. v0-v7 ask for one group; a null topic list (v2+) means every committed partition.
v8+ ask for several groups at once, each answered with its own error. A partition without a
committed offset answers offset -1 and no error. v5+ return the leader epoch; v7+
`require_stable` answers UNSTABLE_OFFSET_COMMIT for a partition whose commit is being
written. COORDINATOR_LOAD_IN_PROGRESS while loading (per partition in v0-v1, which have no
top-level error). v9's member id and epoch belong to KIP-848 groups and are ignored.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType

R = protocol.OffsetFetchResponse


def fetch(ctx: RequestContext, group_id: str, topics, require_stable: bool) -> tuple[int, dict]:
    """(group error, {topic: [(partition, offset, leader epoch, metadata, error)]})."""
    wanted = None if topics is None else [(t.name, p) for t in topics for p in t.partition_indexes]
    if not ctx.allows(Operation.DESCRIBE, ResourceType.GROUP, group_id):
        return ErrorCode.GROUP_AUTHORIZATION_FAILED, {} if wanted is None else _rows_of(wanted, ErrorCode.GROUP_AUTHORIZATION_FAILED)
    described = {t for t in {t for t, _ in wanted or ()} if ctx.allows(Operation.DESCRIBE, ResourceType.TOPIC, t)}
    error, rows = ctx.broker.groups.fetch_offsets(group_id, None if wanted is None else [w for w in wanted if w[0] in described], require_stable)
    if error and wanted is not None:
        rows = [(t, p, None, error) for t, p in wanted]
    elif wanted is None:  # every committed partition: those of topics the client may not describe are left out
        rows = [row for row in rows if ctx.allows(Operation.DESCRIBE, ResourceType.TOPIC, row[0], log_denied=False)]
    else:
        rows = [*rows, *((t, p, None, ErrorCode.TOPIC_AUTHORIZATION_FAILED) for t, p in wanted if t not in described)]
    out: dict = {}
    for topic, partition, committed, partition_error in rows:
        if committed is None:
            entry = (partition, -1, -1, "", partition_error)
        else:
            entry = (partition, committed.offset, committed.leader_epoch, committed.metadata, partition_error)
        out.setdefault(topic, []).append(entry)
    return error, out


def _rows_of(wanted: list, error: int) -> dict:
    out: dict = {}
    for topic, partition in wanted:
        out.setdefault(topic, []).append((partition, -1, -1, "", error))
    return out


@handles(9, 0, 9)
async def handle(ctx: RequestContext, request):
    v = ctx.api_version
    stable = v >= 7 and request.require_stable
    if v >= 8:
        groups = []
        for g in request.groups:
            error, found = fetch(ctx, g.group_id, g.topics, stable)
            if error == ErrorCode.GROUP_AUTHORIZATION_FAILED:
                found = {}  # as Kafka: the group's error alone
            topics = [
                R.OffsetFetchResponseTopics(
                    name=name,
                    partitions=[
                        R.OffsetFetchResponsePartitions(partition_index=p, committed_offset=o, committed_leader_epoch=e,
                                                        metadata=m, error_code=err)
                        for p, o, e, m, err in rows
                    ],
                )
                for name, rows in found.items()
            ]
            groups.append(R.OffsetFetchResponseGroup(group_id=g.group_id, topics=topics, error_code=error))
        return R(throttle_time_ms=0, groups=groups)
    error, found = fetch(ctx, request.group_id, request.topics, stable)
    topics = [
        R.OffsetFetchResponseTopic(
            name=name,
            partitions=[
                R.OffsetFetchResponsePartition(partition_index=p, committed_offset=o, committed_leader_epoch=e,
                                               metadata=m, error_code=err)
                for p, o, e, m, err in rows
            ],
        )
        for name, rows in found.items()
    ]
    response = R(throttle_time_ms=0, topics=topics)
    if v >= 2:
        response.error_code = error
    return response
