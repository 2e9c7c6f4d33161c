"""IncrementalAlterConfigs (44): change single configs of a topic or a logger's level.

v0-v1 (same semantics; v1 flexible). Operations: SET (0) a value, DELETE (1) an override
(back to the default; deleting a key that is not set is a no-op), APPEND (2) / SUBTRACT (3)
items of a list config (only `cleanup.policy`; others: INVALID_CONFIG), starting from the
effective value as Kafka does. The resulting set of overrides is validated as a whole (unknown
key, bad value: INVALID_CONFIG; SET with a null value: INVALID_REQUEST; a key named twice or an
unknown operation: INVALID_REQUEST), then persisted and applied to the topic's logs; nothing
changes when any op is bad, or with `validate_only`. BROKER resources are refused
(INVALID_REQUEST, no dynamic broker configs) unless they carry no ops; BROKER_LOGGER takes SET
(a Kafka level name: TRACE, DEBUG, INFO, WARN, ERROR, FATAL, OFF, ALL) and DELETE.
"""

from __future__ import annotations

import logging
from typing import Any

from fastlog import protocol
from fastlog.config import TOPIC_CONFIGS, ConfigError, config_text, validate_topic_configs
from fastlog.handlers import RequestContext, handles
from fastlog.handlers.alter_configs import check_topic
from fastlog.handlers.configs import (
    alter_each,
    BROKER,
    BROKER_LOGGER,
    LIST,
    TOPIC,
    AdminError,
    check_broker_name,
    config_type,
    duplicates,
    parse_level,
    set_logger_level,
)
from fastlog.protocol import ErrorCode

log = logging.getLogger(__name__)
R = protocol.IncrementalAlterConfigsResponse
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
OPERATION_NAMES = {SET: "SET", DELETE: "DELETE", APPEND: "APPEND", SUBTRACT: "SUBTRACT"}


def response(resource, code: int = 0, message=None) -> object:
    return R.AlterConfigsResourceResponse(
        error_code=code, error_message=message, resource_type=resource.resource_type, resource_name=resource.resource_name
    )


def check_ops(resource) -> None:
    names = [c.name for c in resource.configs]
    if duplicates(names):
        raise AdminError(ErrorCode.INVALID_REQUEST, f"duplicate config keys: {', '.join(sorted(duplicates(names)))}")
    for op in resource.configs:
        if op.config_operation not in OPERATION_NAMES:
            raise AdminError(ErrorCode.INVALID_REQUEST, f"unknown config operation {op.config_operation} for {op.name}")
        if op.config_operation != DELETE and op.value is None:
            raise AdminError(ErrorCode.INVALID_REQUEST, f"Null value not supported for : {op.name}")


def list_items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def apply_op(overrides: dict[str, Any], effective: dict[str, Any], op) -> None:
    """Applies one op to `overrides` (raw text values for the keys it touches)."""
    if op.config_operation == SET:
        overrides[op.name] = op.value
        return
    if op.config_operation == DELETE:
        overrides.pop(op.name, None)
        return
    spec = TOPIC_CONFIGS.get(op.name)
    if spec is None:
        raise AdminError(ErrorCode.INVALID_CONFIG, f"unknown topic config {op.name!r}")
    if config_type(spec.parse) != LIST:
        verb = OPERATION_NAMES[op.config_operation]
        raise AdminError(ErrorCode.INVALID_CONFIG, f"Can't {verb} to key {op.name} because its type is not LIST.")
    current = list_items(config_text(overrides.get(op.name, effective[op.name])))
    if op.config_operation == APPEND:
        current += [item for item in list_items(op.value) if item not in current]
    else:
        removed = set(list_items(op.value))
        current = [item for item in current if item not in removed]
    # An emptied list is refused by validation, as Kafka refuses an empty cleanup.policy.
    overrides[op.name] = ",".join(current)


async def alter_topic(ctx: RequestContext, resource, validate_only: bool) -> None:
    check_topic(ctx, resource.resource_name)
    topic = ctx.broker.topics.get(resource.resource_name)
    effective = {**ctx.broker.logs.defaults, **topic.configs}
    overrides: dict[str, Any] = {k: config_text(v) for k, v in topic.configs.items()}
    for op in resource.configs:
        apply_op(overrides, effective, op)
    try:
        parsed = validate_topic_configs(overrides)
    except ConfigError as e:
        raise AdminError(ErrorCode.INVALID_CONFIG, str(e)) from None
    if validate_only:
        return
    await ctx.broker.topics.set_configs(topic.name, parsed)
    log.info("%s altered configs of topic %s", ctx.peer, topic.name)


def alter_loggers(ctx: RequestContext, resource, validate_only: bool) -> None:
    check_broker_name(ctx.broker.node_id, resource.resource_name)
    for op in resource.configs:
        if op.config_operation not in (SET, DELETE):
            raise AdminError(ErrorCode.INVALID_REQUEST, f"{OPERATION_NAMES[op.config_operation]} is not supported for loggers")
    for op in resource.configs:  # every level is checked before any changes
        parse_level(op.name, op.value if op.config_operation == SET else None)
    if not validate_only:
        for op in resource.configs:
            set_logger_level(op.name, op.value if op.config_operation == SET else None)
        log.info("%s set logger levels %s", ctx.peer, {op.name: op.value for op in resource.configs})


async def alter(ctx: RequestContext, resource, validate_only: bool) -> None:
    check_ops(resource)
    if resource.resource_type == TOPIC:
        await alter_topic(ctx, resource, validate_only)
    elif resource.resource_type == BROKER_LOGGER:
        alter_loggers(ctx, resource, validate_only)
    elif resource.resource_type == BROKER:
        check_broker_name(ctx.broker.node_id, resource.resource_name)
        if resource.configs:
            raise AdminError(ErrorCode.INVALID_REQUEST, "dynamic broker configs are not supported")
    else:
        raise AdminError(ErrorCode.INVALID_REQUEST, f"Unsupported resource type {resource.resource_type}")


@handles(44, 0, 1)
async def handle(ctx: RequestContext, request):
    return R(throttle_time_ms=0, responses=await alter_each(ctx, request, alter, response))
