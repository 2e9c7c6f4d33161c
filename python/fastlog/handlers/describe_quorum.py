"""DescribeQuorum (55): the metadata quorum's leader, epoch, high watermark and voters.

v0-v2, for `__cluster_metadata` partition 0 (any other gets UNKNOWN_TOPIC_OR_PARTITION, as in
Kafka). In a cluster: the leader known here, the raft term as the epoch, the committed index as
the high watermark, and each voter's log end (complete on the leader; elsewhere -1 for the
other voters, which only the leader tracks); the leader lists the broker-only nodes that fetch
from it as observers, a broker-only node lists itself. A single node answers as a quorum of
one. v2 also lists each voter's controller endpoint.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType

R = protocol.DescribeQuorumResponse
METADATA_TOPIC = "__cluster_metadata"


def quorum_state(ctx: RequestContext) -> tuple[int, int, int, list[tuple[int, int]], list[tuple[int, int]]]:
    """(leader id, epoch, high watermark, [(voter, log end offset or -1)], [(observer, log end)])."""
    controller = ctx.broker.controller
    if controller is None:
        return ctx.broker.node_id, 0, 0, [(ctx.broker.node_id, 0)], []
    epoch, high_watermark, voters, observers = controller.quorum_state()
    return controller.leader_id, epoch, high_watermark, voters, observers


def partition(ctx: RequestContext, index: int) -> object:
    if index != 0:
        return R.PartitionData(partition_index=index, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    leader, epoch, high_watermark, voters, observers = quorum_state(ctx)
    return R.PartitionData(
        partition_index=0,
        error_code=0,
        leader_id=leader,
        leader_epoch=epoch,
        high_watermark=high_watermark,
        current_voters=[R.ReplicaState(replica_id=v, log_end_offset=end) for v, end in voters],
        observers=[R.ReplicaState(replica_id=o, log_end_offset=end) for o, end in observers],
    )


def voter_endpoints(ctx: RequestContext) -> list:
    config = ctx.broker.config
    if ctx.broker.controller is None:
        host, port = ctx.broker.advertised_address()
        return [R.Node(node_id=ctx.broker.node_id, listeners=[R.Listener(name="CONTROLLER", host=host, port=port)])]
    name = config["controller.listener.names"].split(",")[0].strip()
    return [
        R.Node(node_id=v, listeners=[R.Listener(name=name, host=host, port=port)])
        for v, (host, port) in sorted(ctx.broker.controller.voter_addresses().items())
    ]


@handles(55, 0, 2)
async def handle(ctx: RequestContext, request):
    if not ctx.allows(Operation.DESCRIBE, ResourceType.CLUSTER):
        return R(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, topics=[])
    topics = []
    for topic in request.topics:
        if topic.topic_name != METADATA_TOPIC:
            partitions = [R.PartitionData(partition_index=p.partition_index, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION) for p in topic.partitions]
        else:
            partitions = [partition(ctx, p.partition_index) for p in topic.partitions]
        topics.append(R.TopicData(topic_name=topic.topic_name, partitions=partitions))
    response = R(error_code=0, topics=topics)
    if ctx.api_version >= 2:
        response.nodes = voter_endpoints(ctx)
    return response
