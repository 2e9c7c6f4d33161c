"""A connection's socket calls (`fastlog.transport`): straight to the kernel, with the loop
shared in turns, partial sends finished in order, file regions sent with sendfile or (small
and cached) inline, and TLS records decrypted without a pass of the loop each."""

from __future__ import annotations

import os
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


class CountingTransport(PlainTransport):
    """Counts the receive system calls (`recv_ready`) and the waits."""

    def __init__(self, stream: trio.SocketStream) -> None:
        super().__init__(stream)
        self.receives = self.waits = 0

    def recv_ready(self, target: memoryview):
        self.receives += 1
        return super().recv_ready(target)

    async def wait_readable(self) -> None:
        self.waits += 1
        await super().wait_readable()


def test_a_socket_found_empty_is_waited_on_before_it_is_read_again() -> None:
    """After `ready_frame` found nothing, the next frame costs one wait and one receive: the
    receive that would only say again that the socket is empty is not made (before: two
    receives). A frame split across sends, and a second frame already there, are still read
    whole and in order."""

    async def main() -> list[tuple[int, int]]:
        ours, theirs = trio.socket.socketpair()
        calls = []
        with ours, theirs:
            counting = CountingTransport(trio.SocketStream(ours))
            reader = FrameReader(counting, 1 << 20)
            await theirs.send(FRAME)
            assert await reader.next_frame() == FRAME[4:]  # allocates the buffer
            for pieces in ([FRAME], [FRAME[:2], FRAME[2:9], FRAME[9:]], [FRAME * 2]):
                assert reader.ready_frame() is None  # nothing sent yet: the socket is empty
                before = (counting.receives, counting.waits)

                async def send_later() -> None:
                    for piece in pieces:
                        await trio.sleep(0.01)
                        await theirs.send(piece)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send_later)
                    assert await reader.next_frame() == FRAME[4:]
                calls.append((counting.receives - before[0], counting.waits - before[1]))
            assert reader.buffered_frame() == FRAME[4:]  # the second of the last send
        return calls

    one, split, two = trio.run(main)
    assert one == (1, 1), "one wait, then the one receive that takes the frame"
    assert split[1] >= 2, "a frame in pieces: read whole after more than one wait"
    assert two == (1, 1)


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




class Region:
    """A file region as `Log.read` hands one out: position, length, the file's descriptor."""

    def __init__(self, file, position: int, length: int) -> None:
        self.file, self.position, self.length = file, position, length

    def fileno(self) -> int:
        return self.file.fileno()

    def __len__(self) -> int:
        return self.length


def cached_reads_or_skip(file) -> None:
    """Skips where `preadv(RWF_NOWAIT)` is missing or refused by the filesystem."""
    if transport.READ_NOWAIT is None:
        pytest.skip("no RWF_NOWAIT here: file regions are always sent with sendfile (or read in a thread for TLS)")
    if transport.read_cached(file.fileno(), 1, 0) is None:
        pytest.skip("this filesystem refuses RWF_NOWAIT reads")


def evict(file) -> None:
    os.fsync(file.fileno())
    os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def evict_or_skip(file, directory) -> None:
    """Drops the file's pages from the page cache; skips where the kernel keeps them. The probe
    reads another file: a read with RWF_NOWAIT that misses starts the kernel's readahead."""
    if transport.READ_NOWAIT is not None:
        probe = directory / "eviction-probe"
        probe.write_bytes(b"p" * 8192)
        with open(probe, "rb") as probed:
            evict(probed)
            try:
                os.preadv(probed.fileno(), (bytearray(1),), 0, transport.READ_NOWAIT)
            except OSError:  # EAGAIN: evicted; anything else: read_cached reads nothing here either
                pass
            else:
                pytest.skip("this filesystem kept the pages cached after POSIX_FADV_DONTNEED")
    evict(file)


def send_region_to_a_peer(tmp_path, content: bytes, position: int, length: int, drain_pause: float) -> tuple[bytes, int]:
    """(what the peer read, how often the sender waited for a writable socket)."""
    path = tmp_path / "segment"
    path.write_bytes(content)
    waits = 0

    async def main() -> bytes:
        real_wait = trio.lowlevel.wait_writable

        async def counted_wait(sock) -> None:
            nonlocal waits
            waits += 1
            await real_wait(sock)

        ours, theirs = trio.socket.socketpair()
        received = bytearray()
        with ours, theirs, open(path, "rb") as file, trio.fail_after(20):
            sender = PlainTransport(trio.SocketStream(ours))
            async with trio.open_nursery() as nursery:
                async def drain() -> None:
                    while len(received) < length:
                        await trio.sleep(drain_pause)
                        received.extend(await theirs.recv(1 << 20))

                nursery.start_soon(drain)
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(trio.lowlevel, "wait_writable", counted_wait)
                    await sender.send_region(Region(file, position, length))
        return bytes(received)

    return trio.run(main), waits


def test_a_region_the_socket_takes_at_once_is_sent_without_a_wait(tmp_path) -> None:
    content = bytes(range(256)) * 64
    received, waits = send_region_to_a_peer(tmp_path, content, 100, 4000, 0)
    assert received == content[100:4100]
    assert waits == 0


def test_a_region_larger_than_the_socket_buffer_waits_and_arrives_whole_and_in_order(tmp_path) -> None:
    content = bytes(i % 251 for i in range(8 << 20))
    received, waits = send_region_to_a_peer(tmp_path, content, 3, len(content) - 10, 0.001)
    assert received == content[3:-7]
    assert waits > 0, "the socket filled: the sender waited for it rather than spinning"


def test_a_region_sent_to_a_peer_that_has_gone_raises_a_connection_error(tmp_path) -> None:
    path = tmp_path / "segment"
    path.write_bytes(b"x" * (4 << 20))

    async def main() -> None:
        ours, theirs = trio.socket.socketpair()
        theirs.close()
        with ours, open(path, "rb") as file, trio.fail_after(20):
            await PlainTransport(trio.SocketStream(ours)).send_region(Region(file, 0, 4 << 20))

    with pytest.raises(ConnectionError):
        trio.run(main)


def test_a_small_cached_region_goes_out_as_bytes_and_a_large_or_cold_one_stays_a_region(tmp_path) -> None:
    """`server.with_cached_regions_inline`: a Fetch answer of a few records is one writev."""
    from fastlog import server

    content = bytes(i % 253 for i in range(3 * server.INLINE_REGION_BYTES))
    path = tmp_path / "segment"
    path.write_bytes(content)
    with open(path, "rb") as file:
        cached_reads_or_skip(file)
        small = Region(file, 10, server.INLINE_REGION_BYTES)
        large = Region(file, 0, server.INLINE_REGION_BYTES + 1)
        parts = [b"head", small, b"between", large, b"tail"]
        inlined, read = server.with_cached_regions_inline(parts)
        assert inlined[0] == b"head" and inlined[2] == b"between" and inlined[4] == b"tail"
        assert bytes(inlined[1]) == content[10:10 + server.INLINE_REGION_BYTES]
        assert inlined[3] is large
        assert read == server.INLINE_REGION_BYTES, "counted for fastlog_bytes_out as sendfile's bytes are"
        assert parts[1] is small, "the caller's list is left as it was"

        # Pages the kernel does not hold are not read on the loop: sendfile sends them.
        evict_or_skip(file, tmp_path)
        assert server.with_cached_regions_inline([small]) == ([small], 0)


def test_a_wide_answer_copies_at_most_inline_burst_bytes(tmp_path) -> None:
    from fastlog import server

    size = 1000
    count = server.INLINE_BURST_BYTES // size + 5
    path = tmp_path / "segment"
    path.write_bytes(os.urandom(size * count))
    with open(path, "rb") as file:
        cached_reads_or_skip(file)
        regions = [Region(file, i * size, size) for i in range(count)]
        inlined, read = server.with_cached_regions_inline(regions)
    assert read == (server.INLINE_BURST_BYTES // size) * size
    assert sum(1 for part in inlined if isinstance(part, Region)) == count - server.INLINE_BURST_BYTES // size


def test_a_region_past_the_end_of_its_file_stays_a_region(tmp_path) -> None:
    """A segment that shrank under the fetch: sendfile then reports it (as before)."""
    from fastlog import server

    path = tmp_path / "segment"
    path.write_bytes(b"x" * 100)
    with open(path, "rb") as file:
        region = Region(file, 50, 100)
        assert server.with_cached_regions_inline([region]) == ([region], 0)


def tls_pair(tmp_path):
    """Server and client contexts for a TLS connection over a socketpair."""
    import ssl

    from tests.security.certs import CertificateAuthority

    ca = CertificateAuthority(tmp_path / "pki")
    issued = ca.issue("broker", server=True)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(issued.cert, issued.key)
    return server_context, ssl.create_default_context(cafile=str(ca.pem))


def send_region_over_tls(tmp_path, content: bytes, cold: bool) -> tuple[bytes, int]:
    """A region of `content` sent by `TlsTransport` (its pages evicted first when `cold`):
    (what the peer decrypted, reads handed to a worker thread)."""
    from fastlog.transport import TlsTransport

    server_context, client_context = tls_pair(tmp_path)
    path = tmp_path / "segment"
    path.write_bytes(content)
    thread_reads = 0

    async def main() -> bytes:
        real_run_sync = trio.to_thread.run_sync

        async def counted(fn, *args, **kwargs):
            nonlocal thread_reads
            thread_reads += 1
            return await real_run_sync(fn, *args, **kwargs)

        ours, theirs = trio.socket.socketpair()
        server = trio.SSLStream(trio.SocketStream(ours), server_context, server_side=True)
        client = trio.SSLStream(trio.SocketStream(theirs), client_context, server_hostname="127.0.0.1")
        received = bytearray()
        with ours, theirs, open(path, "rb") as file, trio.fail_after(20):
            if cold:
                evict_or_skip(file, tmp_path)
            else:
                cached_reads_or_skip(file)
            async with trio.open_nursery() as nursery:
                async def drain() -> None:
                    while len(received) < len(content):
                        received.extend(await client.receive_some(1 << 20))

                nursery.start_soon(drain)
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(trio.to_thread, "run_sync", counted)
                    await TlsTransport(server).send_region(Region(file, 0, len(content)))
        return bytes(received)

    return trio.run(main), thread_reads


def test_a_cached_region_is_read_for_tls_on_the_loop(tmp_path) -> None:
    content = bytes(i % 241 for i in range(3 * transport.TLS_READ_BYTES + 5))
    received, thread_reads = send_region_over_tls(tmp_path, content, cold=False)
    assert received == content
    assert thread_reads == 0


def test_a_region_not_in_the_page_cache_is_read_for_tls_in_a_worker_thread(tmp_path) -> None:
    content = bytes(i % 239 for i in range(transport.TLS_READ_BYTES + 5))
    received, thread_reads = send_region_over_tls(tmp_path, content, cold=True)
    assert received == content
    assert thread_reads >= 1, "a read that would wait on the disk is not made on the loop"


def frames_over_tls(tmp_path, frames: list[bytes], decrypt_here: bool, then_close: bool = False) -> tuple[list, int]:
    """`frames` sent at once by a TLS client (then a close_notify, if `then_close`), read by a
    FrameReader over `TlsTransport` until it has them all, or until EOF after them:
    (what was read, receive_some calls on trio's SSLStream)."""
    from fastlog.transport import TlsTransport

    server_context, client_context = tls_pair(tmp_path)
    calls = 0

    async def main() -> list:
        nonlocal calls
        ours, theirs = trio.socket.socketpair()
        with ours, theirs, trio.fail_after(20):
            server = trio.SSLStream(trio.SocketStream(ours), server_context, server_side=True)
            client = trio.SSLStream(trio.SocketStream(theirs), client_context, server_hostname="127.0.0.1")
            tls = TlsTransport(server)
            if not decrypt_here:
                tls.ssl_object = tls.incoming = None
            real_receive = server.receive_some

            async def counted(max_bytes=None):
                nonlocal calls
                calls += 1
                return await real_receive(max_bytes)

            server.receive_some = counted  # type: ignore[method-assign]
            reader = FrameReader(tls, 4 << 20)
            read: list = []

            async def send() -> None:
                await client.send_all(b"".join(struct.pack(">i", len(f)) + f for f in frames))
                if then_close:
                    await client.aclose()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                await server.do_handshake()
                calls = 0
                while len(read) < len(frames) + then_close:
                    read.append(reader.ready_frame() or await reader.next_frame())
            return read

    return trio.run(main), calls


@pytest.mark.parametrize("decrypt_here", [True, False], ids=["records-received-decrypted-here", "trio-alone"])
def test_frames_over_tls_arrive_whole_and_in_order_and_a_large_one_takes_few_loop_passes(tmp_path, decrypt_here: bool) -> None:
    large = bytes(i % 249 for i in range(1 << 20))
    frames = [b"first", b"second" * 100, large, b"after" * 3, b"last"]
    read, calls = frames_over_tls(tmp_path, frames, decrypt_here)
    assert [bytes(f) for f in read] == frames
    records = len(large) // (16 * 1024)
    if decrypt_here:
        assert transport.TRIO_SSL_CHECKED, f"trio {trio.__version__}: check its SSLStream, then widen TRIO_SSL_CHECKED"
        assert calls <= records // 2, "trio's receive_some only for socket reads, not once per TLS record"
    else:
        assert calls >= records, "trio alone: one receive_some per TLS record"


def test_a_close_notify_after_frames_is_a_clean_end_after_them(tmp_path) -> None:
    frames = [b"one", bytes(100_000), b"three"]
    read, _ = frames_over_tls(tmp_path, frames, decrypt_here=True, then_close=True)
    assert [bytes(f) for f in read[:-1]] == frames
    assert read[-1] is None, "the end of the stream, not an error"


@pytest.mark.parametrize("version, checked", [
    ("0.35.0", True), ("0.25.1", True), ("0.35.0+dev", True), ("0.24.0", False), ("0.36.0", False),
    ("0.36rc1", False), ("1.0", False), ("", False), ("unknown", False),
])
def test_only_the_trio_releases_read_decrypt_tls_records_here_and_an_odd_version_string_is_not_an_error(version: str, checked: bool) -> None:
    assert transport.trio_ssl_checked(version) is checked
