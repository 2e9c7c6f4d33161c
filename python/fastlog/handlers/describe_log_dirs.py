"""DescribeLogDirs (35): the data directory and the size of each partition in it.

v0-v4. fastlog has one log dir (`log.dirs`' first entry, made absolute). `topics` null means
every partition; otherwise the named partitions that exist (unknown ones are left out, as in
Kafka). Each partition has its size on disk, offset lag 0 (nothing is being moved) and
is_future_key false. v3+ carry a top-level error code; v4 the volume's total and usable bytes.
"""

from __future__ import annotations

import shutil

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType

R = protocol.DescribeLogDirsResponse


def partition_entry(partition) -> object:
    return R.DescribeLogDirsPartition(
        partition_index=partition.index, partition_size=partition.log.size_bytes, offset_lag=0, is_future_key=False
    )


def topic_entries(ctx: RequestContext, wanted) -> list:
    manager = ctx.broker.logs
    if wanted is None:
        return [
            R.DescribeLogDirsTopic(name=t.name, partitions=[partition_entry(p) for p in t.partitions])
            for t in list(manager.topics.values())
        ]
    out = []
    for w in wanted:
        found = [manager.partition(w.topic, i) for i in w.partitions]
        found = [p for p in found if p is not None]
        if found:
            out.append(R.DescribeLogDirsTopic(name=w.topic, partitions=[partition_entry(p) for p in found]))
    return out


@handles(35, 0, 4)
async def handle(ctx: RequestContext, request):
    data_dir = ctx.broker.logs.data_dir
    if not ctx.allows(Operation.DESCRIBE, ResourceType.CLUSTER):  # as Kafka: nothing (v3+: and why)
        body = R(throttle_time_ms=0, results=[])
        if ctx.api_version >= 3:
            body.error_code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        return body
    result = R.DescribeLogDirsResult(error_code=0, log_dir=str(data_dir), topics=topic_entries(ctx, request.topics))
    if ctx.api_version >= 4:
        usage = shutil.disk_usage(data_dir)
        result.total_bytes, result.usable_bytes = usage.total, usage.free
    body = R(throttle_time_ms=0, results=[result])
    if ctx.api_version >= 3:
        body.error_code = 0
    return body
