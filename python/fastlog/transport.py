"""How a connection's bytes move: straight on the socket, or through TLS.

`PlainTransport` receives into the caller's buffer, sends a burst of responses with one
`sendmsg` and file regions (a Fetch's record data) with `sendfile`, from the page cache to the
socket without passing through Python. `TlsTransport` runs the same calls through a
`trio.SSLStream`: record data has to be encrypted in this process, so a file region is read
in large pieces (`TLS_READ_BYTES`) and sent as TLS records; kernel TLS is out of reach while
trio's TLS runs over memory buffers. One task may receive while another sends on either.
"""

from __future__ import annotations

import os
from typing import Any, Union

import trio

from fastlog.framing import ConnectionClosed

IOV_MAX = 1024
TLS_READ_BYTES = 1 << 20  # a file region is encrypted and sent in pieces of this size


class PlainTransport:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.socket = stream.socket

    async def wait_readable(self) -> None:
        await trio.lowlevel.wait_readable(self.socket)

    async def recv_into(self, target: memoryview) -> int:
        return await self.socket.recv_into(target)

    async def send_buffers(self, buffers: list) -> None:
        views = [memoryview(b).cast("B") for b in buffers]
        while views:
            sent = await self.socket.sendmsg(views[:IOV_MAX])
            while views and sent >= len(views[0]):
                sent -= len(views.pop(0))
            if sent:
                views[0] = views[0][sent:]

    async def send_region(self, region: Any) -> None:
        """Sends a file region (a `FileSlice`) from the page cache straight to the socket."""
        sock = self.socket
        offset, remaining = region.position, len(region)
        while remaining:
            await trio.lowlevel.wait_writable(sock)
            try:
                sent = os.sendfile(sock.fileno(), region.fileno(), offset, remaining)
            except BlockingIOError:
                continue
            if sent == 0:
                raise ConnectionClosed("segment file shrank under a fetch being sent", "internal_error")
            offset += sent
            remaining -= sent

    async def aclose(self) -> None:
        await self.stream.aclose()


class TlsTransport:
    def __init__(self, stream: trio.SSLStream) -> None:
        self.stream = stream

    async def wait_readable(self) -> None:
        return  # TLS may hold decrypted bytes already: the socket's readiness says nothing

    async def recv_into(self, target: memoryview) -> int:
        data = await self.stream.receive_some(len(target))
        target[: len(data)] = data
        return len(data)

    async def send_buffers(self, buffers: list) -> None:
        await self.stream.send_all(b"".join(buffers) if len(buffers) > 1 else buffers[0])

    async def send_region(self, region: Any) -> None:
        offset, remaining = region.position, len(region)
        while remaining:
            # A read from a cold file waits on the disk: in a worker thread, not the event loop.
            piece = await trio.to_thread.run_sync(os.pread, region.fileno(), min(remaining, TLS_READ_BYTES), offset)
            if not piece:
                raise ConnectionClosed("segment file shrank under a fetch being sent", "internal_error")
            await self.stream.send_all(piece)
            offset += len(piece)
            remaining -= len(piece)

    async def aclose(self) -> None:
        await self.stream.aclose()


Transport = Union[PlainTransport, TlsTransport]
