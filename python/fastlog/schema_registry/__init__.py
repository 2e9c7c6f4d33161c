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
import socket
from typing import TYPE_CHECKING, Any, Optional

import trio

from fastlog.http_serving import bind, serve_app, urls_of

if TYPE_CHECKING:
    from fastlog.security.client_side import ClientSecurity
    from fastlog.schema_registry.registry import SchemaRegistry

__all__ = ["bind", "new_registry", "serve"]

log = logging.getLogger(__name__)


def new_registry(bootstrap: str, topic: str = "_schemas", replication_factor: int = -1, brokers_wait: float = 0.0,
                 security: "Optional[ClientSecurity]" = None) -> "SchemaRegistry":
    """`brokers_wait`: how long a starting cluster may take to have 3 live brokers before the
    topic is created (replication factor -1) with fewer replicas."""
    from fastlog.schema_registry.registry import SchemaRegistry
    from fastlog.schema_registry.topic import SchemasTopic

    return SchemaRegistry(SchemasTopic(bootstrap, topic, replication_factor, brokers_wait=brokers_wait, security=security))


async def serve(registry: "SchemaRegistry", sockets: list[socket.socket], *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Runs `registry` on the listening `sockets` (from `bind`) until cancelled;
    `task_status.started(urls)` once listening."""
    from fastlog.schema_registry.api import build_app

    urls = urls_of(sockets)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(registry.run)
        await nursery.start(serve_app, build_app(registry), sockets, "fastlog.schema_registry.http")
        log.info("schema registry on %s (topic %s)", ", ".join(urls), registry.topic.name)
        task_status.started(urls)
