"""A schema registry built into fastlog: Confluent Schema Registry's REST API, its schemas kept
in the compacted `_schemas` topic in Confluent's layout.

- `schema_types.py`, `json_compatibility.py`, `compatibility.py`: parsing schemas and the
  compatibility levels;
- `state.py`: the topic's records applied in order (what every instance agrees on);
- `topic.py`: reading and writing the topic through fastlog's Kafka client;
- `registry.py`: the operations; `api.py`: the HTTP routes; `serve()` below runs both, in a
  broker (`schema.registry.listeners`) or alone (`fastlog schema-registry`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from fastlog.schema_registry.registry import SchemaRegistry

log = logging.getLogger(__name__)


def new_registry(bootstrap: str, topic: str = "_schemas", replication_factor: int = -1) -> "SchemaRegistry":
    from fastlog.schema_registry.registry import SchemaRegistry
    from fastlog.schema_registry.topic import SchemasTopic

    return SchemaRegistry(SchemasTopic(bootstrap, topic, replication_factor))


async def serve(registry: "SchemaRegistry", addresses: list[tuple[str, int]], *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Runs `registry` on `addresses` until cancelled; `task_status.started(urls)` once
    listening."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as serve_http

    from fastlog.schema_registry.api import build_app

    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in addresses]
    config.accesslog = None
    config.errorlog = logging.getLogger("fastlog.schema_registry.http")
    config.graceful_timeout = 1.0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(registry.run)
        urls = await nursery.start(serve_http, build_app(registry), config)
        log.info("schema registry on %s (topic %s)", ", ".join(urls), registry.topic.name)
        task_status.started(urls)
