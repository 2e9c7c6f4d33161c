"""The Trio TCP server: Kafka framing, one request at a time per connection.

Each connection has a task that reads a request, handles it and queues its response, in
arrival order, as Kafka does (a producer's pipelined batches append in order), and a task that
sends the queued responses in that order. Queued responses are handed to the sender when no
further complete request is buffered, so a pipelining client gets several responses per
`writev` and the broker pays for one task step and one send per burst rather than per
request. When the sender holds nothing, the reader sends the burst itself: nothing can be
overtaken, and the hand-off between the tasks is saved (about 10 % of the broker's CPU per
request at 10,000-20,000 single-record requests/s). The socket calls themselves skip trio's
pass of the run loop after each one (`fastlog.transport`): a connection whose client sends
without pause reads, answers and reads again until it has held the loop for
`transport.HOLD_SECONDS`. A response that is ready only later
(acks=all waiting for the in-sync replicas: a `Pending`) takes its place in the queue while
the reader goes on with the next requests, so a producer's pipelined batches replicate
together instead of one round trip each. At most `RESPONSES_IN_FLIGHT` bursts wait to be
sent, and the kernel's socket buffers are the back-pressure beyond that: a client that does
not read its responses stops being read from, and memory does not grow.
"""

from __future__ import annotations

import collections
import errno
import functools
import math
import logging
import os
import ssl
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

import trio

from fastlog import protocol
from fastlog.config import Listener, parse_ip_counts
from fastlog.framing import ConnectionClosed, FrameReader
from fastlog.security import ANONYMOUS
from fastlog.security.sasl import SaslAuthenticator
from fastlog.security.tls import certificate_principal
from fastlog.transport import PlainTransport, TlsTransport, Transport, read_cached
from fastlog import quotas
from fastlog.handlers import fetch, produce
from fastlog.handlers import DECLINED, FRAME_HANDLERS, HANDLERS, Pending, RequestContext, api_versions_body
from fastlog.protocol import CodecError, ErrorCode

if TYPE_CHECKING:
    from fastlog.broker import Broker
    from fastlog.config import BrokerConfig
    from fastlog.network_loops import NetworkLoop

log = logging.getLogger(__name__)

API_KEY = struct.Struct(">h")  # the first field of every request frame
PRODUCE, FETCH = 0, 1
# Requests no client quota measures (as Kafka: version discovery and authentication)
QUOTA_EXEMPT = frozenset({17, 18, 36})
# Requests whose handling is mostly waiting for the rest of a group (JoinGroup, SyncGroup): no request quota
WAITING_APIS = frozenset({11, 14})
SEND_BATCH_BYTES = 1 << 20  # queued response bytes that are sent without waiting for the burst to end
RESPONSES_IN_FLIGHT = 16  # bursts of responses (or pending ones) queued for the sender
DROPPED = (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError)  # the client went away
TLS_HANDSHAKE_SECONDS = 10
IDLE_SWEEP_MAX_SECONDS = 30.0  # the longest between two looks for idle connections
BUFFERS = (bytes, bytearray, memoryview)  # response parts sent as they are; others are file regions
INLINE_REGION_BYTES = 16 * 1024  # record data up to this size goes out with the bytes around it, when cached
INLINE_BURST_BYTES = 64 * 1024  # at most this much record data of a burst of responses is copied so
API_VERSIONS = 18
# What an extra network loop answers itself (the data plane: the Rust core's Produce path and
# Fetch, whose state is the logs); every other request runs on the broker's own loop.
LOOP_LOCAL_APIS = frozenset({0, 1, API_VERSIONS})
FETCH = 1
PRODUCE = 0


class Connection:
    def __init__(self, broker: "Broker", stream: trio.SocketStream, listener: Listener, loop: "Optional[NetworkLoop]" = None) -> None:
        self.broker = broker
        self._queued_to_sender = 0  # bursts handed to the sender task and not yet sent
        self.stream = stream
        self.listener = listener
        self.transport: Transport = PlainTransport(stream)
        self.loop = loop  # the extra network loop serving it; None: the broker's own loop
        self.certificate_principal: Optional[str] = None  # a TLS client certificate's, mapped
        self.sasl = SaslAuthenticator(broker, listener, "") if listener.uses_sasl else None
        try:
            host, port = stream.socket.getpeername()[:2]
            self.peer = f"{host}:{port}"
        except OSError:
            self.peer = "?"
        if self.sasl is not None:
            self.sasl.peer = self.peer
        self.stopping = False
        # The reader's waits for a request: one scope for the connection's life, cancelled
        # (by `stop_reading` or the idle sweep) only while `waiting_since` says the reader is in
        # one. A scope per wait cost about 60,000 instructions a request (bench_request_cost).
        self._waits = trio.CancelScope()
        self.waiting_since: Optional[float] = None  # when the reader began waiting for a request (loop clock)
        self.idled = False  # closed by the idle sweep (connections.max.idle.ms)
        self._wait: Optional[trio.CancelScope] = None  # set while a throttled connection sits out its delay
        self.close_reason = "client_closed"
        self.trailing_bytes_logged = False
        self.throttled_until = 0.0  # a client over its quota: nothing is read before this (trio time)

    def stop_reading(self) -> None:
        """Graceful shutdown: the request being handled is answered, no further one is read."""
        self.stopping = True
        if self.waiting_since is not None:
            self._waits.cancel()
        if self._wait is not None:
            self._wait.cancel()

    def close_if_idle(self, now: float, idle_seconds: float) -> None:
        """From the idle sweep, on the connection's loop: closes it if it has waited for a
        request for longer than `idle_seconds`."""
        if self.waiting_since is not None and now - self.waiting_since > idle_seconds:
            self.idled = True
            self._waits.cancel()

    @property
    def principal(self) -> str:
        """Who the client is (Kafka's `User:` principal name): its SASL user, else its
        certificate's subject, else ANONYMOUS."""
        if self.sasl is not None and self.sasl.principal is not None:
            return self.sasl.principal
        return self.certificate_principal or ANONYMOUS

    async def run(self) -> None:
        try:
            if self.listener.uses_tls:
                await self._start_tls()
            await self._serve()
        except ConnectionClosed as e:
            log.warning("closing connection from %s: %s", self.peer, e, extra={"peer": self.peer})
            self.close_reason = e.reason
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError) as e:
            log.debug("connection from %s dropped: %s", self.peer, e, extra={"peer": self.peer})
            self.close_reason = "dropped"
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1):  # a TLS close_notify to a peer that reads nothing
                    try:
                        await self.transport.aclose()
                    except DROPPED:
                        pass
                await self.stream.aclose()

    async def _start_tls(self) -> None:
        """The TLS handshake (bounded in time), and the client certificate's principal."""
        tls = self.broker.tls[self.listener.name]
        stream = trio.SSLStream(self.stream, tls.current(), server_side=True)
        self.transport = TlsTransport(stream)
        with trio.move_on_after(TLS_HANDSHAKE_SECONDS) as handshake:
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError as e:
                cause = e.__cause__ or e
                if tls.context.verify_mode == ssl.CERT_REQUIRED:  # perhaps no or a bad certificate
                    self.broker.metrics.count_authentication(self.listener.name, "SSL", False)
                raise ConnectionClosed(f"TLS handshake failed on {self.listener.name}: {cause}", "tls_handshake_failed") from None
        if handshake.cancelled_caught:
            raise ConnectionClosed(f"TLS handshake not done within {TLS_HANDSHAKE_SECONDS}s on {self.listener.name}", "tls_handshake_failed")
        try:
            self.certificate_principal = certificate_principal(stream, tls.principal_rules)
        except ValueError as e:
            self.broker.metrics.count_authentication(self.listener.name, "SSL", False)
            raise ConnectionClosed(f"client certificate refused on {self.listener.name}: {e}", "authentication_failed") from None
        if self.certificate_principal is not None:
            self.broker.metrics.count_authentication(self.listener.name, "SSL", True)

    async def _serve(self) -> None:
        full_size = self.broker.config["socket.request.max.bytes"]
        if self.sasl is None or full_size <= self.sasl.max_receive:
            reader = FrameReader(self.transport, full_size)
        else:
            reader = FrameReader(self.transport, self.sasl.max_receive, "sasl.server.max.receive.size, until authenticated")
        to_send, queued = trio.open_memory_channel[Any](RESPONSES_IN_FLIGHT)
        # Each task's failure is kept and raised here, after both are done: raised inside the
        # nursery it would come out wrapped in an exception group.
        failures: list[BaseException] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_in_order, queued, failures, nursery.cancel_scope)
            async with to_send:
                try:
                    with self._waits:
                        await self._read_requests(reader, to_send)
                    if self.idled and not self.stopping:
                        idle_ms = self.broker.config["connections.max.idle.ms"]
                        raise ConnectionClosed(f"idle for more than connections.max.idle.ms={idle_ms}", "idle")
                except ConnectionClosed as e:
                    failures.append(e)  # the requests before the bad one are still answered
                except DROPPED as e:
                    failures.append(e)
                    nursery.cancel_scope.cancel()
        if failures:
            raise failures[0]

    async def _read_requests(self, reader: FrameReader, to_send: trio.MemorySendChannel) -> None:
        # Responses of a burst of pipelined requests, sent together, with (api key, when its
        # frame was read) of each request: the broker's own time ends when the burst is sent.
        unsent: list = []
        stamps: list[tuple[int, float]] = []
        unsent_bytes = 0
        try:
            while not self.stopping:
                await self.transport.share_the_loop()  # frames buffered are served in turns too
                frame = reader.buffered_frame()
                if frame is None:
                    if unsent:
                        # emptied first: a ConnectionClosed from the send must not send it again below
                        burst, burst_stamps = unsent, stamps
                        unsent, stamps, unsent_bytes = [], [], 0
                        await self._send_burst(burst, burst_stamps, to_send)
                    frame = reader.ready_frame()
                    if frame is None:
                        frame = await self._next_frame(reader)
                        if frame is None:
                            break
                api_key = API_KEY.unpack_from(frame)[0] if len(frame) >= API_KEY.size else -1
                stamp = (api_key, reader.last_read)
                answer = await self._handle(frame, api_key)
                if self.sasl is not None and self.sasl.authenticated and reader.limit_name != "socket.request.max.bytes":
                    reader.max_frame, reader.limit_name = self.broker.config["socket.request.max.bytes"], "socket.request.max.bytes"
                if isinstance(answer, Pending):
                    if unsent:
                        await self._to_sender(to_send, (unsent, stamps))
                        unsent, stamps, unsent_bytes = [], [], 0
                    await self._to_sender(to_send, (answer, [stamp]))
                elif answer:
                    unsent += answer
                    stamps.append(stamp)
                    unsent_bytes += sum(map(len, answer))
                    if unsent_bytes >= SEND_BATCH_BYTES:
                        await self._to_sender(to_send, (unsent, stamps))
                        unsent, stamps, unsent_bytes = [], [], 0
                if self.throttled_until and self.throttled_until > self.transport.now():  # muted (KIP-219): the response goes now, reading waits
                    if unsent:
                        await self._to_sender(to_send, (unsent, stamps))
                        unsent, stamps, unsent_bytes = [], [], 0
                    await self._sit_out_throttle()
        except ConnectionClosed as e:
            if e.final:
                unsent += e.final
            if unsent:
                await self._to_sender(to_send, (unsent, stamps))
            raise
        if unsent:
            await self._to_sender(to_send, (unsent, stamps))

    async def _to_sender(self, to_send: trio.MemorySendChannel, item: tuple) -> None:
        self._queued_to_sender += 1
        await to_send.send(item)

    async def _send_burst(self, burst: list, stamps: list, to_send: trio.MemorySendChannel) -> None:
        """Sends a burst of responses from the reader itself when the sender holds nothing
        (nothing queued can be overtaken, and a hand-off between tasks per request is saved),
        else queues it behind what the sender has."""
        if self._queued_to_sender:
            await self._to_sender(to_send, (burst, stamps))
            return
        try:
            await self._send(burst)
        except (ConnectionClosed, *DROPPED):
            raise
        except Exception:
            log.exception("sending a response to %s failed", self.peer, extra={"peer": self.peer})
            raise ConnectionClosed("internal error sending a response", "internal_error") from None
        self._observe_sent(stamps)

    def _observe_sent(self, stamps: list) -> None:
        """The broker's own time of each request whose response has just gone out."""
        self.broker.metrics.observe_sent(stamps, self.transport.now())

    async def _send_in_order(self, queued: trio.MemoryReceiveChannel, failures: list, reading: trio.CancelScope) -> None:
        """Sends each burst of responses, and each pending one once it is ready, in order.
        A failure stops the reader too (the connection closes)."""
        try:
            async for item, stamps in queued:
                if isinstance(item, Pending):  # acks=all: waits on the broker's loop, where replication is
                    frame = await (item.wait() if self.loop is None else self.loop.on_owner(item.wait))
                    if frame is not None:
                        await self._send([frame])
                else:
                    await self._send(item)
                self._queued_to_sender -= 1
                self._observe_sent(stamps)
        except (ConnectionClosed, *DROPPED) as e:
            failures.append(e)
            reading.cancel()
        except Exception:
            log.exception("sending a response to %s failed", self.peer, extra={"peer": self.peer})
            failures.append(ConnectionClosed("internal error sending a response", "internal_error"))
            reading.cancel()

    async def _sit_out_throttle(self) -> None:
        """Waits out a throttle; a broker that stops does not wait for it."""
        with trio.CancelScope() as self._wait:
            if not self.stopping:
                await trio.sleep_until(self.throttled_until)
        self._wait = None

    async def _next_frame(self, reader: FrameReader) -> Optional[bytes | bytearray]:
        """Waits for the next request; None at a clean EOF or when the broker stops. Stopping
        or idling out while it waits cancels `_waits`, which ends the reader."""
        if self.stopping:  # asked while the reader was sending or yielding, before this wait
            return None
        self.waiting_since = self.transport.now()
        try:
            frame = await reader.next_frame()
        finally:
            self.waiting_since = None
        if self.stopping or self.idled:  # asked as the frame came in: it is not handled
            await trio.lowlevel.checkpoint_if_cancelled()  # raises: `_waits` is cancelled
        return frame

    async def _handle(self, frame: bytes, api_key: int) -> "Optional[list] | Pending":
        """Decodes and answers one request: its response parts, a `Pending` response, or None
        when the protocol wants no response."""
        metrics = self.broker.metrics
        if self.sasl is not None:
            exchanged = await self.sasl.intercept(frame, api_key)
            if exchanged is not None:
                return exchanged
        answer_frame = FRAME_HANDLERS.get(api_key)
        if answer_frame is not None and not self._metered_frame(frame):
            started = self.transport.now()
            response = await answer_frame(self.broker, frame, self.peer, self.principal)
            if response is not DECLINED:
                metrics.observe_request(api_key, self.transport.now() - started)
                if isinstance(response, Pending):
                    return response
                return None if response is None else [response]
        try:
            header, body, trailing = protocol.decode_request(frame)
        except CodecError as e:
            return self._answer_undecodable(e)
        api_key, version = header.request_api_key, header.request_api_version
        if trailing:
            self._note_trailing_bytes(api_key, version, trailing)
        handler = HANDLERS.get(api_key)
        if handler is None or not handler.min_version <= version <= handler.max_version:
            if api_key == API_VERSIONS:
                return self._api_versions_error(header.correlation_id)
            raise ConnectionClosed(f"{type(body).__name__} v{version} is not supported by fastlog", "unsupported_version")
        limit = self.broker.config["max.request.entries"]
        if len(frame) > limit and entries_over(body, limit):  # every entry takes a byte at least
            raise ConnectionClosed(f"{type(body).__name__} names more than max.request.entries={limit} topics, partitions or other entries", "request_too_large")
        context = RequestContext(self.broker, header, version, self.peer, self.listener.name, self.principal)
        started = self.transport.now()
        metered = self.broker.quotas.active and api_key not in QUOTA_EXEMPT
        throttle = self._throttle(quotas.PRODUCER_BYTE_RATE, header, len(frame)) if metered and api_key == PRODUCE else 0.0
        if metered and api_key == FETCH and version >= 3:
            self._cap_fetch(header, context, body)
        try:
            if self.loop is not None and not answered_on_any_loop(context, body):
                response = await self.loop.on_owner(handler.handle, context, body)
            else:
                response = await handler.handle(context, body)
            if metered:
                throttle = max(throttle, self._charge_response(header, context, body, response, self.transport.now() - started))
            if response is None:
                return None
            if isinstance(response, Pending):  # its response object comes later: encoded then
                return Pending(functools.partial(self._encode_later, response, header.correlation_id, api_key, version, throttle))
            if throttle > 0:
                set_throttle(response, throttle)
            metrics.observe_response(api_key, response)
            parts = protocol.encode_response(header.correlation_id, api_key, version, response).framed_parts()
        except ConnectionClosed:
            raise
        except Exception:
            request = {"peer": self.peer, "api": type(body).__name__, "api_version": version, "correlation_id": header.correlation_id}
            log.exception(
                "%s v%d from %s (correlation id %d) failed", type(body).__name__, version, self.peer, header.correlation_id, extra=request
            )
            raise ConnectionClosed(f"internal error handling {type(body).__name__}", "internal_error") from None
        finally:
            metrics.observe_request(api_key, self.transport.now() - started)
        return parts

    async def _encode_later(self, pending: Pending, correlation_id: int, api_key: int, version: int, throttle: float = 0.0) -> Optional[bytes]:
        response = await pending.wait()
        if response is None:
            return None
        if throttle > 0:
            set_throttle(response, throttle)
        self.broker.metrics.observe_response(api_key, response)
        return b"".join(protocol.encode_response(correlation_id, api_key, version, response).framed_parts())

    # -- client quotas (fastlog.quotas) --------------------------------------------------

    def _metered_frame(self, frame: "bytes | bytearray") -> bool:
        """Whether a Produce quota or request quota applies to this frame's client: its
        request then takes the decoded path, where it is measured and throttled; everyone
        else's stays on the fast path."""
        manager = self.broker.quotas
        if not manager.active:
            return False
        client_id = peek_client_id(frame)
        return any(manager.bound(key, self.principal, client_id) is not None for key in (quotas.PRODUCER_BYTE_RATE, quotas.REQUEST_PERCENTAGE))

    def _cap_fetch(self, header: Any, context: RequestContext, body: Any) -> None:
        """A consumer under a byte-rate quota fetches at most one quota window's worth at a
        time (as Kafka's getMaxValueInQuotaWindow), so one response cannot outrun its quota."""
        if fetch.replica_id(context, body) >= 0:
            return
        manager = self.broker.quotas
        found = manager.bound(quotas.CONSUMER_BYTE_RATE, self.principal, header.client_id or "")
        if found is not None:
            body.max_bytes = max(1, min(body.max_bytes, int(found[0] * manager.samples * manager.window)))
            body.min_bytes = min(body.min_bytes, body.max_bytes)

    def _charge_response(self, header: Any, context: RequestContext, body: Any, response: Any, seconds: float) -> float:
        """Records a request's handling time, less what it parked waiting for data or a
        rebalance (request_percentage), and a consumer's fetched bytes (consumer_byte_rate);
        the longest throttle either asks for. A follower's Fetch is never charged."""
        api_key = header.request_api_key
        if api_key == FETCH and fetch.replica_id(context, body) >= 0:
            return 0.0
        throttle = 0.0
        if api_key not in WAITING_APIS:
            throttle = self._throttle(quotas.REQUEST_PERCENTAGE, header, max(0.0, seconds - context.waited) * 100)
        if api_key == FETCH and response is not None:
            throttle = max(throttle, self._throttle(quotas.CONSUMER_BYTE_RATE, header, fetched_bytes(response)))
        own = (getattr(response, "throttle_time_ms", 0) or 0) / 1000  # a handler's own: controller mutations
        if own > 0:
            self.throttled_until = max(self.throttled_until, self.transport.now() + own)
        return max(throttle, own)

    def _throttle(self, key: str, header: Any, value: float) -> float:
        """Charges `value` to the quota that applies; when over it, the connection reads
        nothing more until the throttle ends (KIP-219's muting) and its length is returned."""
        seconds = self.broker.quotas.record(key, self.principal, header.client_id or "", value)
        if seconds > 0:
            self.throttled_until = max(self.throttled_until, self.transport.now() + seconds)
        return seconds

    def _note_trailing_bytes(self, api_key: int, version: int, trailing: int) -> None:
        """Bytes after a request's last field are ignored, as Kafka ignores them; counted, and
        logged once per connection (a client that sends them sends them with every request)."""
        self.broker.metrics.count_trailing_bytes(api_key)
        if not self.trailing_bytes_logged:
            self.trailing_bytes_logged = True
            log.debug(
                "%s v%d from %s has %d bytes after its last field; ignored (logged once per connection)",
                protocol.API_BY_KEY[api_key].name, version, self.peer, trailing, extra={"peer": self.peer},
            )

    def _answer_undecodable(self, error: CodecError) -> list:
        api_key = getattr(error, "api_key", None)
        correlation_id = getattr(error, "correlation_id", None)
        if api_key == API_VERSIONS and correlation_id is not None and isinstance(error, protocol.UnsupportedVersionError):
            # KIP-511: an ApiVersions request of a version we do not know gets a v0 answer
            # with UNSUPPORTED_VERSION and our ranges, so the client can pick a version.
            log.info("answering ApiVersions v%s from %s with UNSUPPORTED_VERSION", getattr(error, "api_version", "?"), self.peer)
            return self._api_versions_error(correlation_id)
        raise ConnectionClosed(f"undecodable request: {error}", "undecodable_request")

    def _api_versions_error(self, correlation_id: int) -> list:
        body = api_versions_body(ErrorCode.UNSUPPORTED_VERSION)
        return protocol.encode_response(correlation_id, API_VERSIONS, 0, body).framed_parts()

    async def _send(self, parts: list) -> None:
        """Sends response parts in order: runs of bytes with `writev`, file regions with sendfile."""
        inlined = 0
        if not all(isinstance(part, BUFFERS) for part in parts):
            parts, inlined = with_cached_regions_inline(parts)
            prefetch([part for part in parts if not isinstance(part, BUFFERS)])
        run: list = []
        for part in parts:
            if isinstance(part, BUFFERS):
                run.append(part)
                continue
            if run:
                await self._send_buffers(run)
                run = []
            await self._sendfile(part)
        if run:
            await self._send_buffers(run)
        if inlined:
            self.broker.metrics.count_bytes_out(inlined)

    async def _send_buffers(self, buffers: list) -> None:
        await self.transport.send_buffers(buffers)

    async def _sendfile(self, region: Any) -> None:
        await self.transport.send_region(region)
        self.broker.metrics.count_bytes_out(len(region))


def peek_client_id(frame: "bytes | bytearray") -> str:
    """The client id of a request frame, read off its header (every header version keeps it
    as a plain nullable string after api key, version and correlation id)."""
    if len(frame) < 10:
        return ""
    size = int.from_bytes(frame[8:10], "big", signed=True)
    return "" if size < 0 else bytes(frame[10 : 10 + size]).decode("utf-8", "replace")


def entries_over(body: Any, limit: int) -> bool:
    """Whether a decoded request holds more than `limit` array entries in all (topics,
    partitions, groups, ... summed at every level): what the handler would walk through."""
    count = 0
    pending = [body]
    while pending:
        message = pending.pop()
        for name in message._FIELDS:
            value = getattr(message, name, None)
            if isinstance(value, list):
                count += len(value)
                if count > limit:
                    return True
                pending += [item for item in value if hasattr(item, "_FIELDS")]
    return False


def set_throttle(response: Any, seconds: float) -> None:
    if hasattr(response, "throttle_time_ms"):
        response.throttle_time_ms = max(response.throttle_time_ms or 0, math.ceil(seconds * 1000))


def fetched_bytes(response: Any) -> int:
    return sum(len(p.records or b"") for topic in response.responses for p in topic.partitions)


def answered_on_any_loop(context: RequestContext, body: Any) -> bool:
    """Whether an extra network loop answers this request itself: Produce, ApiVersions, and a
    consumer's Fetch. A follower's Fetch moves the leader's replication state (the high
    watermark, the ISR, acks=all waiting), which lives on the broker's loop, as does the schema
    registry a Produce to a topic with schema validation is checked against."""
    api_key = context.header.request_api_key
    if api_key == FETCH:
        return (body.replica_state.replica_id if context.api_version >= 15 else body.replica_id) < 0
    if api_key == PRODUCE:
        return not produce.validated(context.broker, body)
    return api_key in LOOP_LOCAL_APIS


def with_cached_regions_inline(parts: list) -> tuple[list, int]:
    """(the parts with small file regions replaced by their bytes, the bytes so read): regions
    of up to INLINE_REGION_BYTES whose pages the page cache holds (`read_cached`), up to
    INLINE_BURST_BYTES in all. A Fetch answer of a few records then goes out in one writev,
    not a writev, a sendfile and a writev; a wide one copies no more than that."""
    inlined = list(parts)
    total = 0
    for i, part in enumerate(parts):
        if isinstance(part, BUFFERS) or len(part) > INLINE_REGION_BYTES or total + len(part) > INLINE_BURST_BYTES:
            continue
        data = read_cached(part.fileno(), len(part), part.position)
        if data is not None and len(data) == len(part):
            inlined[i] = data
            total += len(data)
    return inlined, total


def prefetch(regions: list) -> None:
    """Asks the kernel to start reading every file region of a response at once: sendfile alone
    reads a cold file in readahead-window steps, each waited for (a cold 1 GB consume ran at
    455 MB/s against 1,440 MB/s for plain 1 MiB reads of the same disk)."""
    if not hasattr(os, "posix_fadvise"):  # macOS
        return
    for region in regions:
        try:
            os.posix_fadvise(region.fileno(), region.position, len(region), os.POSIX_FADV_WILLNEED)
        except OSError:
            pass  # advice only


class ConnectionSlots:
    """Connections open at once (`max.connections`, per listener too, and
    `max.connections.per.ip` with its overrides), across every network loop (each loop's
    thread takes and gives back)."""

    def __init__(self, config: "BrokerConfig") -> None:
        self.limit = config["max.connections"]
        self.per_ip = config["max.connections.per.ip"]
        self.ip_overrides = parse_ip_counts("max.connections.per.ip.overrides", config["max.connections.per.ip.overrides"])
        self.per_listener = {l.name: config.listener_setting(l.name, "max.connections") for l in config.client_listeners}
        self.taken = 0
        self._by_ip: collections.Counter[str] = collections.Counter()
        self._by_listener: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def take(self, ip: str, listener: str) -> Optional[str]:
        """None when the connection may open, else the limit it is over."""
        with self._lock:
            if self.taken >= self.limit:
                return f"max.connections={self.limit}"
            listener_limit = self.per_listener.get(listener, self.limit)
            if self._by_listener[listener] >= listener_limit:
                return f"listener.name.{listener.lower()}.max.connections={listener_limit}"
            ip_limit = self.ip_overrides.get(ip, self.per_ip)
            if self._by_ip[ip] >= ip_limit:
                return f"max.connections.per.ip={ip_limit} for {ip}"
            self.taken += 1
            self._by_ip[ip] += 1
            self._by_listener[listener] += 1
            return None

    def give_back(self, ip: str, listener: str) -> None:
        with self._lock:
            self.taken -= 1
            self._by_listener[listener] -= 1
            self._by_ip[ip] -= 1
            if not self._by_ip[ip]:
                del self._by_ip[ip]


def idle_sweep_seconds(idle_ms: int) -> float:
    """How often a loop looks for idle connections: a tenth of connections.max.idle.ms, within
    [10 ms, 30 s] (30 s also when idle connections are kept, -1)."""
    if idle_ms < 0:
        return IDLE_SWEEP_MAX_SECONDS
    return min(max(idle_ms / 10_000, 0.01), IDLE_SWEEP_MAX_SECONDS)


async def close_idle_connections(broker: "Broker", connections: "set[Connection]", stop: trio.CancelScope) -> None:
    """Closes the connections of this loop that have waited for a request for longer than
    connections.max.idle.ms, as Kafka's selector does, until `stop` is cancelled. A sweep
    rather than a deadline per wait: a cancel scope per wait cost about 60,000 of a small
    request's 416,000 instructions (bench/README.md, "The cost of a small request")."""
    with stop:
        while True:
            idle_ms = broker.config["connections.max.idle.ms"]
            await trio.sleep(idle_sweep_seconds(idle_ms))
            if idle_ms >= 0:
                now = trio.current_time()
                for connection in list(connections):
                    connection.close_if_idle(now, idle_ms / 1000)


async def serve_listener(broker: "Broker", listener: trio.SocketListener, named: Listener, connections: trio.Nursery) -> None:
    """Accepts connections until cancelled; each runs in the `connections` nursery, or is
    handed to the next extra network loop in turn (`num.network.threads`). Past the
    listener's `max.connection.creation.rate`, the next accept waits (as Kafka's acceptor)."""
    limited = broker.connection_rates.limits_accepts(named.name)
    while True:
        try:
            stream = await listener.accept()
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.error("accept failed (%s); retrying in 100 ms", os.strerror(e.errno))
                await trio.sleep(0.1)
                continue
            raise
        loop = broker.next_network_loop()
        if loop is None:
            connections.start_soon(run_connection, broker, stream, named, None)
        else:
            loop.adopt(stream, named)
        if limited:
            delay = broker.connection_rates.accept_delay(named.name, time.monotonic())
            if delay > 0:
                broker.metrics.count_connection_throttle(named.name, delay)
                await trio.sleep(delay)


async def run_connection(broker: "Broker", stream: trio.SocketStream, listener: Listener, loop: "Optional[NetworkLoop]") -> None:
    try:
        ip = stream.socket.getpeername()[0]
    except OSError:
        ip = "?"
    if ip.startswith("::ffff:") and "." in ip:  # an IPv4 client of a dual-stack listener
        ip = ip[len("::ffff:"):]
    refusal = broker.connection_slots.take(ip, listener.name)
    if refusal is None:
        throttle = broker.connection_rates.ip_throttle(ip, time.monotonic())
        if throttle > 0:
            broker.connection_slots.give_back(ip, listener.name)
            refusal = f"connection_creation_rate quota of {ip} (throttled {throttle * 1000:.0f} ms)"
    if refusal is not None:
        log.warning("refusing a connection from %s on %s: %s reached", ip, listener.name, refusal)
        broker.metrics.connection_closed("max_connections")
        await stream.aclose()
        return
    connection = Connection(broker, stream, listener, loop)
    served = broker.connections if loop is None else loop.connections
    served.add(connection)
    if loop is not None and loop.stopping:
        connection.stop_reading()  # handed over as the loop began to stop
    broker.metrics.count_connection_opened()
    try:
        await connection.run()
    except Exception:
        log.exception("connection from %s failed", connection.peer, extra={"peer": connection.peer})
        connection.close_reason = "internal_error"
    finally:
        served.discard(connection)
        broker.connection_slots.give_back(ip, listener.name)
        reason = "shutdown" if connection.stopping else connection.close_reason
        broker.metrics.connection_closed(reason)
        log.debug("connection from %s closed: %s", connection.peer, reason, extra={"peer": connection.peer})
