"""AlterConfigs (33): the legacy, non-incremental config change.

v0-v2 (same semantics; v2 flexible). For a TOPIC the request's configs REPLACE the topic's
whole set of overrides (a key left out goes back to its default), as Kafka's legacy API does;
the set is validated first (unknown key, null or bad value: INVALID_CONFIG) and nothing is
changed when any of it is bad. The change is persisted and applied to the topic's logs at once.
`validate_only` checks without changing. BROKER resources (named by this node's id or "") are
accepted only with no configs - fastlog has no dynamic broker configs - else INVALID_REQUEST;
BROKER_LOGGER and other types are INVALID_REQUEST (Kafka refuses loggers here too). A
resource named twice is INVALID_REQUEST; an unknown topic UNKNOWN_TOPIC_OR_PARTITION.
"""

from __future__ import annotations

import logging

from fastlog import protocol
from fastlog.config import ConfigError, validate_topic_configs
from fastlog.handlers import RequestContext, handles
from fastlog.handlers.configs import BROKER, TOPIC, AdminError, alter_each, check_broker_name, duplicates
from fastlog.log_manager import topic_name_problem
from fastlog.protocol import ErrorCode

log = logging.getLogger(__name__)
R = protocol.AlterConfigsResponse


def response(resource, code: int = 0, message=None) -> object:
    return R.AlterConfigsResourceResponse(
        error_code=code, error_message=message, resource_type=resource.resource_type, resource_name=resource.resource_name
    )


def check_topic(ctx: RequestContext, name: str) -> None:
    problem = topic_name_problem(name)
    if problem:
        raise AdminError(ErrorCode.INVALID_TOPIC_EXCEPTION, problem)
    if ctx.broker.topics.get(name) is None:
        raise AdminError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist.")


def new_overrides(resource) -> dict:
    names = [c.name for c in resource.configs]
    if duplicates(names):
        raise AdminError(ErrorCode.INVALID_REQUEST, f"duplicate config keys: {', '.join(sorted(duplicates(names)))}")
    try:
        return validate_topic_configs({c.name: c.value for c in resource.configs})
    except ConfigError as e:
        raise AdminError(ErrorCode.INVALID_CONFIG, str(e)) from None


async def alter(ctx: RequestContext, resource, validate_only: bool) -> None:
    if resource.resource_type == BROKER:
        check_broker_name(ctx.broker.node_id, resource.resource_name)
        if resource.configs:
            raise AdminError(ErrorCode.INVALID_REQUEST, "dynamic broker configs are not supported")
        return
    if resource.resource_type != TOPIC:
        raise AdminError(ErrorCode.INVALID_REQUEST, f"AlterConfigs does not support resource type {resource.resource_type}")
    check_topic(ctx, resource.resource_name)
    overrides = new_overrides(resource)
    if validate_only:
        return
    await ctx.broker.topics.set_configs(resource.resource_name, overrides)
    log.info("%s replaced configs of topic %s", ctx.peer, resource.resource_name)


@handles(33, 0, 2)
async def handle(ctx: RequestContext, request):
    return R(throttle_time_ms=0, responses=await alter_each(ctx, request, alter, response))
