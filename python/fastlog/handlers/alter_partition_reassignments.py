"""AlterPartitionReassignments (45) and ListPartitionReassignments (46): move a partition's
replicas to other brokers, catching up before the switch (KIP-455).

AlterPartitionReassignments v0: per partition, the target replicas (null cancels the one in
progress). The controller adds the new replicas, which fetch from the leader as followers;
once all are in the ISR the partition keeps only the target, and a leader that is not in it
hands over to the target's first in-sync replica. The answer comes once the controller has
recorded the reassignment (not when it completes; ListPartitionReassignments shows those in
progress). Errors per partition: UNKNOWN_TOPIC_OR_PARTITION; INVALID_REPLICA_ASSIGNMENT (an
empty target, a broker named twice or not registered); NO_REASSIGNMENT_IN_PROGRESS (a cancel
with nothing to cancel); REQUEST_TIMED_OUT. A single node has nowhere to move replicas to:
anything but its own id is INVALID_REPLICA_ASSIGNMENT, and [its id] is already so.

ListPartitionReassignments v0: the reassignments in progress, of the partitions named (null:
of every topic), with their replicas, adding and removing replicas.
"""

from __future__ import annotations

from typing import Any, Optional

import trio

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType

A = protocol.AlterPartitionReassignmentsResponse
L = protocol.ListPartitionReassignmentsResponse


def check(ctx: RequestContext, topic: str, index: int, target: Optional[list[int]]) -> tuple[int, Optional[str]]:
    view = ctx.broker.topics.get(topic)
    if view is None or not 0 <= index < view.partitions:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition."
    p = view.assignments[index]
    if target is None:
        if not p.adding and not p.removing:
            return ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, f"No reassignment in progress for {topic}-{index}."
        return 0, None
    registered = {b for b, *_ in ctx.broker.live_brokers()} if ctx.broker.controller is None else set(ctx.broker.controller.image.brokers)
    if not target or len(set(target)) != len(target):
        return ErrorCode.INVALID_REPLICA_ASSIGNMENT, "The target replicas must be a non-empty list of distinct brokers."
    unknown = sorted(set(target) - registered)
    if unknown:
        return ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"Brokers {unknown} are not registered."
    return 0, None


async def reassign(ctx: RequestContext, topic: str, index: int, target: Optional[list[int]], deadline: float) -> tuple[int, Optional[str]]:
    error, message = check(ctx, topic, index, target)
    if error or ctx.broker.controller is None:
        return error, message
    controller = ctx.broker.controller
    image = controller.image
    view = image.topics[topic]
    record = {"type": "reassign_partition", "name": topic, "id": str(view.id), "partition": index, "target": target}

    def recorded() -> bool:
        current = image.topics.get(topic)
        if current is None or current.id != view.id:
            return True
        p = current.assignments[index]
        if target is None:
            return not p.adding and not p.removing
        return set(target) <= set(p.replicas) and (not p.removing or set(p.replicas) - set(p.removing) == set(target))

    with trio.move_on_at(deadline):
        while not recorded():
            controller.propose(record)
            await controller.wait_for(recorded, 1.0)
        return 0, None
    return ErrorCode.REQUEST_TIMED_OUT, "the controller did not record the reassignment in time"


@handles(45, 0, 0)
async def alter(ctx: RequestContext, request: Any):
    if not ctx.allows(Operation.ALTER, ResourceType.CLUSTER):
        return A(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message="Cluster authorization failed", responses=[])
    deadline = trio.current_time() + max(request.timeout_ms, 0) / 1000
    responses = []
    for t in request.topics:
        partitions = []
        for p in t.partitions:
            error, message = await reassign(ctx, t.name, p.partition_index, p.replicas, deadline)
            partitions.append(A.ReassignablePartitionResponse(partition_index=p.partition_index, error_code=error, error_message=message))
        responses.append(A.ReassignableTopicResponse(name=t.name, partitions=partitions))
    return A(throttle_time_ms=0, error_code=0, error_message=None, responses=responses)


@handles(46, 0, 0)
async def list_ongoing(ctx: RequestContext, request: Any):
    if not ctx.allows(Operation.DESCRIBE, ResourceType.CLUSTER):
        return L(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message="Cluster authorization failed", topics=[])
    wanted = None if request.topics is None else {(t.name, i) for t in request.topics for i in t.partition_indexes}
    topics = []
    for view in ctx.broker.topics.all():
        ongoing = [
            L.OngoingPartitionReassignment(partition_index=i, replicas=list(p.replicas), adding_replicas=list(p.adding), removing_replicas=list(p.removing))
            for i, p in enumerate(view.assignments)
            if (p.adding or p.removing) and (wanted is None or (view.name, i) in wanted)
        ]
        if ongoing:
            topics.append(L.OngoingTopicReassignment(name=view.name, partitions=ongoing))
    return L(throttle_time_ms=0, error_code=0, error_message=None, topics=topics)
