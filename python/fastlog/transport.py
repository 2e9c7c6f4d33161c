"""How a connection's bytes move: straight on the socket, or through TLS.

`PlainTransport` receives into the caller's buffer, sends a burst of responses with one
`writev` and file regions (a Fetch's record data) with `sendfile`, from the page cache to the
socket without passing through Python. `TlsTransport` runs the same calls through a
`trio.SSLStream`: record data has to be encrypted in this process, so a file region is read
in large pieces (`TLS_READ_BYTES`: on the loop what the page cache holds, in a worker thread
what it does not) and sent as TLS records; kernel TLS is out of reach while trio's TLS runs
over memory buffers. One task may receive while another sends on either.
"""

from __future__ import annotations

import os
import re
import ssl
from typing import Any, Optional, Union

import trio

from fastlog.framing import ConnectionClosed

IOV_MAX = 1024
HOLD_SECONDS = 0.0005  # the longest a busy connection runs before letting the others run
TLS_READ_BYTES = 1 << 20  # a file region is encrypted and sent in pieces of this size
READ_NOWAIT = getattr(os, "RWF_NOWAIT", None)  # Linux 4.14+: a read that fails rather than wait on the disk


def trio_ssl_checked(version: str) -> bool:
    """Whether this trio release's SSLStream was read for `TlsTransport.recv_ready` (0.25-0.35).
    A version string it cannot read counts as not checked."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return match is not None and (0, 25) <= (int(match[1]), int(match[2])) < (0, 36)


TRIO_SSL_CHECKED = trio_ssl_checked(trio.__version__)


class LoopTurns:
    """When a connection lets the other tasks of its loop run. trio's own socket methods yield
    to the scheduler after every call that succeeds: a pass of the run loop (an `epoll_wait`)
    per receive and per send, a third of a busy loop's time with small requests. A connection
    here yields when it waits, or once it has held the loop for `HOLD_SECONDS`; and a
    cancellation is seen before each call, as with trio's methods."""

    def __init__(self) -> None:
        # The loop's clock (trio time), read directly: trio.current_time() costs two more calls,
        # and a request reads the clock about ten times.
        self.now = trio.lowlevel.current_clock().current_time
        self.held_since = self.now()  # when this connection last got the loop back

    async def share_the_loop(self) -> None:
        """Called before a step (a system call, a frame taken from the buffer): raises if the
        task is cancelled, and yields if the connection has held the loop for HOLD_SECONDS. A
        cancellation here loses nothing, as nothing has been received or sent yet."""
        if self.now() - self.held_since >= HOLD_SECONDS:
            await trio.lowlevel.checkpoint()
            self.held_since = self.now()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()

    def waited(self) -> None:
        self.held_since = self.now()


class PlainTransport(LoopTurns):
    """Receives and sends with the system call first, waiting on the socket only when it would
    block."""

    def __init__(self, stream: trio.SocketStream) -> None:
        super().__init__()
        self.stream = stream
        self.socket = stream.socket

    async def wait_readable(self) -> None:
        await trio.lowlevel.wait_readable(self.socket)
        self.waited()

    def recv_ready(self, target: memoryview) -> Optional[int]:
        """What the socket holds already, received without waiting: None when it holds nothing."""
        try:
            # fileno() each time: -1 once the socket is closed, never a reused number
            return os.readv(self.socket.fileno(), (target,))
        except BlockingIOError:
            return None

    async def recv_into(self, target: memoryview) -> int:
        await self.share_the_loop()
        while (received := self.recv_ready(target)) is None:
            await self.wait_readable()
        return received

    async def send_buffers(self, buffers: list) -> None:
        await self.share_the_loop()
        views: list = buffers
        while views:
            try:
                sent = os.writev(self.socket.fileno(), views[:IOV_MAX])
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.socket)
                self.waited()
                continue
            except OSError as e:  # as a receive's (framing.py): the peer is gone, not a fault here
                raise trio.BrokenResourceError(str(e)) from e
            if views is buffers:  # rarely all in one call with IOV_MAX or more, or a full socket buffer
                if len(buffers) <= IOV_MAX and sent == sum(map(byte_length, buffers)):
                    return
                views = [memoryview(b).cast("B") for b in buffers]
            while views and sent >= len(views[0]):
                sent -= len(views.pop(0))
            if sent:
                views[0] = views[0][sent:]

    async def send_region(self, region: Any) -> None:
        """Sends a file region (a `FileSlice`) from the page cache straight to the socket. As
        with `send_buffers`, the system call comes first: a wait for a writable socket before
        each call was a pass of the run loop and two epoll registrations per Fetch answer."""
        sock = self.socket
        offset, remaining = region.position, len(region)
        while remaining:
            await self.share_the_loop()
            try:
                sent = os.sendfile(sock.fileno(), region.fileno(), offset, remaining)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                self.waited()
                continue
            if sent == 0:
                raise ConnectionClosed("segment file shrank under a fetch being sent", "internal_error")
            offset += sent
            remaining -= sent

    async def aclose(self) -> None:
        await self.stream.aclose()


class TlsTransport(LoopTurns):
    def __init__(self, stream: trio.SSLStream) -> None:
        super().__init__()
        self.stream = stream
        # trio's SSLStream decrypts one TLS record (at most 16 KiB) per receive_some, each a
        # pass of the run loop: a 1 MB produce took 64. The records it has received already
        # are decrypted here instead, without a pass, by its own SSLObject. That relies on
        # trio's private attributes and on its keeping no plaintext of its own, as checked for
        # the releases below; with any other, every receive is trio's own.
        self.ssl_object = getattr(stream, "_ssl_object", None) if TRIO_SSL_CHECKED else None
        self.incoming = getattr(stream, "_incoming", None) if TRIO_SSL_CHECKED else None
        if not isinstance(self.ssl_object, ssl.SSLObject) or not isinstance(self.incoming, ssl.MemoryBIO):
            self.ssl_object = self.incoming = None

    async def wait_readable(self) -> None:
        return  # TLS may hold decrypted bytes already: the socket's readiness says nothing

    def recv_ready(self, target: memoryview) -> Optional[int]:
        """Plaintext of the whole TLS records received already, as much as `target` takes; None
        when they make no whole record. What the SSLObject may have to send in turn (a TLS 1.3
        KeyUpdate) stays in trio's outgoing buffer, which its next call on the stream sends first."""
        obj = self.ssl_object
        if obj is None or not (obj.pending() or self.incoming.pending):
            return None
        received = 0
        while received < len(target):
            try:
                read = obj.read(len(target) - received, target[received:])
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break  # a partial record; or the peer's close_notify, which receive_some reports
            except ssl.SSLError as e:
                raise trio.BrokenResourceError(f"TLS: {e}") from e
            if not read:
                break
            received += read
        return received or None

    async def recv_into(self, target: memoryview) -> int:
        await self.share_the_loop()
        received = self.recv_ready(target)
        if received is not None:
            return received
        data = await self.stream.receive_some(len(target))
        self.waited()
        target[: len(data)] = data
        return len(data)

    async def send_buffers(self, buffers: list) -> None:
        await self.stream.send_all(b"".join(buffers) if len(buffers) > 1 else buffers[0])
        self.waited()

    async def send_region(self, region: Any) -> None:
        offset, remaining = region.position, len(region)
        while remaining:
            # What the page cache holds is read here; a read that would wait on the disk goes
            # to a worker thread, not the event loop.
            piece = read_cached(region.fileno(), min(remaining, TLS_READ_BYTES), offset)
            if piece is None:
                piece = await trio.to_thread.run_sync(os.pread, region.fileno(), min(remaining, TLS_READ_BYTES), offset)
            if not piece:
                raise ConnectionClosed("segment file shrank under a fetch being sent", "internal_error")
            await self.stream.send_all(piece)
            self.waited()
            offset += len(piece)
            remaining -= len(piece)

    async def aclose(self) -> None:
        await self.stream.aclose()


def read_cached(fd: int, length: int, offset: int) -> Optional[bytearray]:
    """Up to `length` bytes of the file at `offset`, as far as the page cache holds them, read
    without waiting on the disk (RWF_NOWAIT); None when it holds none of them, at the file's
    end, or where there is no such read (not Linux, a filesystem without it)."""
    if READ_NOWAIT is None or length <= 0:
        return None
    data = bytearray(length)
    try:
        read = os.preadv(fd, (data,), offset, READ_NOWAIT)
    except OSError:  # EAGAIN: not cached; EOPNOTSUPP: not here
        return None
    if read == 0:
        return None
    del data[read:]
    return data


def byte_length(buffer: Any) -> int:
    return buffer.nbytes if isinstance(buffer, memoryview) else len(buffer)


Transport = Union[PlainTransport, TlsTransport]
