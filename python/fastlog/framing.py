"""Kafka's framing: each request and response is a 4-byte big-endian size, then that many bytes.

`FrameReader` reads frames off a socket for the server (requests) and for a follower's link
to its leader (responses).
"""

from __future__ import annotations

import struct
from typing import Any, Optional

import trio

SIZE = struct.Struct(">i")
READ_BUFFER = 65536
TLS_HANDSHAKE_RECORD = b"\x16\x03"  # how a TLS ClientHello begins


class ConnectionClosed(Exception):
    """The connection must close; the message says why (it is logged), `reason` is a short
    label for the metrics (connections_closed_total{reason})."""

    def __init__(self, message: str, reason: str = "protocol_error", final: Optional[list] = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.final = final  # response parts sent before closing (a failed authentication's answer)


class FrameReader:
    """Reads length-prefixed frames, refusing a length above the limit before allocating.

    Small frames are cut out of a 64 KiB read-ahead buffer filled with `recv_into` (one copy
    after the kernel's); a frame larger than what is buffered gets a buffer of its exact size
    and the rest of it is received straight into that (no copy at all): record data reaches the
    log as a view of the frame."""

    def __init__(self, transport: Any, max_frame: int, limit_name: str = "socket.request.max.bytes") -> None:
        self.transport = transport  # a `fastlog.transport` PlainTransport or TlsTransport
        self.max_frame = max_frame
        self.limit_name = limit_name  # the setting max_frame comes from, for the log
        # Allocated once the socket is readable: an idle connection holds no read buffer.
        self.buffer = bytearray()
        self.view = memoryview(self.buffer)
        self.start = 0  # buffered bytes not yet returned: buffer[start:end]
        self.end = 0
        self.last_read = 0.0  # when the last bytes came off the socket (trio clock)
        # `ready_frame` found the socket empty and nothing has been received since: the next
        # receive waits first, rather than make the same system call again to learn that.
        self.drained = False

    async def _recv_into(self, target: memoryview) -> int:
        try:
            received = None
            if self.drained:  # the wait is the loop's turn, so no share_the_loop after it
                self.drained = False
                await self.transport.wait_readable()
                received = self.transport.recv_ready(target)
            if received is None:
                received = await self.transport.recv_into(target)
        except OSError as e:
            raise trio.BrokenResourceError(str(e)) from e
        self.last_read = self.transport.now()
        return received

    async def _buffered(self, size: int) -> bool:
        """Makes `size` bytes available at `start` (size <= READ_BUFFER); False at a clean EOF."""
        if self.end - self.start >= size:
            return True
        if not self.buffer:
            await self.transport.wait_readable()
            self.view.release()
            self.buffer = bytearray(READ_BUFFER)
            self.view = memoryview(self.buffer)
        self._compact()
        while self.end < size:
            received = await self._recv_into(self.view[self.end :])
            if not received:
                if self.end:
                    raise ConnectionClosed(f"the peer closed the connection in the middle of a frame ({self.end} bytes read)", "truncated_frame")
                return False
            self.end += received
        return True

    def _compact(self) -> None:
        """Moves the buffered bytes not yet returned to the start of the buffer."""
        if self.start:
            have = self.end - self.start
            self.view[:have] = self.view[self.start : self.end]  # a memoryview copy may overlap
            self.start, self.end = 0, have

    def _frame_size(self) -> int:
        (size,) = SIZE.unpack_from(self.buffer, self.start)
        if size < 0 or size > self.max_frame:
            if self.buffer[self.start : self.start + 2] == TLS_HANDSHAKE_RECORD:
                raise ConnectionClosed("a TLS handshake on a listener without TLS (the client's security.protocol is SSL?)", "tls_on_plaintext")
            raise ConnectionClosed(f"frame size {size} is outside [0, {self.max_frame}] ({self.limit_name})", "bad_frame_size")
        return size

    def buffered_frame(self) -> Optional[bytes]:
        """The next frame if it is already wholly in the buffer (no I/O), else None."""
        have = self.end - self.start
        if have < 4:
            return None
        size = self._frame_size()
        if size > have - 4:
            return None
        self.start += 4
        frame = bytes(self.view[self.start : self.start + size])
        self.start += size
        return frame

    def ready_frame(self) -> Optional[bytes]:
        """The next frame if the buffer and what the socket holds already make it whole (no wait):
        a connection whose client sends without pause is served without waiting on the socket."""
        self._receive_ready()
        return self.buffered_frame()

    def _receive_ready(self) -> None:
        """Adds what the socket holds already to the buffer, without waiting (with TLS, what the
        records received already decrypt to; nothing when no buffer is allocated yet)."""
        if not self.buffer or self.end - self.start >= 4 and self._frame_size() > READ_BUFFER - 4:
            return  # a frame larger than the buffer is received by next_frame
        self._compact()
        try:
            received = self.transport.recv_ready(self.view[self.end :])
        except OSError as e:
            raise trio.BrokenResourceError(str(e)) from e
        self.drained = received is None
        if received:  # 0 (a clean EOF) is seen by next_frame
            self.end += received
            self.last_read = self.transport.now()

    async def next_frame(self) -> Optional[bytes | bytearray]:
        if not await self._buffered(4):
            return None
        size = self._frame_size()
        self.start += 4
        have = self.end - self.start
        if size <= have:
            frame = bytes(self.view[self.start : self.start + size])
            self.start += size
            return frame
        frame = bytearray(size)
        frame[:have] = self.view[self.start : self.end]
        self.start = self.end = 0
        target = memoryview(frame)
        while have < size:
            received = await self._recv_into(target[have:])
            if not received:
                raise ConnectionClosed("the peer closed the connection in the middle of a frame", "truncated_frame")
            have += received
        return frame
