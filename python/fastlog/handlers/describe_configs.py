"""DescribeConfigs (32): the configs of topics, of this broker, and its loggers' levels.

v0-v4. Resource types: TOPIC (2) - every topic config with its effective value (unknown topic:
UNKNOWN_TOPIC_OR_PARTITION, illegal name: INVALID_TOPIC_EXCEPTION); BROKER (4) - the broker's
settings, read-only, named by this node's id (another id or a non-number: INVALID_REQUEST;
"" is the cluster-wide dynamic default resource, which, as in Kafka, lists only dynamic
defaults: none here); BROKER_LOGGER (8) - the Python loggers' effective levels in Kafka's level
names. Other types are INVALID_REQUEST. `configuration_keys` null means all; unknown keys are
left out. Sources (v1+, see handlers.configs): DYNAMIC_TOPIC_CONFIG for topic overrides,
STATIC_BROKER_CONFIG when the value comes from an explicitly set broker key, else
DEFAULT_CONFIG; v0 answers `is_default` instead. Synonyms (v1+) when asked for;
config_type and documentation (v3+) when `include_documentation`. Nothing is sensitive.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.handlers.configs import (
    BROKER,
    BROKER_LOGGER,
    DEFAULT_CONFIG,
    TOPIC,
    AdminError,
    ConfigEntry,
    broker_config_entries,
    check_broker_name,
    config_refusal,
    logger_entries,
    topic_config_entries,
)
from fastlog.log_manager import topic_name_problem
from fastlog.protocol import ErrorCode
from fastlog.security.acls import Operation

R = protocol.DescribeConfigsResponse


def entries_for(ctx: RequestContext, resource) -> list[ConfigEntry]:
    if resource.resource_type == TOPIC:
        problem = topic_name_problem(resource.resource_name)
        if problem:
            raise AdminError(ErrorCode.INVALID_TOPIC_EXCEPTION, problem)
        topic = ctx.broker.topics.get(resource.resource_name)
        if topic is None:
            raise AdminError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{resource.resource_name}' does not exist.")
        effective = {**ctx.broker.logs.defaults, **topic.configs}
        return topic_config_entries(ctx.broker.config, effective, topic.configs)
    if resource.resource_type == BROKER:
        check_broker_name(ctx.broker.node_id, resource.resource_name)
        return [] if resource.resource_name == "" else broker_config_entries(ctx.broker.config)
    if resource.resource_type == BROKER_LOGGER:
        check_broker_name(ctx.broker.node_id, resource.resource_name)
        return logger_entries()
    raise AdminError(ErrorCode.INVALID_REQUEST, f"Unsupported resource type {resource.resource_type}")


def encode_entry(ctx: RequestContext, entry: ConfigEntry, synonyms: bool, documentation: bool) -> object:
    version = ctx.api_version
    out = R.DescribeConfigsResourceResult(
        name=entry.name, value=entry.value, read_only=entry.read_only, is_sensitive=False
    )
    if version == 0:
        out.is_default = entry.source == DEFAULT_CONFIG
    else:
        out.config_source = entry.source
        if synonyms:
            out.synonyms = [R.DescribeConfigsSynonym(name=n, value=v, source=s) for n, v, s in entry.synonyms]
    if version >= 3 and documentation:
        out.config_type = entry.config_type
        out.documentation = entry.doc
    return out


def describe(ctx: RequestContext, resource, synonyms: bool, documentation: bool) -> object:
    out = R.DescribeConfigsResult(
        error_code=0, error_message=None, resource_type=resource.resource_type, resource_name=resource.resource_name
    )
    refusal = config_refusal(ctx, resource, Operation.DESCRIBE_CONFIGS)
    if refusal is not None:
        out.error_code, out.error_message = refusal
        return out
    try:
        entries = entries_for(ctx, resource)
    except AdminError as e:
        out.error_code, out.error_message = e.error_code, e.message
        return out
    keys = resource.configuration_keys
    if keys is not None:
        wanted = set(keys)
        entries = [e for e in entries if e.name in wanted]
    out.configs = [encode_entry(ctx, e, synonyms, documentation) for e in entries]
    return out


@handles(32, 0, 4)
async def handle(ctx: RequestContext, request):
    synonyms = ctx.api_version >= 1 and request.include_synonyms
    documentation = ctx.api_version >= 3 and request.include_documentation
    results = [describe(ctx, r, synonyms, documentation) for r in request.resources]
    return R(throttle_time_ms=0, results=results)
