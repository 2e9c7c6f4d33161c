"""The web console: topics, messages, consumer lag, schemas and the cluster at a glance.

- `cluster_view.py`: what the pages show and do, through fastlog's Kafka client (so it works
  against any Kafka-compatible cluster, and the cluster's ACLs apply to every action);
- `decode.py`: how keys and values are shown (JSON, text, hex, Avro through a registry);
- `history.py`: the last 15 minutes of samples behind the charts;
- `app.py`: the JSON endpoints and the pages (`static/`: plain HTML, CSS and ES modules).

A broker serves it beside `/metrics` (`serve_with_metrics`); `fastlog console` serves it alone
against any cluster (`serve`).
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any, Optional

import trio

from fastlog.console.app import Console, ConsoleSettings, build_app
from fastlog.config import http_listener_addresses
from fastlog.http_serving import is_loopback, serve_app, urls_of
from fastlog.security.client_side import ClientSecurity

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from fastlog.broker import Broker

__all__ = ["Console", "ConsoleSettings", "broker_settings", "serve"]

log = logging.getLogger(__name__)
# The order in which a broker's console picks one of its own listeners to reach it through: a
# SASL one where there is one, so that people log in as themselves rather than borrowing the
# console's place on a listener the brokers themselves may use unauthenticated
LISTENER_PREFERENCE = ("SASL_PLAINTEXT", "SASL_SSL", "PLAINTEXT", "SSL")
CONSOLE_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def broker_settings(broker: "Broker") -> ConsoleSettings:
    """A broker's console: a client of its own listener (the first of LISTENER_PREFERENCE),
    its own schema registry, and its socket counters. Read-only unless it listens on loopback
    only, or console.read.only=false is set."""
    config = broker.config
    console_hosts = [h for h, _ in http_listener_addresses(config["console.listeners"], "console.listeners")] or [config["metrics.host"]]
    loopback = all(is_loopback(h) for h in console_hosts)
    read_only = config["console.read.only"] if "console.read.only" in config.explicit else not loopback
    listeners = sorted(config.client_listeners, key=lambda l: LISTENER_PREFERENCE.index(l.protocol))
    chosen = listeners[0]
    security = ClientSecurity(chosen.protocol)
    if chosen.protocol in ("SSL", "SASL_SSL"):
        # Its own listener on loopback: the connection never leaves this process's host, and
        # the broker's certificate need not name "127.0.0.1".
        security.tls = ssl.create_default_context()
        security.tls.check_hostname = False
        security.tls.verify_mode = ssl.CERT_NONE
    mechanisms: tuple[str, ...] = ()
    if security.uses_sasl:
        enabled = {m.strip().upper() for m in config["sasl.enabled.mechanisms"].split(",")}
        mechanisms = tuple(m for m in CONSOLE_MECHANISMS if m in enabled)
        security.mechanism = mechanisms[0] if mechanisms else "PLAIN"

    def bootstrap() -> str:
        index = config.client_listeners.index(chosen)
        host, port = broker.bound[index]
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def counters() -> dict:
        return {"bytes_in": broker.metrics.bytes_in, "bytes_out": broker.metrics.bytes_out}

    return ConsoleSettings(
        bootstrap=bootstrap,
        security=security,
        read_only=read_only,
        registry_url=lambda: broker.schema_registry_url,
        sample_seconds=config["console.sample.interval.ms"] / 1000,
        local_counters=counters,
        metrics=True,
        login_mechanisms=mechanisms,
        loopback_only=loopback,
    )


async def serve(console: Console, sockets: list[socket.socket], extra_routes: "Optional[list[BaseRoute]]" = None,
                *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serves the console (and `extra_routes`, a broker's /metrics) on `sockets` until
    cancelled; `task_status.started(urls)` once listening."""
    urls = urls_of(sockets)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(console.run)
            await nursery.start(serve_app, build_app(console, extra_routes), sockets, "fastlog.console.http")
            task_status.started(urls)
    finally:
        console.close()
