"""Serving an ASGI application (the schema registry, the console) with hypercorn on Trio, on
sockets bound beforehand, so a taken port is known before anything starts."""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Any, AsyncIterator, Optional

import trio

# A body too large is still read (and dropped) up to this much or this long before it is
# refused: closed with the body unread, the connection would be reset under a client still
# sending it, which would then never read why.
DRAINED_BODY_BYTES, DRAIN_SECONDS = 16 << 20, 5.0


def bind(addresses: list[tuple[str, int]]) -> list[socket.socket]:
    """Listening sockets for `addresses`: OSError (a port taken) here, before anything starts."""
    sockets: list[socket.socket] = []
    try:
        for host, port in addresses:
            if not host and socket.has_dualstack_ipv6():  # every address, IPv4 and IPv6
                sockets.append(socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=128))
                continue
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sockets.append(socket.create_server((host, port), family=family, backlog=128))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def is_loopback(host: str) -> bool:
    """Whether listening on `host` reaches this machine only ("" and 0.0.0.0 reach every interface)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def urls_of(sockets: list[socket.socket]) -> list[str]:
    urls = []
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        urls.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
    return urls


async def serve_app(app: Any, sockets: list[socket.socket], log_name: str, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serves `app` on `sockets` (which hypercorn then owns and closes) until cancelled."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as serve_http

    config = Config()
    config.bind = [f"fd://{sock.detach()}" for sock in sockets]
    config.accesslog = None
    config.errorlog = logging.getLogger(log_name)
    config.graceful_timeout = 1.0
    await serve_http(app, config, task_status=task_status)


def declared_length(request: Any) -> int:
    """The body size a request's Content-Length declares; 0 when it declares none (chunked)."""
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else 0


async def read_body_within(request: Any, limit: int) -> Optional[bytes]:
    """A Starlette request's body, or None when it is larger than `limit` bytes, declared or
    sent; then the rest is read and dropped first (`DRAINED_BODY_BYTES`, `DRAIN_SECONDS`), for
    the caller to refuse it with an answer the client reads."""
    declared_size = declared_length(request)
    if declared_size > max(limit, DRAINED_BODY_BYTES):
        return None  # more than a drain would read: the client is reset either way
    chunks = request.stream()
    try:
        pieces, received = [], 0
        async for chunk in chunks:
            received += len(chunk)
            if received > limit or declared_size > limit:
                await drop_rest(chunks, received)
                return None
            pieces.append(chunk)
        return None if declared_size > limit else b"".join(pieces)
    finally:
        await chunks.aclose()


async def drop_rest(chunks: AsyncIterator[bytes], received: int) -> None:
    """Reads and drops what is left of a body, up to `DRAINED_BODY_BYTES` in all or for
    `DRAIN_SECONDS`; a client that hangs up meanwhile ends it too."""
    from starlette.requests import ClientDisconnect

    with trio.move_on_after(DRAIN_SECONDS):
        try:
            async for chunk in chunks:
                received += len(chunk)
                if received > DRAINED_BODY_BYTES:
                    return
        except ClientDisconnect:
            return
