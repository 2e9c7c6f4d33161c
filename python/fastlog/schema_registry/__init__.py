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

if TYPE_CHECKING:
    from fastlog.security.client_side import ClientSecurity
    from fastlog.schema_registry.registry import SchemaRegistry

log = logging.getLogger(__name__)


def new_registry(bootstrap: str, topic: str = "_schemas", replication_factor: int = -1, brokers_wait: float = 0.0,
                 security: "Optional[ClientSecurity]" = None) -> "SchemaRegistry":
    """`brokers_wait`: how long a starting cluster may take to have 3 live brokers before the
    topic is created (replication factor -1) with fewer replicas."""
    from fastlog.schema_registry.registry import SchemaRegistry
    from fastlog.schema_registry.topic import SchemasTopic

    return SchemaRegistry(SchemasTopic(bootstrap, topic, replication_factor, brokers_wait=brokers_wait, security=security))


def bind(addresses: list[tuple[str, int]]) -> list[socket.socket]:
    """Listening sockets for `addresses`: OSError (a port taken) here, before anything starts."""
    sockets: list[socket.socket] = []
    try:
        for host, port in addresses:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sockets.append(socket.create_server((host, port), family=family, backlog=128))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def serve(registry: "SchemaRegistry", sockets: list[socket.socket], *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Runs `registry` on the listening `sockets` (from `bind`) until cancelled;
    `task_status.started(urls)` once listening."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as serve_http

    from fastlog.schema_registry.api import build_app

    urls = []
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        urls.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
    config = Config()
    config.bind = [f"fd://{sock.detach()}" for sock in sockets]  # hypercorn owns (and closes) them now
    config.accesslog = None
    config.errorlog = logging.getLogger("fastlog.schema_registry.http")
    config.graceful_timeout = 1.0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(registry.run)
        await nursery.start(serve_http, build_app(registry), config)
        log.info("schema registry on %s (topic %s)", ", ".join(urls), registry.topic.name)
        task_status.started(urls)
