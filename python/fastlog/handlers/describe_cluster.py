"""DescribeCluster (60): the live brokers, the cluster id and the controller.

v0-v1 (the schema's whole range; there is no v2 `include_fenced_brokers` in it). A single node
lists itself as the one broker and the controller; in a cluster the unfenced registered brokers
and the metadata quorum's leader are given, as Metadata gives them. `cluster_authorized_operations` is returned when asked for (no
ACLs: every cluster operation). v1 `endpoint_type`: 1 (brokers) is answered; 2 (controllers)
or anything else gets UNSUPPORTED_ENDPOINT_TYPE, as a Kafka broker answers.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.handlers.metadata import NO_OPERATIONS, cluster_operations
from fastlog.protocol import ErrorCode

R = protocol.DescribeClusterResponse
BROKERS_ENDPOINT = 1


@handles(60, 0, 1)
async def handle(ctx: RequestContext, request):
    broker = ctx.broker
    if ctx.api_version >= 1 and request.endpoint_type != BROKERS_ENDPOINT:
        return R(
            throttle_time_ms=0,
            error_code=ErrorCode.UNSUPPORTED_ENDPOINT_TYPE,
            error_message=f"endpoint type {request.endpoint_type} is not served here; this is a broker endpoint (1)",
            endpoint_type=request.endpoint_type,
            cluster_id=broker.logs.cluster_id,
            brokers=[],
        )
    body = R(
        throttle_time_ms=0,
        error_code=0,
        error_message=None,
        cluster_id=broker.logs.cluster_id,
        controller_id=broker.controller_id,
        brokers=[R.DescribeClusterBroker(broker_id=i, host=h, port=p, rack=r) for i, h, p, r in broker.live_brokers(ctx.listener)],
        cluster_authorized_operations=cluster_operations(ctx) if request.include_cluster_authorized_operations else NO_OPERATIONS,
    )
    if ctx.api_version >= 1:
        body.endpoint_type = BROKERS_ENDPOINT
    return body
