"""DeleteTopics (20): delete topics with their partition logs.

v0-v6. v0-v5 name topics in `topic_names`; v6 in `topics`, each by name or by id (both or
neither: INVALID_REQUEST). A name or id given twice gets INVALID_REQUEST "Duplicate topic
name." / "Duplicate topic id.". An unknown name is UNKNOWN_TOPIC_OR_PARTITION, an unknown id
UNKNOWN_TOPIC_ID. With `delete.topic.enable=false` every topic is refused: TOPIC_DELETION_DISABLED
(v3+), INVALID_REQUEST before v3, as Kafka does. Deletion is immediate (fetches parked on the
topic are woken); v5+ carry error messages, v6 the topic id of each result.
"""

from __future__ import annotations

import logging
import uuid
from typing import Optional

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.handlers.configs import duplicates
from fastlog.log_manager import TopicError
from fastlog.protocol import ErrorCode
from fastlog.quotas import MutationQuota
from fastlog.security.acls import Operation, ResourceType

log = logging.getLogger(__name__)
R = protocol.DeleteTopicsResponse
ZERO_UUID = uuid.UUID(int=0)


def result(name: Optional[str], topic_id: uuid.UUID, code: int = 0, message: Optional[str] = None) -> object:
    return R.DeletableTopicResult(name=name, topic_id=topic_id, error_code=code, error_message=message)


def wanted_topics(ctx: RequestContext, request) -> list[tuple[Optional[str], uuid.UUID]]:
    if ctx.api_version < 6:
        return [(name, ZERO_UUID) for name in request.topic_names]
    return [(t.name, t.topic_id) for t in request.topics]


async def delete_one(ctx: RequestContext, name: Optional[str], topic_id: uuid.UUID) -> object:
    topics = ctx.broker.topics
    if name is not None and topic_id != ZERO_UUID:
        return result(name, topic_id, ErrorCode.INVALID_REQUEST, "You may not specify both topic name and topic id.")
    if name is None and topic_id == ZERO_UUID:
        return result(None, topic_id, ErrorCode.INVALID_REQUEST, "Neither topic name nor id were specified.")
    if name is None:
        topic = topics.by_id(topic_id)
        if topic is None:
            return result(None, topic_id, ErrorCode.UNKNOWN_TOPIC_ID, "This server does not host this topic ID.")
        if not ctx.allows(Operation.DESCRIBE, ResourceType.TOPIC, topic.name):
            return result(None, topic_id, ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")
    else:
        # Kafka's order: a client that may not describe the topic cannot learn whether it exists
        if not ctx.allows(Operation.DESCRIBE, ResourceType.TOPIC, name):
            return result(name, topic_id, ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")
        topic = topics.get(name)
        if topic is None:
            return result(name, topic_id, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition.")
    if not ctx.allows(Operation.DELETE, ResourceType.TOPIC, topic.name):
        return result(name, topic_id, ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")
    try:
        await topics.delete(topic.name)
    except TopicError as e:
        return result(topic.name, topic.id, e.error_code, e.message)
    log.info("%s deleted topic %s", ctx.peer, topic.name)
    return result(topic.name, topic.id)


@handles(20, 0, 6)
async def handle(ctx: RequestContext, request):
    wanted = wanted_topics(ctx, request)
    if not ctx.broker.config["delete.topic.enable"]:
        code = ErrorCode.TOPIC_DELETION_DISABLED if ctx.api_version >= 3 else ErrorCode.INVALID_REQUEST
        return R(throttle_time_ms=0, responses=[result(n, i, code, "Topic deletion is disabled.") for n, i in wanted])
    repeated_names = duplicates(n for n, _ in wanted if n is not None)
    repeated_ids = duplicates(i for n, i in wanted if n is None and i != ZERO_UUID)
    results = [result(n, ZERO_UUID, ErrorCode.INVALID_REQUEST, "Duplicate topic name.") for n in sorted(repeated_names)]
    results += [result(None, i, ErrorCode.INVALID_REQUEST, "Duplicate topic id.") for i in sorted(repeated_ids)]
    mutations = MutationQuota(ctx.broker.quotas, ctx.principal, ctx.header.client_id, strict=ctx.api_version >= 5)
    async with ctx.broker.topic_changes():
        for name, topic_id in wanted:
            if name in repeated_names or (name is None and topic_id in repeated_ids):
                continue
            if mutations.exceeded():
                results.append(result(name, topic_id, ErrorCode.THROTTLING_QUOTA_EXCEEDED, MutationQuota.REFUSAL))
                continue
            before = ctx.broker.topics.get(name) if name is not None else ctx.broker.topics.by_id(topic_id)
            deleted = await delete_one(ctx, name, topic_id)
            if not deleted.error_code and before is not None:
                mutations.charge(len(before.assignments))
            results.append(deleted)
    for refused in (r for r in results if r.error_code):
        log.info("%s: deleting topic %s refused with %s: %s", ctx.peer, refused.name or refused.topic_id, ErrorCode(refused.error_code).name, refused.error_message)
    return R(throttle_time_ms=mutations.throttle_ms, responses=results)
