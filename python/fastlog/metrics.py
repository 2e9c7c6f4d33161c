"""What the broker counts about itself, and the Prometheus endpoint that exports it.

The hot path only bumps plain counters and observes latency histograms; everything that can
be read off the broker's state (partition sizes and offsets, connections, group lag) is
collected when Prometheus scrapes, so it costs nothing in between. Each broker has its own
registry (several brokers can run in one process, as in tests).

The endpoint is a tiny HTTP/1.0 server on Trio (`serve_metrics`), started from the broker's
background nursery: `GET /metrics` answers `prometheus_client.generate_latest()`. It listens on
`metrics.host:metrics.port` (127.0.0.1:9404 by default; -1 turns it off, 0 takes a free port).
A port already in use is logged as an error and the broker runs on without the endpoint.

Exported (all prefixed `fastlog_`):
  request_duration_seconds{api}            histogram of handling a request; its _count is the request rate
  request_total_seconds{api}               histogram from the request's frame read off the socket to its
                                           response's last byte written (the broker's own time, queueing
                                           and acks=all waits included)
  gc_pause_seconds{generation}             histogram of Python's garbage collector pauses
  requests_total{api}                      requests handled
  errors_total{api,error}                  error codes answered (top-level, and per partition
                                           for Produce and Fetch)
  bytes_in_total, bytes_out_total          produced record bytes, fetched record bytes sent
  messages_in_total{topic}                 records produced
  connections_active, connections_opened_total, connections_closed_total{reason}
  authentications_total{listener,mechanism,result}  SASL and TLS client authentications, succeeded or failed
  authorization_denials_total{operation,resource_type}  requests (or parts) the ACLs refused
  network_loop_connections{loop}          connections open on each network loop (num.network.threads)
  quota_throttled_requests_total, quota_throttle_seconds_total {quota,user,client_id,ip}  requests a
                                           client quota throttled, and for how long in all (Kafka's throttle-time)
  quota_rate{quota,user,client_id,ip}      each quota sensor's measured rate (bytes/s, percent, per second)
  connection_accept_throttle_seconds_total{listener}  waits of max.connection.creation.rate
  fsync_duration_seconds                   histogram of the scheduled flushes (flush.ms)
  partition_log_size_bytes, partition_log_end_offset, partition_high_watermark,
  partition_log_start_offset, partition_segments {topic,partition}
  topics, partitions, open_files
  log_cleaner_enabled, log_cleaner_bytes_read_total, log_cleaner_bytes_written_total,
  log_cleaner_records_removed_total        compaction progress (LogManager.cleaner_stats); 0 placeholders
                                           on a broker without a cleaner
  consumer_group_committed_offset, consumer_group_lag {group,topic,partition};
  consumer_groups{state}, consumer_group_members{group}
  broker_info{version,node_id,cluster_id}  always 1
"""

from __future__ import annotations

import gc
import itertools
import logging
import threading
import time
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from fastlog import protocol

if TYPE_CHECKING:
    from fastlog.broker import Broker

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The broker's own time per request: fine below a millisecond, where a p99 target lies.
REQUEST_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0)
PRODUCE, FETCH = 0, 1


def api_name(api_key: int) -> str:
    info = protocol.API_BY_KEY.get(api_key)
    return info.name if info else str(api_key)


def error_name(code: int) -> str:
    try:
        return protocol.ErrorCode(code).name
    except ValueError:
        return str(code)


class ApiHistogram:
    """A histogram with an `api` label, for the two observed on every request. prometheus_client's
    `Histogram.observe` takes a lock for each value it bumps (about 1.5 µs a call on the 2-core
    VM); here an observation is one bisect and two additions under one lock, shared with the
    other counters (several network loops observe at once). A collector: exported when
    Prometheus scrapes."""

    def __init__(self, name: str, documentation: str, bounds: tuple[float, ...], lock: threading.Lock) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = bounds
        self.lock = lock
        self.counts: dict[int, list[int]] = {}  # api key -> observations per bucket, the last past every bound
        self.sums: dict[int, float] = defaultdict(float)  # api key -> seconds observed in all

    def observe(self, api_key: int, seconds: float) -> None:
        with self.lock:
            self._add(api_key, seconds)

    def observe_each(self, observations: Iterable[tuple[int, float]]) -> None:
        """Several observations (a burst of responses sent together) under one lock."""
        with self.lock:
            for api_key, seconds in observations:
                self._add(api_key, seconds)

    def _add(self, api_key: int, seconds: float) -> None:
        counts = self.counts.get(api_key)
        if counts is None:
            counts = self.counts[api_key] = [0] * (len(self.bounds) + 1)
        counts[bisect_left(self.bounds, seconds)] += 1  # a bucket holds what is <= its bound
        self.sums[api_key] += seconds

    def observed(self) -> list[tuple[int, list[int], float]]:
        """(api key, counts per bucket, sum) of each API observed, copied under the lock."""
        with self.lock:
            return sorted((api_key, list(counts), self.sums[api_key]) for api_key, counts in self.counts.items())

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[Any]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["api"])
        for api_key, counts, total in self.observed():
            cumulative = list(itertools.accumulate(counts))
            buckets = [(floatToGoString(bound), n) for bound, n in zip(self.bounds, cumulative)]
            family.add_metric([api_name(api_key)], buckets + [("+Inf", cumulative[-1])], sum_value=total)
        yield family


@dataclass
class Metrics:
    connections_opened: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    bytes_out_pending: int = 0
    messages_in: dict = field(default_factory=lambda: defaultdict(int))
    errors: dict = field(default_factory=lambda: defaultdict(int))  # (api_key, error code) -> count
    connections_closed: dict = field(default_factory=lambda: defaultdict(int))  # reason -> count
    trailing_bytes: dict = field(default_factory=lambda: defaultdict(int))  # api_key -> requests
    down_converted: dict = field(default_factory=lambda: defaultdict(int))  # magic -> bytes sent
    authentications: dict = field(default_factory=lambda: defaultdict(int))  # (listener, mechanism, result) -> count
    authorization_denials: dict = field(default_factory=lambda: defaultdict(int))  # (operation, resource type) -> count
    accept_throttle: dict = field(default_factory=lambda: defaultdict(float))  # listener -> seconds accepts waited
    address: Optional[tuple[str, int]] = None  # where /metrics listens, once it does

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counting = threading.Lock()
        self.request_latency = ApiHistogram(
            "fastlog_request_duration_seconds", "Time to handle a request, by API", LATENCY_BUCKETS, self._counting
        )
        self.fsync_latency = Histogram(
            "fastlog_fsync_duration_seconds", "Time of a partition flush (fsync)", registry=self.registry, buckets=LATENCY_BUCKETS
        )
        self.request_total = ApiHistogram(
            "fastlog_request_total_seconds",
            "From a request's frame read off the socket to its response's last byte written, by API: the broker's own time, queueing included",
            REQUEST_BUCKETS, self._counting,
        )
        self.gc_pause = Histogram(
            "fastlog_gc_pause_seconds", "Pauses of Python's cyclic garbage collector, by generation", ["generation"],
            registry=self.registry, buckets=REQUEST_BUCKETS,
        )
        self.registry.register(self.request_latency)
        self.registry.register(self.request_total)
        self._gc_started = 0.0
        self._attached = False
        self._partition_gauges: Callable[[], bytes] = bytes  # the broker's, once attached

    # -- the hot path ----------------------------------------------------------------------

    def observe_request(self, api_key: int, seconds: float) -> None:
        self.request_latency.observe(api_key, seconds)

    def observe_sent(self, stamps: list[tuple[int, float]], done: float) -> None:
        """The broker's own time of each request of a burst whose responses went out at `done`:
        (api key, when its frame was read) each."""
        self.request_total.observe_each((api_key, done - read_at) for api_key, read_at in stamps)

    def watch_gc(self) -> None:
        """Times every collection of Python's garbage collector (gc.callbacks), for the metrics."""
        gc.callbacks.append(self._on_gc)

    def unwatch_gc(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self.gc_pause.labels(str(info.get("generation", "?"))).observe(time.perf_counter() - self._gc_started)
            self._gc_started = 0.0

    def observe_response(self, api_key: int, response: Any) -> None:
        """Counts the error codes of a response: its top-level code, and per partition for
        Produce and Fetch (the responses where partition errors matter and are cheap to read)."""
        code = getattr(response, "error_code", 0)
        if code:
            self.count_error(api_key, code)
        if api_key == PRODUCE:
            for topic in response.responses:
                for p in topic.partition_responses:
                    if p.error_code:
                        self.count_error(api_key, p.error_code)
        elif api_key == FETCH:
            for topic in response.responses:
                for p in topic.partitions:
                    if p.error_code:
                        self.count_error(api_key, p.error_code)

    def count_error(self, api_key: int, code: int) -> None:
        with self._counting:
            self.errors[(api_key, code)] += 1

    def count_down_conversion(self, magic: int, size: int) -> None:
        with self._counting:
            self.down_converted[magic] += size

    def count_trailing_bytes(self, api_key: int) -> None:
        with self._counting:
            self.trailing_bytes[api_key] += 1

    def record_produce(self, topic: str, records: int, size: int) -> None:
        with self._counting:
            self.messages_in[topic] += records
            self.bytes_in += size

    def count_bytes_out(self, size: int) -> None:
        with self._counting:
            self.bytes_out += size

    def connection_closed(self, reason: str) -> None:
        with self._counting:
            self.connections_closed[reason] += 1

    def count_authentication(self, listener: str, mechanism: str, succeeded: bool) -> None:
        with self._counting:
            self.authentications[(listener, mechanism, "succeeded" if succeeded else "failed")] += 1

    def count_authorization_denied(self, operation: str, resource_type: str) -> None:
        with self._counting:
            self.authorization_denials[(operation, resource_type)] += 1

    def count_connection_throttle(self, listener: str, seconds: float) -> None:
        with self._counting:
            self.accept_throttle[listener] += seconds

    def count_connection_opened(self) -> None:
        with self._counting:
            self.connections_opened += 1

    def observe_flush(self, seconds: float) -> None:
        self.fsync_latency.observe(seconds)

    # -- scrape time -----------------------------------------------------------------------

    def attach(self, broker: "Broker") -> None:
        """Exports the broker's state (read at scrape time) and times its log flushes."""
        if self._attached:
            return
        self._attached = True
        self.registry.register(BrokerCollector(broker, self))
        self._partition_gauges = broker.logs.table.metrics_text
        broker.logs.on_flush = self.observe_flush

    async def exposition(self) -> bytes:
        """Every family. Each partition's five gauges (50,000 samples at 10,000 partitions) are
        written by the Rust core on a worker thread without the GIL, so the loop goes on
        answering requests: built by prometheus_client on the loop they took 240 ms and set
        off a full collection (bench/README.md)."""
        families = generate_latest(self.registry)
        return families + await trio.to_thread.run_sync(self._partition_gauges)


class BrokerCollector:
    """Reads counters and broker state when Prometheus scrapes."""

    def __init__(self, broker: "Broker", metrics: Metrics) -> None:
        self.broker = broker
        self.metrics = metrics

    def describe(self) -> list:
        return []  # unchecked collector: its label sets change with topics and groups

    def collect(self) -> Iterator[Any]:
        yield from self._counters()
        yield from self._connections()
        yield from self._partitions()
        yield from self._cleaner()
        yield from self._groups()
        yield from self._cluster()
        yield from self._quotas()

    def _quotas(self) -> Iterator[Any]:
        labels = ["quota", "user", "client_id", "ip"]
        requests = CounterMetricFamily("fastlog_quota_throttled_requests", "Requests throttled by a client quota", labels=labels)
        seconds = CounterMetricFamily("fastlog_quota_throttle_seconds", "Throttle time given to clients over a quota", labels=labels)
        for tags, (count, total) in sorted(dict(self.broker.quotas.throttled).items()):
            requests.add_metric(list(tags), count)
            seconds.add_metric(list(tags), total)
        rates = GaugeMetricFamily("fastlog_quota_rate", "A quota sensor's rate now (bytes/s, percent of a thread, per second)", labels=labels)
        for key, user, client, ip, rate in sorted(self.broker.quotas.rates()):
            rates.add_metric([key, user, client, ip], rate)
        accepts = CounterMetricFamily("fastlog_connection_accept_throttle_seconds", "Time accepts waited for max.connection.creation.rate", labels=["listener"])
        for listener, total in sorted(self.metrics.accept_throttle.items()):
            accepts.add_metric([listener], total)
        yield from (requests, seconds, rates, accepts)

    def _counters(self) -> Iterator[Any]:
        m = self.metrics
        requests = CounterMetricFamily("fastlog_requests", "Requests handled, by API", labels=["api"])
        for key, counts, _ in m.request_latency.observed():
            requests.add_metric([api_name(key)], sum(counts))
        yield requests
        errors = CounterMetricFamily("fastlog_errors", "Error codes answered, by API and error", labels=["api", "error"])
        for (key, code), count in sorted(m.errors.items()):
            errors.add_metric([api_name(key), error_name(code)], count)
        yield errors
        trailing = CounterMetricFamily(
            "fastlog_requests_with_trailing_bytes", "Requests with bytes after their last field (ignored, as Kafka does), by API", labels=["api"]
        )
        for key, count in sorted(m.trailing_bytes.items()):
            trailing.add_metric([api_name(key)], count)
        yield trailing
        down = CounterMetricFamily(
            "fastlog_fetch_down_converted_bytes", "Bytes sent to Fetch v0-v3 readers, converted to message format v0/v1", labels=["magic"]
        )
        for magic, size in sorted(m.down_converted.items()):
            down.add_metric([str(magic)], size)
        yield down
        authentications = CounterMetricFamily(
            "fastlog_authentications", "Client authentications (SASL, TLS certificates), by listener, mechanism and result",
            labels=["listener", "mechanism", "result"],
        )
        for labels, count in sorted(m.authentications.items()):
            authentications.add_metric(list(labels), count)
        yield authentications
        denials = CounterMetricFamily(
            "fastlog_authorization_denials", "Requests, or topics and groups within them, the ACLs refused", labels=["operation", "resource_type"],
        )
        for labels, count in sorted(m.authorization_denials.items()):
            denials.add_metric(list(labels), count)
        yield denials
        yield CounterMetricFamily("fastlog_bytes_in", "Record bytes produced to the broker", value=m.bytes_in)
        yield CounterMetricFamily("fastlog_bytes_out", "Record bytes sent to fetching clients", value=m.bytes_out)
        messages = CounterMetricFamily("fastlog_messages_in", "Records produced, by topic", labels=["topic"])
        for topic, count in sorted(m.messages_in.items()):
            messages.add_metric([topic], count)
        yield messages
        info = GaugeMetricFamily("fastlog_broker_info", "The broker's version and ids", labels=["version", "node_id", "cluster_id"])
        from fastlog import __version__

        info.add_metric([__version__, str(self.broker.node_id), self.broker.logs.cluster_id], 1)
        yield info

    def _connections(self) -> Iterator[Any]:
        m = self.metrics
        loops = [self.broker.connections] + [l.connections for l in getattr(self.broker, "network_loops", ())]
        yield GaugeMetricFamily("fastlog_connections_active", "Client connections open now", value=sum(map(len, loops)))
        by_loop = GaugeMetricFamily("fastlog_network_loop_connections", "Client connections open now, by network loop (num.network.threads)", labels=["loop"])
        for index, connections in enumerate(loops):
            by_loop.add_metric([str(index)], len(connections))
        yield by_loop
        yield CounterMetricFamily("fastlog_connections_opened", "Client connections accepted", value=m.connections_opened)
        closed = CounterMetricFamily("fastlog_connections_closed", "Client connections closed, by reason", labels=["reason"])
        for reason, count in sorted(m.connections_closed.items()):
            closed.add_metric([reason], count)
        yield closed

    def _partitions(self) -> Iterator[Any]:
        """The counts; each partition's gauges come from the Rust core (`Metrics.exposition`)."""
        topics = list(self.broker.logs.topics.values())
        partitions = sum(len(topic.partitions) for topic in topics)
        yield GaugeMetricFamily("fastlog_topics", "Topics on this broker", value=len(topics))
        yield GaugeMetricFamily("fastlog_partitions", "Partitions on this broker", value=partitions)
        try:
            from fastlog import _core

            yield GaugeMetricFamily("fastlog_open_files", "Segment files open now", value=_core.open_file_count())
        except Exception:
            pass

    def _cleaner(self) -> Iterator[Any]:
        # Log compaction's progress, from `LogManager.cleaner_stats` when the broker has a
        # cleaner; 0 placeholders otherwise, so dashboards can use the names either way.
        stats = getattr(self.broker.logs, "cleaner_stats", None)
        stats = stats if isinstance(stats, dict) else {}
        yield GaugeMetricFamily("fastlog_log_cleaner_enabled", "1 when this broker compacts logs (else the cleaner series are placeholders)", value=1 if stats else 0)
        for key, doc in (
            ("bytes_read", "Bytes the log cleaner read"),
            ("bytes_written", "Bytes the log cleaner wrote"),
            ("records_removed", "Records compaction removed"),
        ):
            yield CounterMetricFamily(f"fastlog_log_cleaner_{key}", doc, value=stats.get(key, 0))

    def _cluster(self) -> Iterator[Any]:
        """The metadata quorum and the cluster as this node sees them (only in a cluster)."""
        controller = getattr(self.broker, "controller", None)
        if controller is None:
            return
        image = controller.image
        epoch, commit_index, _, _ = controller.quorum_state()
        yield GaugeMetricFamily("fastlog_controller_active", "1 on the node that is the controller (the quorum leader)", value=int(controller.is_leader))
        yield GaugeMetricFamily("fastlog_quorum_leader", "Node id of the quorum leader (-1: none known)", value=controller.leader_id)
        yield GaugeMetricFamily("fastlog_quorum_epoch", "The quorum's current term (a leader election raises it)", value=epoch)
        yield GaugeMetricFamily("fastlog_quorum_commit_index", "Index up to which the metadata log is committed", value=commit_index)
        yield GaugeMetricFamily("fastlog_quorum_applied_index", "Index of the last metadata record applied here", value=image.last_applied)
        yield GaugeMetricFamily("fastlog_fenced_brokers", "Registered brokers the controller fenced", value=sum(b.fenced for b in image.brokers.values()))
        offline = sum(1 for t in image.topics.values() for p in t.assignments if p.leader < 0)
        yield GaugeMetricFamily("fastlog_offline_partitions", "Partitions without a leader (no live in-sync replica)", value=offline)
        yield CounterMetricFamily("fastlog_leader_elections", "Leaders chosen after a broker was fenced or came back", value=image.leader_elections)
        replicas = self.broker.replicas
        if replicas is not None:
            yield GaugeMetricFamily("fastlog_under_replicated_partitions", "Partitions led here whose ISR lacks some replica", value=replicas.under_replicated())
            yield CounterMetricFamily("fastlog_isr_shrinks", "ISR shrinks this broker asked for as a leader", value=replicas.isr_shrinks)
            yield CounterMetricFamily("fastlog_isr_expands", "ISR expansions this broker asked for as a leader", value=replicas.isr_expands)
            lag = GaugeMetricFamily("fastlog_follower_lag_messages", "Leader's log end minus a follower's, per partition led here", labels=["topic", "partition", "follower"])
            for state in list(replicas.states.values()):
                if state.leader == self.broker.node_id:
                    end = state.partition.log.log_end_offset
                    for follower_id, follower in state.followers.items():
                        if follower.log_end >= 0:
                            lag.add_metric([state.topic, str(state.index), str(follower_id)], end - follower.log_end)
            yield lag

    def _groups(self) -> Iterator[Any]:
        coordinator = getattr(self.broker, "groups", None)
        offsets = getattr(coordinator, "offsets", None)
        groups = getattr(coordinator, "groups", None)
        if not isinstance(offsets, dict) or not isinstance(groups, dict):
            return
        labels = ["group", "topic", "partition"]
        committed = GaugeMetricFamily("fastlog_consumer_group_committed_offset", "A group's committed offset", labels=labels)
        lag = GaugeMetricFamily("fastlog_consumer_group_lag", "High watermark minus committed offset", labels=labels)
        logs = self.broker.logs
        for group_id, by_partition in list(offsets.items()):
            for (topic, index), value in list(by_partition.items()):
                offset = getattr(value, "offset", None)
                if offset is None or offset < 0:
                    continue
                key = [group_id, topic, str(index)]
                committed.add_metric(key, offset)
                partition = logs.partition(topic, index)
                if partition is not None:
                    lag.add_metric(key, max(0, partition.log.high_watermark - offset))
        yield committed
        yield lag
        states = GaugeMetricFamily("fastlog_consumer_groups", "Groups, by state", labels=["state"])
        members = GaugeMetricFamily("fastlog_consumer_group_members", "Members of a group", labels=["group"])
        by_state: dict[str, int] = defaultdict(int)
        for group_id, group in list(groups.items()):
            state = getattr(group, "state", None)
            by_state[str(getattr(state, "value", state))] += 1
            members.add_metric([group_id], len(getattr(group, "members", {})))
        for state, count in sorted(by_state.items()):
            states.add_metric([state], count)
        yield states
        yield members


# -- the HTTP endpoint -----------------------------------------------------------------------------

MAX_REQUEST_HEAD = 8192
HTTP_TIMEOUT_SECONDS = 10


async def serve_metrics(broker: "Broker", *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serves `GET /metrics` on metrics.host:metrics.port until cancelled, and the web console
    at `/` beside it unless console.enable=false.

    `task_status.started(address or None)` once listening, or at once when the endpoint is
    off or its port cannot be bound (logged; the broker runs on without it)."""
    metrics = broker.metrics
    metrics.attach(broker)
    host, port = broker.config["metrics.host"], broker.config["metrics.port"]
    if port < 0:
        log.info("metrics endpoint off (metrics.port=-1)")
        task_status.started(None)
        return
    beside = broker.config["console.enable"] and not broker.config["console.listeners"]
    if beside and broker.is_broker:  # a controller-only node has no clients' listener
        await _serve_with_console(broker, host, port, task_status)
        return
    try:
        listeners = await trio.open_tcp_listeners(port, host=host or None)
    except OSError as e:
        log.error("metrics endpoint off: cannot listen on %s:%d: %s", host, port, e.strerror or e)
        task_status.started(None)
        return
    bound = _announce(metrics, listeners[0].socket.getsockname()[:2])
    task_status.started(bound)

    async def handle(stream: trio.SocketStream) -> None:
        await _answer_http(metrics, stream)

    await trio.serve_listeners(handle, listeners)


def _announce(metrics: Metrics, bound: tuple[str, int]) -> tuple[str, int]:
    metrics.address = bound
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    log.info("metrics at http://%s:%d/metrics", shown, bound[1])
    return bound


async def _serve_with_console(broker: "Broker", host: str, port: int, task_status: Any) -> None:
    """/metrics and the web console (fastlog.console) on one listener, served by hypercorn."""
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from fastlog import console
    from fastlog.http_serving import bind

    metrics = broker.metrics
    try:
        sockets = bind([(host, port)])
    except OSError as e:
        log.error("metrics endpoint off: cannot listen on %s:%d: %s (nor the console)", host, port, e.strerror or e)
        task_status.started(None)
        return
    bound = _announce(metrics, sockets[0].getsockname()[:2])
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    settings = console.broker_settings(broker)
    log.info("console at http://%s:%d/%s", shown, bound[1], " (read-only)" if settings.read_only else "")

    async def exposition(request: Request) -> Response:
        return Response(await metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async with trio.open_nursery() as nursery:
        await nursery.start(console.serve, console.Console(settings), sockets, [Route("/metrics", exposition, methods=["GET"])])
        task_status.started(bound)


async def _answer_http(metrics: Metrics, stream: trio.SocketStream) -> None:
    try:
        with trio.move_on_after(HTTP_TIMEOUT_SECONDS):
            head = bytearray()
            while b"\r\n\r\n" not in head and b"\n\n" not in head:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                head += chunk
                if len(head) > MAX_REQUEST_HEAD:
                    await _respond(stream, 431, b"request head too large\n")
                    return
            request_line = bytes(head).split(b"\n", 1)[0].decode("latin-1").strip()
            parts = request_line.split()
            if len(parts) < 2:
                await _respond(stream, 400, b"bad request\n")
                return
            method, target = parts[0], parts[1].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                await _respond(stream, 405, b"only GET\n", extra=b"Allow: GET, HEAD\r\n")
            elif target == "/metrics":
                await _respond(stream, 200, await metrics.exposition(), CONTENT_TYPE_LATEST, head_only=method == "HEAD")
            elif target == "/":
                await _respond(stream, 200, b'<html><body><a href="/metrics">fastlog metrics</a></body></html>\n', "text/html", head_only=method == "HEAD")
            else:
                await _respond(stream, 404, b"not found; try /metrics\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    except Exception:
        log.exception("metrics endpoint: answering a request failed")
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 431: "Request Header Fields Too Large"}


async def _respond(
    stream: trio.SocketStream, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", *, head_only: bool = False, extra: bytes = b""
) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    ).encode() + extra + b"\r\n"
    await stream.send_all(head if head_only else head + body)
