"""A fault-injecting TCP proxy for Kafka connections, in one thread over non-blocking sockets.

`ChaosProxy(upstream_port)` listens on a free loopback port and forwards bytes both ways to
127.0.0.1:upstream_port. `cut()` closes every open connection abruptly (SO_LINGER 0: both the
client and the broker get a RST); with `chaos(True)` it does so by itself every 50-200 ms (from a
seeded RNG), each time in one of three ways:

* ``now``: wherever the connections are;
* ``request``: the next chunk a client sends is forwarded only in part (a random prefix, possibly
  empty), then everything is cut: a request dies in the middle;
* ``response``: the next chunk the broker sends on a connection with an unanswered Produce request
  is forwarded only in part, then everything is cut: the broker has appended, the client never
  hears so and must retry.

`down(True)` cuts every connection and resets each new one at once until `down(False)`: the
link is gone (as a pulled cable or a firewall rule would have it) while both ends run.

`hold(True)` lets requests through but keeps every byte the broker sends from the first Produce
response on (per connection) from the client, so the broker appends batches whose acknowledgements
a following `cut()` throws away.

While forwarding it reads the Kafka frames going by (sizes, correlation ids, and Produce
requests and responses, decoded with fastlog's codec) and counts them in `stats()`, so a test can
tell what the broker was asked and what it answered, independently of the client:

* ``produce_records_acked``: records in Produce requests whose response the broker sent with
  error 0 for their partition (duplicates it recognised are answered with error 0 too);
* ``produce_responses_withheld``: Produce responses the broker began to send that never reached
  the client whole (the client had to retry a batch the broker had already handled);
* ``produce_error_<code>``: records in Produce partitions the broker answered with that error;
* ``requests_cut_midway`` / ``responses_cut_midway``: frames cut in the middle;
* ``cuts``, ``connections``, ``refused`` (no broker listening), ``bytes_up`` / ``bytes_down``.
"""

from __future__ import annotations

import collections
import random
import selectors
import socket
import struct
import threading
import time
from typing import Optional

from fastlog import protocol

CHUNK = 64 * 1024
HIGH_WATER = 1 << 20  # stop reading a side while this much waits to be written to the other
ARM_TIMEOUT = 0.3  # an armed mid-frame cut that sees no traffic becomes a plain cut
LINGER_RST = struct.pack("ii", 1, 0)
PRODUCE = 0


def produce_record_counts(records) -> int:
    """Records in a Produce partition's record batches (magic 2: count at byte 57)."""
    view = memoryview(records) if records is not None else memoryview(b"")
    total, pos = 0, 0
    while pos + 61 <= len(view):
        (length,) = struct.unpack_from(">i", view, pos + 8)
        (count,) = struct.unpack_from(">i", view, pos + 57)
        total += count
        pos += 12 + length
    return total


class _Frames:
    """Splits one direction's byte stream into Kafka frames, remembering stream positions."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.start = 0  # stream position of buf[0]
        self.received = 0

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """Complete frames as (start, end, payload); positions count from the stream's start."""
        self.buf += data
        self.received += len(data)
        frames = []
        while len(self.buf) >= 4:
            (size,) = struct.unpack_from(">i", self.buf, 0)
            if len(self.buf) < 4 + size:
                break
            frames.append((self.start, self.start + 4 + size, bytes(self.buf[4 : 4 + size])))
            del self.buf[: 4 + size]
            self.start += 4 + size
        return frames

    def partial_header(self) -> Optional[int]:
        """The correlation id of a response begun but not complete (needs 8 bytes), if any."""
        if len(self.buf) >= 8:
            return struct.unpack_from(">i", self.buf, 4)[0]
        return None


class _Conn:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.sock = {"c": client, "u": upstream}
        self.out = {"c": bytearray(), "u": bytearray()}  # waiting to be written to that side
        self.sent = {"c": 0, "u": 0}  # bytes written to that side so far
        self.frames = {"c": _Frames(), "u": _Frames()}  # what was read from that side
        # correlation id -> (api key, api version, {(topic, partition): records})
        self.inflight: dict[int, tuple[int, int, dict]] = {}
        self.responses: list[tuple[int, int, int]] = []  # (start, end, api key) not yet sent whole
        self.interest = {"c": 0, "u": 0}
        self.held = bytearray()  # the broker's bytes kept from the client while holding
        self.hold_at: Optional[int] = None  # stream position of the first produce response held


class ChaosProxy:
    def __init__(self, upstream_port: int, seed: int = 0, interval: tuple[float, float] = (0.05, 0.2)) -> None:
        self.upstream_port = upstream_port
        self.interval = interval
        self.rng = random.Random(seed)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        self.conns: set[_Conn] = set()
        self.lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()
        self.commands: list[tuple[str, threading.Event]] = []
        self.chaotic = False
        self.next_cut = 0.0
        self.armed: Optional[tuple[str, float]] = None
        self.holding = False
        self.is_down = False
        self.stopping = False
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name=f"chaos-proxy-{self.port}", daemon=True)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "ChaosProxy":
        self.thread.start()
        return self

    def close(self) -> None:
        """Stops the thread, closes every socket; raises what the thread died of, if anything."""
        self.stopping = True
        self._wake()
        self.thread.join(10)
        assert not self.thread.is_alive(), "proxy thread did not stop"
        for conn in list(self.conns):
            self._close(conn, rst=True)
        for sock in (self.listener, self.wake_r, self.wake_w):
            sock.close()
        self.sel.close()
        if self.error is not None:
            raise self.error

    def __enter__(self) -> "ChaosProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def chaos(self, enabled: bool) -> None:
        """Starts or stops cutting at random intervals (returns once the thread has switched)."""
        self._command("chaos-on" if enabled else "chaos-off")

    def cut(self) -> None:
        """Cuts every open connection now (returns once done); stops holding responses."""
        self._command("cut")

    def down(self, enabled: bool) -> None:
        """Takes the link down (every connection cut, new ones reset) or brings it back."""
        self._command("down-on" if enabled else "down-off")

    def hold(self, enabled: bool) -> None:
        """Keeps (or stops keeping) whatever the broker sends from the clients: requests still
        reach the broker, which appends and answers, but no answer gets through. A `cut()`
        throws the held bytes away; `hold(False)` passes them on."""
        self._command("hold-on" if enabled else "hold-off")

    # -- the thread ---------------------------------------------------------------------------

    def _command(self, name: str) -> None:
        done = threading.Event()
        with self.lock:
            self.commands.append((name, done))
        self._wake()
        if not done.wait(10):
            raise AssertionError(f"proxy did not carry out {name!r}: {self.error!r}")

    def _wake(self) -> None:
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass

    def _count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def _run(self) -> None:
        try:
            while not self.stopping:
                timeout = 0.05
                for key, mask in self.sel.select(timeout):
                    if key.fileobj is self.listener:
                        self._accept()
                    elif key.fileobj is self.wake_r:
                        try:
                            self.wake_r.recv(4096)
                        except BlockingIOError:
                            pass
                    else:
                        conn, side = key.data
                        if conn in self.conns and mask & selectors.EVENT_WRITE:
                            self._flush(conn, side)
                        if conn in self.conns and mask & selectors.EVENT_READ:
                            self._read(conn, side)
                self._do_commands()
                now = time.monotonic()
                if self.armed and now > self.armed[1]:
                    self._cut_all("expired-" + self.armed[0])
                if self.chaotic and now >= self.next_cut:
                    self.next_cut = now + self.rng.uniform(*self.interval)
                    mode = self.rng.choice(["now", "request", "response"])
                    if mode == "now":
                        self._cut_all("now")
                    elif self.armed is None:
                        self.armed = (mode, now + ARM_TIMEOUT)
                for conn in list(self.conns):
                    self._update_interest(conn)
        except BaseException as e:  # surfaced by close()
            self.error = e
        finally:
            with self.lock:
                pending, self.commands = self.commands, []
            for _, done in pending:
                done.set()

    def _do_commands(self) -> None:
        with self.lock:
            pending, self.commands = self.commands, []
        for name, done in pending:
            if name == "cut":
                self.holding = False
                self._cut_all("command")
            elif name == "chaos-on":
                self.chaotic = True
                self.next_cut = time.monotonic() + self.rng.uniform(*self.interval)
            elif name == "chaos-off":
                self.chaotic = False
                self.armed = None
            elif name == "down-on":
                self.is_down = True
                self._cut_all("down")
            elif name == "down-off":
                self.is_down = False
            elif name == "hold-on":
                self.holding = True
            elif name == "hold-off":
                self.holding = False
                for conn in list(self.conns):
                    conn.out["c"] += conn.held
                    conn.held.clear()
                    conn.hold_at = None
                    self._flush(conn, "c")
            done.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except BlockingIOError:
                return
            if self.is_down:
                self._count("reset_while_down")
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
            except OSError:
                self._count("refused")
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                client.close()
                continue
            conn = _Conn(client, upstream)
            for side, sock in conn.sock.items():
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                self.sel.register(sock, selectors.EVENT_READ, (conn, side))
                conn.interest[side] = selectors.EVENT_READ
            self.conns.add(conn)
            self._count("connections")

    def _update_interest(self, conn: _Conn) -> None:
        for side in ("c", "u"):
            other = "u" if side == "c" else "c"
            want = selectors.EVENT_READ if len(conn.out[other]) < HIGH_WATER else 0
            if conn.out[side]:
                want |= selectors.EVENT_WRITE
            if want == conn.interest[side]:
                continue
            if not want:
                self.sel.unregister(conn.sock[side])
            elif not conn.interest[side]:
                self.sel.register(conn.sock[side], want, (conn, side))
            else:
                self.sel.modify(conn.sock[side], want, (conn, side))
            conn.interest[side] = want

    def _read(self, conn: _Conn, side: str) -> None:
        try:
            data = conn.sock[side].recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn, rst=False)
            return
        other = "u" if side == "c" else "c"
        self._count("bytes_up" if side == "c" else "bytes_down", len(data))
        cut_here = self.armed is not None and self._fits(conn, side)
        position = conn.frames[side].received  # of data[0] in the stream
        self._observe(conn, side, data)
        if self.holding and side == "u":
            if conn.hold_at is None:
                starts = [start for start, _, api in conn.responses if api == PRODUCE and start >= position]
                partial = self._partial_produce_response(conn)
                starts += [partial] if partial is not None and partial >= position else []
                conn.hold_at = min(starts, default=None)
            if conn.hold_at is not None:
                keep = max(0, conn.hold_at - position)
                conn.held += data[keep:]
                data = data[:keep]
        if cut_here:
            prefix = data[: self.rng.randrange(len(data))] if data else b""
            conn.out[other] += prefix
            self._flush(conn, other)
            self._cut_all(self.armed[0])
            return
        conn.out[other] += data
        self._flush(conn, other)

    def _partial_produce_response(self, conn: _Conn) -> Optional[int]:
        """The stream position of a Produce response begun but not yet read whole, if any."""
        begun = conn.frames["u"].partial_header()
        if begun is not None and conn.inflight.get(begun, (None,))[0] == PRODUCE:
            return conn.frames["u"].start
        return None

    def _fits(self, conn: _Conn, side: str) -> bool:
        mode = self.armed[0]
        if mode == "request":
            return side == "c"
        return side == "u" and any(api == PRODUCE for api, _, _ in conn.inflight.values())

    def _flush(self, conn: _Conn, side: str) -> None:
        out = conn.out[side]
        while out:
            try:
                n = conn.sock[side].send(out[:CHUNK])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(conn, rst=True)
                return
            del out[:n]
            conn.sent[side] += n
            if side == "c":
                while conn.responses and conn.responses[0][1] <= conn.sent["c"]:
                    conn.responses.pop(0)

    def _observe(self, conn: _Conn, side: str, data: bytes) -> None:
        for start, end, frame in conn.frames[side].feed(data):
            if side == "c":
                self._request(conn, frame)
            else:
                self._response(conn, start, end, frame)

    def _request(self, conn: _Conn, frame: bytes) -> None:
        api_key, version, correlation_id = struct.unpack_from(">hhi", frame, 0)
        self._count("requests")
        records: dict = {}
        if api_key == PRODUCE:
            self._count("produce_requests")
            _, body, _ = protocol.decode_request(frame)
            if body.acks == 0:
                return
            for topic in body.topic_data:
                for part in topic.partition_data:
                    records[(topic.name, part.index)] = produce_record_counts(part.records)
        conn.inflight[correlation_id] = (api_key, version, records)

    def _response(self, conn: _Conn, start: int, end: int, frame: bytes) -> None:
        (correlation_id,) = struct.unpack_from(">i", frame, 0)
        api_key, version, records = conn.inflight.pop(correlation_id, (None, None, None))
        self._count("responses")
        if api_key != PRODUCE:
            return
        conn.responses.append((start, end, api_key))
        reader = protocol.Reader(frame)
        protocol.ResponseHeader.decode(reader, protocol.response_header_version(api_key, version))
        body = protocol.response_class(api_key).decode(reader, version)
        for topic in body.responses:
            for part in topic.partition_responses:
                key = "produce_records_acked" if part.error_code == 0 else f"produce_error_{part.error_code}"
                self._count(key, records.get((topic.name, part.index), 0))

    def _cut_all(self, why: str) -> None:
        self.armed = None
        self._count("cuts")
        self._count(f"cuts_{why}")
        for conn in list(self.conns):
            if conn.frames["c"].buf:
                self._count("requests_cut_midway")
            if conn.frames["u"].buf:
                self._count("responses_cut_midway")
            self._close(conn, rst=True)

    def _close(self, conn: _Conn, rst: bool) -> None:
        if conn not in self.conns:
            return
        if not rst:  # one side hung up: pass on what can be passed on, then an orderly close
            for side in ("c", "u"):
                self._flush(conn, side)
            if conn not in self.conns:
                return
        self.conns.discard(conn)
        withheld = sum(1 for _, _, api in conn.responses if api == PRODUCE)
        if self._partial_produce_response(conn) is not None:
            withheld += 1
        self._count("produce_responses_withheld", withheld)
        for side, sock in conn.sock.items():
            if conn.interest[side]:
                self.sel.unregister(sock)
            if not rst:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))
                except OSError:
                    pass
            sock.close()
