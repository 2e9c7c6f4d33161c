"""A connection's socket calls (`fastlog.transport.PlainTransport`): straight to the kernel,
with the loop shared in turns, and partial sends finished in order."""

from __future__ import annotations

import socket
import struct

import pytest
import trio

from fastlog import transport
from fastlog.framing import FrameReader
from fastlog.transport import PlainTransport

FRAME = struct.pack(">i", 12) + b"twelve bytes"


async def frames_read_before_another_task_ran(hold: float, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """A socket filled with frames before the reader starts (after its first receive, it never
    has to wait), read to its end beside another task: (frames read when that task first ran
    once reading had begun, frames)."""
    monkeypatch.setattr(transport, "HOLD_SECONDS", hold)
    ours, theirs = socket.socketpair()
    sent = 0
    with ours, theirs:
        theirs.setblocking(False)
        chunk = FRAME * 256
        try:
            while True:
                sent += theirs.send(chunk)
        except BlockingIOError:
            pass
        total = sent // len(FRAME)  # whole frames (the last send may have been cut)
        reader = FrameReader(PlainTransport(trio.SocketStream(trio.socket.from_stdlib_socket(ours))), 1 << 20)
        read = 0
        first_turn: list[int] = []

        async def other() -> None:
            while read == 0:  # the reader's first receive waits for the socket (one turn)
                await trio.sleep(0)
            first_turn.append(read)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)
            await trio.sleep(0)
            while read < total:
                assert await reader.next_frame() == FRAME[4:]
                read += 1
    return first_turn[0], total


def test_a_reader_that_never_waits_still_lets_the_loops_other_tasks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    first_turn, total = trio.run(frames_read_before_another_task_ran, 0.0001, monkeypatch)
    assert total > 1000, "a socket buffer's worth of frames"
    assert first_turn < total, "the other task ran while frames were still there to read"


def test_without_the_hold_the_other_task_waits_for_the_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counter-test: what the hold prevents (the reader keeps the loop until it must wait)."""
    first_turn, total = trio.run(frames_read_before_another_task_ran, 1e9, monkeypatch)
    assert first_turn == total


def test_a_partial_send_is_finished_in_order() -> None:
    """Buffers of every kind, more than the socket holds at once and more than IOV_MAX of
    them: the peer reads exactly their bytes, in order."""
    buffers: list = [bytes([i % 251]) * 700 for i in range(transport.IOV_MAX + 200)]
    buffers[3] = bytearray(b"a bytearray")
    buffers[5] = memoryview(struct.pack(">4i", 1, 2, 3, 4)).cast("i")  # not a byte format
    buffers[7] = b""
    expected = b"".join(bytes(memoryview(b).cast("B")) if isinstance(b, memoryview) else bytes(b) for b in buffers)

    async def main() -> bytes:
        ours, theirs = trio.socket.socketpair()
        received = bytearray()
        with ours, theirs:
            async with trio.open_nursery() as nursery:
                async def drain() -> None:
                    while len(received) < len(expected):
                        await trio.sleep(0.001)  # slower than the sender: its sends are partial
                        received.extend(await theirs.recv(65536))

                nursery.start_soon(drain)
                await PlainTransport(trio.SocketStream(ours)).send_buffers(buffers)
        return bytes(received)

    assert trio.run(main) == expected
