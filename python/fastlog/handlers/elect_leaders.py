"""ElectLeaders (43): move leadership back to each partition's preferred replica, or (unclean)
give an offline partition a leader that may lack records.

v0-v2 (v0 is preferred only). `topic_partitions` null means every partition. Per partition,
as Kafka answers: ELECTION_NOT_NEEDED when the preferred replica leads already (preferred), or
when the partition has a leader (unclean); PREFERRED_LEADER_NOT_AVAILABLE when the preferred
replica is not live and in sync; ELIGIBLE_LEADERS_NOT_AVAILABLE when no live replica can lead
(unclean); UNKNOWN_TOPIC_OR_PARTITION; REQUEST_TIMED_OUT when the controller did not apply the
change within `timeout_ms`. A single node leads everything already: ELECTION_NOT_NEEDED.
The election is a `change_partition` record through the controller, from any node.
"""

from __future__ import annotations

from typing import Any, Optional

import trio

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.metadata_image import NO_LEADER
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType

R = protocol.ElectLeadersResponse
PREFERRED, UNCLEAN = 0, 1


def wanted_partitions(ctx: RequestContext, request: Any) -> list[tuple[str, int]]:
    if request.topic_partitions is None:
        return [(t.name, i) for t in ctx.broker.topics.all() for i in range(t.partitions)]
    return [(t.topic, i) for t in request.topic_partitions for i in t.partitions]


def choose(ctx: RequestContext, topic: str, index: int, election_type: int) -> tuple[int, Optional[str], Optional[dict]]:
    """(error, message, the change to propose or None)."""
    view = ctx.broker.topics.get(topic)
    if view is None or not 0 <= index < view.partitions:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition.", None
    p = view.assignments[index]
    image = ctx.broker.controller.image if ctx.broker.controller else None
    if election_type == UNCLEAN:
        if p.leader != NO_LEADER:
            return ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition.", None
        chosen = next((r for r in p.isr if image and image.is_live(r) and r not in p.failed), None)
        if chosen is not None:
            return 0, None, {"leader": chosen}
        chosen = next((r for r in p.replicas if image and image.is_live(r) and r not in p.failed), None)
        if chosen is None:
            return ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE, "No live replica can lead the partition.", None
        return 0, None, {"leader": chosen, "isr": [chosen]}
    preferred = p.replicas[0]
    if p.leader == preferred:
        return ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition.", None
    if image is None or not image.is_live(preferred) or preferred not in p.isr or preferred in p.failed:
        return ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE, f"Failed to elect leader for partition {topic}-{index} under strategy PreferredReplicaPartitionLeaderElectionStrategy", None
    return 0, None, {"leader": preferred}


async def elect(ctx: RequestContext, topic: str, index: int, election_type: int, deadline: float) -> tuple[int, Optional[str]]:
    error, message, change = choose(ctx, topic, index, election_type)
    if change is None:
        return error, message
    controller = ctx.broker.controller
    image = controller.image
    target = change["leader"]
    with trio.move_on_at(deadline):
        while True:
            current = image.topics.get(topic)
            if current is None:
                return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None
            if current.assignments[index].leader == target:
                return 0, None
            controller.propose_partition_change(current, index, **change)
            await controller.wait_for(lambda: image.topics.get(topic) is None or image.topics[topic].assignments[index].leader == target, 1.0)
    return ErrorCode.REQUEST_TIMED_OUT, "the controller did not apply the election in time"


@handles(43, 0, 2)
async def handle(ctx: RequestContext, request):
    election_type = request.election_type if ctx.api_version >= 1 else PREFERRED
    deadline = trio.current_time() + max(request.timeout_ms, 0) / 1000
    results: dict[str, list] = {}
    allowed = ctx.allows(Operation.ALTER, ResourceType.CLUSTER)
    for topic, index in wanted_partitions(ctx, request):
        if not allowed:
            error, message = ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed"
        elif ctx.broker.controller is None:  # a single node leads every partition
            error, message = ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition."
            if ctx.broker.topics.get(topic) is None:
                error, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition."
        else:
            error, message = await elect(ctx, topic, index, election_type, deadline)
        results.setdefault(topic, []).append(R.PartitionResult(partition_id=index, error_code=error, error_message=message))
    return R(
        throttle_time_ms=0,
        error_code=0 if allowed else ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
        replica_election_results=[R.ReplicaElectionResult(topic=t, partition_result=p) for t, p in results.items()],
    )
