"""Metadata (3): brokers, the controller, and topics with their partitions.

v0-v12. Topics are asked for by name (v10+ also by id); a null list means all topics (v0:
an empty list does). An unknown topic is created when the request allows it (v4+
`allow_auto_topic_creation`; always before v4) and `auto.create.topics.enable` is true. A
single node creates it at once, so the answer already has its partitions; a cluster asks the
controller and answers LEADER_NOT_AVAILABLE, as Kafka does, until the client asks again.
Topics come from `broker.topics`: this node's, or in a cluster the metadata image's: each
partition with its leader and leader epoch, replicas, ISR and offline (fenced) replicas;
LEADER_NOT_AVAILABLE while it has no leader.
"""

from __future__ import annotations

import logging
import uuid

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.log_manager import TopicError, topic_name_problem
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation, ResourceType
from fastlog.topic_admin import TopicView

log = logging.getLogger(__name__)
R = protocol.MetadataResponse
NO_OPERATIONS = -2147483648
ZERO_UUID = uuid.UUID(int=0)


def topic_entry(ctx: RequestContext, topic: TopicView, include_operations: bool) -> object:
    """A topic's partitions with their leaders, replicas and ISRs."""
    is_live = ctx.broker.topics.is_live
    partitions = [
        R.MetadataResponsePartition(
            error_code=0 if p.leader >= 0 else ErrorCode.LEADER_NOT_AVAILABLE,
            partition_index=index,
            leader_id=p.leader,
            leader_epoch=p.leader_epoch,
            replica_nodes=list(p.replicas),
            isr_nodes=list(p.isr),
            offline_replicas=[r for r in p.replicas if not is_live(r) or r in p.failed],
        )
        for index, p in enumerate(topic.assignments)
    ]
    return R.MetadataResponseTopic(
        error_code=0,
        name=topic.name,
        topic_id=topic.id,
        is_internal=topic.internal,
        partitions=partitions,
        topic_authorized_operations=ctx.authorized_operations(ResourceType.TOPIC, topic.name) if include_operations else NO_OPERATIONS,
    )


def cluster_operations(ctx: RequestContext) -> int:
    """The cluster's authorized-operations field: none for a client that may not DESCRIBE it
    (Metadata and DescribeCluster still answer, as Kafka's do)."""
    if not ctx.allows(Operation.DESCRIBE, ResourceType.CLUSTER, log_denied=False):
        return 0
    return ctx.authorized_operations(ResourceType.CLUSTER)


def error_entry(error_code: int, name: str | None, topic_id: uuid.UUID = ZERO_UUID) -> object:
    return R.MetadataResponseTopic(error_code=error_code, name=name, topic_id=topic_id, partitions=[])


def brokers(ctx: RequestContext) -> list:
    return [R.MetadataResponseBroker(node_id=i, host=h, port=p, rack=r) for i, h, p, r in ctx.broker.live_brokers(ctx.listener)]


@handles(3, 0, 12)
async def handle(ctx: RequestContext, request):
    topics = ctx.broker.topics
    version = ctx.api_version
    include_operations = bool(getattr(request, "include_topic_authorized_operations", False))
    all_topics = request.topics is None or (version == 0 and not request.topics)
    entries = []
    if all_topics:
        visible = [t for t in topics.all() if ctx.allows(Operation.DESCRIBE, ResourceType.TOPIC, t.name, log_denied=False)]
        entries = [topic_entry(ctx, t, include_operations) for t in visible]
    else:
        may_create = (version < 4 or request.allow_auto_topic_creation) and ctx.broker.config["auto.create.topics.enable"]
        for wanted in request.topics:
            entries.append(await lookup(ctx, wanted, may_create, include_operations))
    return R(
        throttle_time_ms=0,
        brokers=brokers(ctx),
        cluster_id=ctx.broker.logs.cluster_id,
        controller_id=ctx.broker.controller_id,
        topics=entries,
        cluster_authorized_operations=cluster_operations(ctx)
        if getattr(request, "include_cluster_authorized_operations", False)
        else NO_OPERATIONS,
    )


async def lookup(ctx: RequestContext, wanted, may_create: bool, include_operations: bool) -> object:
    topics = ctx.broker.topics
    name = wanted.name
    if name is None:
        topic = topics.by_id(wanted.topic_id)
        if topic is None:
            return error_entry(ErrorCode.UNKNOWN_TOPIC_ID, None, wanted.topic_id)
        if not ctx.allows(Operation.DESCRIBE, ResourceType.TOPIC, topic.name):
            return error_entry(ErrorCode.TOPIC_AUTHORIZATION_FAILED, None, wanted.topic_id)
        return topic_entry(ctx, topic, include_operations)
    if not ctx.allows(Operation.DESCRIBE, ResourceType.TOPIC, name):  # whether it exists or not
        return error_entry(ErrorCode.TOPIC_AUTHORIZATION_FAILED, name)
    topic = topics.get(name)
    if topic is not None:
        return topic_entry(ctx, topic, include_operations)
    if topic_name_problem(name):
        return error_entry(ErrorCode.INVALID_TOPIC_EXCEPTION, name)
    if not may_create:
        return error_entry(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, name)
    if not (ctx.allows(Operation.CREATE, ResourceType.CLUSTER, log_denied=False) or ctx.allows(Operation.CREATE, ResourceType.TOPIC, name)):
        return error_entry(ErrorCode.TOPIC_AUTHORIZATION_FAILED, name)
    if ctx.broker.controller is not None:  # a cluster: asked for, answered when the client asks again
        topics.request_create(name, ctx.broker.config["num.partitions"], ctx.broker.config["default.replication.factor"])
        return error_entry(ErrorCode.LEADER_NOT_AVAILABLE, name)
    try:
        topic = await ctx.broker.create_topic(name, ctx.broker.config["num.partitions"], {})
    except TopicError as e:
        if e.error_code != ErrorCode.TOPIC_ALREADY_EXISTS or topics.get(name) is None:
            return error_entry(e.error_code, name)
        topic = topics.get(name)  # created by another request meanwhile
    log.info("auto-created topic %s for %s", name, ctx.peer)
    return topic_entry(ctx, topic, include_operations)
