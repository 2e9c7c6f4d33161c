"""WriteTxnMarkers (27): a transaction coordinator asks the leader of partitions to write a
transaction's COMMIT or ABORT markers. Needs CLUSTER_ACTION on the cluster.

v0-v1. Per partition: NONE once written (and fsynced), NOT_LEADER_OR_FOLLOWER where this
broker does not lead it, UNKNOWN_TOPIC_OR_PARTITION, INVALID_PRODUCER_EPOCH (a marker older
than the producer's epoch there), TRANSACTION_COORDINATOR_FENCED (a coordinator epoch older than
that of the producer's last marker there; -1, an operator's abort, is not checked). In a
cluster the answer waits for the in-sync replicas to have the markers.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType
from fastlog.transaction_coordinator import Marker

R = protocol.WriteTxnMarkersResponse


@handles(27, 0, 1)
async def handle(ctx: RequestContext, request):
    allowed = ctx.allows(Operation.CLUSTER_ACTION, ResourceType.CLUSTER)
    markers = []
    for marker in request.markers:
        wanted = [(t.name, p) for t in marker.topics for p in t.partition_indexes]
        if allowed:
            written = Marker(marker.producer_id, marker.producer_epoch, marker.transaction_result, marker.coordinator_epoch)
            errors = await ctx.broker.transactions.write_markers(written, wanted)
        else:
            errors = {tp: ErrorCode.CLUSTER_AUTHORIZATION_FAILED for tp in wanted}
        by_topic: dict[str, list] = {}
        for (topic, index), code in errors.items():
            by_topic.setdefault(topic, []).append(R.WritableTxnMarkerPartitionResult(partition_index=index, error_code=code))
        topics = [R.WritableTxnMarkerTopicResult(name=t, partitions=parts) for t, parts in by_topic.items()]
        markers.append(R.WritableTxnMarkerResult(producer_id=marker.producer_id, topics=topics))
    return R(markers=markers)
