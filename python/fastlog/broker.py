"""The broker: configuration, the log manager, listeners and background work, with a clean
start and a graceful stop (stop accepting, finish requests in flight, flush and close logs)."""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, AsyncContextManager, Callable, Iterator, Optional

import outcome
import trio

from fastlog.config import BrokerConfig, http_listener_addresses, validate_topic_configs
from fastlog.controller import Controller
from fastlog.metadata_node import MetadataNode
from fastlog.metadata_observer import MetadataObserver
from fastlog.group_coordinator import GroupCoordinator
from fastlog.io_threads import IoThreads
from fastlog.log_manager import LogManager
from fastlog.metrics import Metrics, serve_metrics
from fastlog.producer_ids import ClusterProducerIds, ProducerIdAllocator
from fastlog.replica_manager import OFFSETS_TOPIC, ReplicaManager
from fastlog.security.sasl import ListenerSasl
from fastlog.security.acls import authorizer_for
from fastlog.security.client_side import ClientSecurity, inter_broker_security
from fastlog.security.scram import scram_store
from fastlog.security.tls import ListenerTls, QuorumTls
from fastlog.network_loops import NetworkLoop, gil_enabled, network_threads
from fastlog.quotas import ConnectionRates, QuotaManager
from fastlog.server import Connection, ConnectionSlots, close_idle_connections, serve_listener
from fastlog.topic_admin import ClusterTopics, LocalTopics, TopicView
from fastlog.transaction_coordinator import TXN_TOPIC, TransactionCoordinator

if TYPE_CHECKING:
    from fastlog.schema_registry.registry import SchemaRegistry

log = logging.getLogger(__name__)

BROKERS_WAIT_SECONDS = 10.0  # a starting cluster's brokers register within this (the _schemas replicas)

SHUTDOWN_GRACE_SECONDS = 10
# The net change in open partitions since the last gc.freeze() that makes it worth freezing
# again: at least REFREEZE_MIN_PARTITIONS and REFREEZE_SHARE of those open then; checked every
# REFREEZE_CHECK_SECONDS.
REFREEZE_CHECK_SECONDS = 30
REFREEZE_MIN_PARTITIONS = 100
REFREEZE_SHARE = 0.1
CONTROLLED_SHUTDOWN_SECONDS = 5  # for the partitions led here to get other leaders first


class Broker:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.logs = LogManager(config)
        self.io_threads = IoThreads(config["num.io.threads"])
        self.metrics = Metrics()
        self.groups = GroupCoordinator.for_broker(self)
        self.transactions = TransactionCoordinator(self)
        self.is_broker = config.is_broker  # False on a controller-only node: no clients, no logs served
        # In a cluster: this node's view of the metadata, as a voter of the quorum (a node with
        # the controller role) or as an observer of it (a broker-only node).
        self.controller: Optional[MetadataNode] = None
        if config.cluster_mode:
            self.controller = Controller(self) if config.is_voter else MetadataObserver(self)
        self.producer_ids: ProducerIdAllocator | ClusterProducerIds = (
            ClusterProducerIds(self.controller) if self.controller is not None else ProducerIdAllocator(self.logs.data_dir)
        )
        # Topics as the admin APIs and Metadata see them: this node's logs, or the cluster's image.
        self.topics: LocalTopics | ClusterTopics = ClusterTopics(self) if self.controller else LocalTopics(self)
        # In a cluster: which partitions this broker leads or follows, and replication.
        self.replicas: Optional[ReplicaManager] = ReplicaManager(self) if self.controller else None
        if self.controller is not None:
            self.logs.table.set_cluster_mode()  # a partition is writable here once it is led here
        # Security, read now so that a bad certificate or JAAS file stops the start: each TLS
        # listener's context, each SASL listener's settings, the SCRAM credentials.
        self.tls = {l.name: ListenerTls(config, l.name) for l in config.client_listeners if l.uses_tls}
        self.sasl = {l.name: ListenerSasl(config, l.name) for l in config.client_listeners if l.uses_sasl}
        self.scram = scram_store(self)
        self.authorizer = authorizer_for(self, config)  # None: no ACLs, every request allowed
        # How the built-in schema registry connects to this broker (checked now: bad settings stop the start).
        self.registry_security = ClientSecurity.from_settings(config.registry_client, "schema.registry.kafkastore.*")
        # How followers reach their leaders (TLS, SASL) on the inter-broker listener.
        self.inter_broker_security = inter_broker_security(config, self.tls) if self.replicas is not None and self.is_broker else None
        # TLS of the metadata quorum's connections (an SSL controller listener), else None.
        self.quorum_tls = QuorumTls(config) if config.cluster_mode and config.controller_protocol == "SSL" else None
        self.connections: set[Connection] = set()  # served on this loop; extra loops keep their own
        self.connection_slots = ConnectionSlots(config)
        self.quotas = QuotaManager(self)  # client quotas, and the throttling that holds clients to them
        self.connection_rates = ConnectionRates(self.quotas)
        self.network_loops: list[NetworkLoop] = []
        self._next_loop: Iterator[Optional[NetworkLoop]] = itertools.repeat(None)
        self._token: Optional[trio.lowlevel.TrioToken] = None  # the broker's loop, once it runs
        self.bound: list[tuple[str, int]] = []  # where each client listener listens, in config order
        self.schema_registry: Optional["SchemaRegistry"] = None  # the built-in one, when on
        self.schema_registry_url: Optional[str] = None  # where it listens, once it does
        self._shutdown = trio.Event()
        # Topic changes on this node's logs are serialised: one create/delete/alter at a time.
        self.admin_lock = trio.Lock()
        self._background: Optional[trio.Nursery] = None

    @property
    def node_id(self) -> int:
        return self.config.node_id

    def advertised_address(self, listener_name: Optional[str] = None) -> tuple[str, int]:
        """The host and port clients are told to connect to (of the first client listener, or
        of the one named)."""
        config = self.config
        if config["advertised.listeners"]:
            named = [l for l in config.advertised_listeners if l.name == listener_name]
            listener = named[0] if named else config.advertised_listeners[0]
            return listener.host, listener.port
        index = next((i for i, l in enumerate(config.client_listeners) if l.name == listener_name), 0)
        listener = config.client_listeners[index]
        host, port = self.bound[index] if len(self.bound) > index else (listener.host, listener.port)
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return host, port

    def live_brokers(self, listener: Optional[str] = None) -> list[tuple[int, str, int, Optional[str]]]:
        """(id, host, port, rack) of the brokers clients may use, at their endpoints of the
        named listener (a client that came in on SASL_SSL is told SASL_SSL addresses): in a
        cluster the unfenced registered ones (this node too, before its registration is
        applied); else this one."""
        host, port = self.advertised_address(listener)
        me = (self.node_id, host, port, self.config["broker.rack"])
        if self.controller is None:
            return [me]
        live = [(b.id, *b.endpoint(listener), b.rack) for b in self.controller.image.listed_brokers()]
        if self.node_id not in self.controller.image.brokers:
            live = sorted(live + [me])
        return live

    def coordinates_groups(self) -> bool:
        """Whether this broker is the group coordinator: always alone; in a cluster, the
        leader of `__consumer_offsets` (all its partitions have the same replicas)."""
        if self.replicas is None:
            return True
        return self.replicas.leader_epoch(OFFSETS_TOPIC, 0) is not None

    def coordinates_transactions(self) -> bool:
        """Whether this broker is the transaction coordinator: always alone; in a cluster, the
        leader of `__transaction_state` partition 0."""
        if self.replicas is None:
            return True
        return self.replicas.leader_epoch(TXN_TOPIC, 0) is not None

    def groups_moved_here(self) -> None:
        """This broker now leads `__consumer_offsets`: the groups are loaded from its replica."""
        if self._background is not None:
            self._background.start_soon(self.groups.reload)

    @property
    def controller_id(self) -> int:
        """The controller's node id as clients are told it: this node when alone, the quorum
        leader (-1 if none) in a cluster. Clients send admin requests to it, so a controller
        that serves no clients (a controller-only node) is not named: this broker is, as it
        forwards them (Kafka names a random live broker)."""
        if self.controller is None:
            return self.node_id
        leader = self.controller.leader_id
        return leader if leader < 0 or self.controller.image.is_listed(leader) else self.node_id

    def request_shutdown(self) -> None:
        self._shutdown.set()

    def topic_changes(self) -> AsyncContextManager[Any]:
        """What the admin APIs hold while they change topics: the admin lock on a single node;
        nothing in a cluster, where the quorum orders changes and a wait for it must not hold
        up the others (this node's logs are changed by `ClusterTopics.reconcile`, under the lock)."""
        return self.admin_lock if self.controller is None else contextlib.nullcontext()

    async def create_topic(self, name: str, partitions: int, configs: dict[str, Any], factor: int = 1) -> TopicView:
        async with self.topic_changes():
            return await self.topics.create(name, partitions, validate_topic_configs(configs), factor)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serves until `request_shutdown()`; `task_status.started(self)` once listening."""
        self._token = trio.lowlevel.current_trio_token()
        await trio.to_thread.run_sync(self.logs.open)
        self.metrics.watch_gc()
        try:
            async with trio.open_nursery() as background:
                background.start_soon(self._every, "log.retention.check.interval.ms", self.logs.apply_retention)
                background.start_soon(self._every, "log.flush.scheduler.interval.ms", self.logs.flush_due)
                background.start_soon(self._report_sync_failures)
                background.start_soon(self._every, "log.cleaner.backoff.ms", self.logs.clean_compacted, self.logs.stop_cleaning)
                background.start_soon(self._every, "log.flush.offset.checkpoint.interval.ms", self.logs.write_checkpoints)
                if self.controller is not None:
                    background.start_soon(self._every, "replica.high.watermark.checkpoint.interval.ms", self.logs.write_high_watermarks)
                await background.start(serve_metrics, self)
                self._background = background
                if not self.is_broker:  # a controller-only node: the quorum, nothing for clients
                    assert self.controller is not None
                    await background.start(self.controller.run)
                    task_status.started(self)
                    await self._shutdown.wait()
                    background.cancel_scope.cancel()
                    return
                await background.start(self.groups.run)
                await background.start(self.transactions.run)
                if self.controller is not None:
                    assert self.replicas is not None
                    await background.start(self.replicas.run)
                    await background.start(self.controller.run)
                    background.start_soon(self.topics.reconcile)
                await self._serve(task_status)
                background.cancel_scope.cancel()
        finally:
            self.metrics.unwatch_gc()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.logs.close)
            log.info("broker stopped; logs flushed and closed")

    async def _start_network_loops(self, loops: int) -> None:
        for index in range(1, loops):
            loop = NetworkLoop(self, index)
            self.network_loops.append(loop)  # stopped with the others even if its start fails
            await loop.start()
        self._next_loop = itertools.cycle([None, *self.network_loops])

    def on_own_loop_soon(self, fn: Any, *args: Any) -> None:
        """Calls `fn(*args)` on the broker's loop: now when already there, else from another
        network loop as soon as the broker's loop gets to it (state such as the controller's
        is touched from that loop only)."""
        if self._token is None or trio.lowlevel.current_trio_token() is self._token:
            fn(*args)
        else:
            self._token.run_sync_soon(fn, *args)

    def next_network_loop(self) -> Optional[NetworkLoop]:
        """Where the next accepted connection is served, in turn: None is this loop (a loop
        whose thread died is skipped)."""
        for _ in range(1 + len(self.network_loops)):
            loop = next(self._next_loop)
            if loop is None or loop.alive:
                return loop
        return None

    async def _stop_network_loops(self) -> None:
        for loop in self.network_loops:
            loop.stop()
        for loop in self.network_loops:
            await loop.join()
        self.network_loops = []

    async def _serve(self, task_status: Any) -> None:
        listeners: list[tuple[trio.SocketListener, Any]] = []
        self.bound = []
        for named in self.config.client_listeners:
            opened = await trio.open_tcp_listeners(named.port, host=named.host)
            listeners += [(l, named) for l in opened]
            self.bound.append(opened[0].socket.getsockname()[:2])
        try:
            await self._start_network_loops(network_threads(self))
            await self._serve_on(listeners, task_status)
        finally:
            with trio.CancelScope(shield=True):
                await self._stop_network_loops()
                for listener, _ in listeners:  # closed already unless the loops failed to start
                    await listener.aclose()

    async def _serve_on(self, listeners: list[tuple[trio.SocketListener, Any]], task_status: Any) -> None:
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                for listener, named in listeners:
                    accepting.start_soon(serve_listener, self, listener, named, connections)
                host, port = self.advertised_address()
                log.info(
                    "listening on %s (%d network loops%s), data in %s, advertised as %s:%d",
                    ", ".join(f"{l.name} ({l.protocol}) {h}:{p}" for l, (h, p) in zip(self.config.client_listeners, self.bound)),
                    1 + len(self.network_loops), "" if gil_enabled() else ", GIL off", self.logs.data_dir, host, port,
                )
                freeze_startup_objects()
                assert self._background is not None
                self._background.start_soon(self._refreeze_when_partitions_change)
                registry = trio.CancelScope()
                connections.start_soon(self._run_schema_registry, registry)
                console = trio.CancelScope()
                connections.start_soon(self._run_console, console)
                sweeping = trio.CancelScope()
                connections.start_soon(close_idle_connections, self, self.connections, sweeping)
                task_status.started(self)
                await self._shutdown.wait()
                registry.cancel()
                console.cancel()
                sweeping.cancel()
                if self.controller is not None:
                    await self.controller.controlled_shutdown(CONTROLLED_SHUTDOWN_SECONDS)
                log.info("shutting down: no new connections; finishing requests in flight")
                accepting.cancel_scope.cancel()
                for loop in self.network_loops:
                    loop.stop()
            for listener, _ in listeners:
                await listener.aclose()
            for connection in list(self.connections):
                connection.stop_reading()
            connections.cancel_scope.deadline = trio.current_time() + SHUTDOWN_GRACE_SECONDS

    async def _run_console(self, scope: trio.CancelScope) -> None:
        """The web console on listeners of its own (`console.listeners`); without them it is
        served beside /metrics (`metrics.serve_metrics`)."""
        addresses = http_listener_addresses(self.config["console.listeners"], "console.listeners")
        if not addresses or not self.config["console.enable"]:
            return
        from fastlog import console
        from fastlog.http_serving import bind, urls_of

        try:
            sockets = bind(addresses)
        except OSError as e:
            log.error("console not started: cannot listen on %s: %s", self.config["console.listeners"], e)
            return
        settings = console.broker_settings(self)
        log.info("console at %s%s", ", ".join(u + "/" for u in urls_of(sockets)), " (read-only)" if settings.read_only else "")
        with scope:
            await console.serve(console.Console(settings), sockets)

    async def _run_schema_registry(self, scope: trio.CancelScope) -> None:
        """The schema registry (`schema.registry.listeners`), a client of this broker's own
        listener like any other. A port already taken leaves the broker serving without it."""
        addresses = http_listener_addresses(self.config["schema.registry.listeners"])
        if not addresses:
            return
        from fastlog import schema_registry
        from fastlog.http_serving import urls_of

        security = self.registry_security
        reachable = [bound for l, bound in zip(self.config.client_listeners, self.bound) if l.protocol == security.protocol]
        if not reachable:
            log.error("schema registry not started: it reaches the broker through a %s listener (schema.registry.kafkastore.security.protocol), "
                      "and there is none", security.protocol)
            return
        host, port = reachable[0]
        bootstrap = f"{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        try:
            sockets = schema_registry.bind(addresses)
        except OSError as e:
            log.error("schema registry not started: cannot listen on %s: %s", self.config["schema.registry.listeners"], e)
            return
        self.schema_registry_url = urls_of(sockets)[0].replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:")
        self.schema_registry = schema_registry.new_registry(
            bootstrap, self.config["schema.registry.topic"], self.config["schema.registry.topic.replication.factor"],
            brokers_wait=BROKERS_WAIT_SECONDS if self.controller is not None else 0.0, security=security,
        )
        with scope:
            await schema_registry.serve(self.schema_registry, sockets)

    async def _every(self, interval_key: str, work: Any, stop: Optional[Callable[[], None]] = None) -> None:
        """Runs `work` on a worker thread every `interval_key` ms. A thread cannot be cancelled:
        a cancellation (the broker stops) waits for the run under way, after calling `stop`,
        when given, to cut it short."""
        interval = self.config[interval_key] / 1000
        while True:
            await trio.sleep(interval)
            try:
                if stop is None:
                    await trio.to_thread.run_sync(work)
                else:
                    await run_sync_stopped_on_cancel(work, stop)
            except Exception:
                log.exception("background %s failed", getattr(work, "__name__", work))

    async def _report_sync_failures(self) -> None:
        """Logs each partition whose sync failed (looked for as often as flush.ms is) and, in a
        cluster, takes its replica offline so that leadership moves, as Kafka takes a log
        directory offline after a failed flush. A produce meets the failure too (its append is
        refused), but one may not come."""
        interval = self.config["log.flush.scheduler.interval.ms"] / 1000
        while True:
            await trio.sleep(interval)
            try:
                failed = await trio.to_thread.run_sync(self.logs.new_sync_failures)
            except Exception:
                log.exception("looking for failed syncs failed")
                continue
            for partition, why in failed:
                partition.sync_failure_reported = True
                log.error("%s: a sync failed; the partition refuses appends until the broker restarts: %s", partition.dir_name, why)
                if self.replicas is not None:
                    try:
                        self.replicas.write_failed(partition.topic, partition.index, why)
                    except Exception:
                        log.exception("%s: reporting the replica offline failed", partition.dir_name)

    async def _refreeze_when_partitions_change(self) -> None:
        """Keeps the objects of open partitions out of the collector's sight, as at start-up,
        when topics are created or deleted while the broker runs."""
        refreezer = Refreezer(self.logs.partition_count())
        while True:
            await trio.sleep(REFREEZE_CHECK_SECONDS)
            try:
                refreezer.check(self.logs.partition_count())
            except Exception:
                log.exception("freezing long-lived objects again failed")


class Refreezer:
    """Freezes the long-lived objects again when the open partitions have moved far enough
    since the last freeze.

    Without it, every full collection walks the objects of each partition opened since
    start-up: 5-25 ms per collection at 10,000 partitions, a pause for every loop
    (bench/README.md). A refreeze collects once before it freezes, and that collection walks
    only what is not frozen yet, the objects allocated since the last freeze: its pause is in
    proportion to the change (3-4 ms for 1,000 more partitions at 10,000; 14-24 ms with a full
    walk). A deleted topic's partitions leave no cyclic garbage: reference counting frees their
    objects, frozen or not (tests/broker/test_gc_freeze.py), so deletions need no full walk
    either. Other objects can die in a cycle while frozen (a connection open at a refreeze and
    closed since): once the objects frozen have doubled since the last full walk (or since the
    fewest frozen after one, when topics were deleted), the refreeze unfreezes first and
    collects everything. The trigger is the net count: topics created and
    deleted in equal numbers leave their objects unfrozen, as before this existed."""

    def __init__(self, partitions: int) -> None:
        self.frozen_at = partitions  # open partitions as of the last freeze
        self.frozen_after_full_walk = gc.get_freeze_count()

    def check(self, partitions: int) -> bool:
        """Refreezes if the count has moved far enough; says whether it did."""
        moved = abs(partitions - self.frozen_at)
        if moved < max(REFREEZE_MIN_PARTITIONS, self.frozen_at * REFREEZE_SHARE):
            return False
        started = time.perf_counter()
        frozen = gc.get_freeze_count()  # a walk of the frozen list: read once a refreeze
        full_walk = frozen >= 2 * self.frozen_after_full_walk
        if full_walk:
            gc.unfreeze()
        gc.collect()
        gc.freeze()
        if full_walk:
            self.frozen_after_full_walk = gc.get_freeze_count()
        else:  # the fewest frozen at a refreeze since the last full walk: deletions lower it
            self.frozen_after_full_walk = min(self.frozen_after_full_walk, frozen)
        log.info("%d partitions open (%d at the last freeze): long-lived objects frozen again in %.1f ms%s",
                 partitions, self.frozen_at, (time.perf_counter() - started) * 1000,
                 " (a full walk)" if full_walk else "")
        self.frozen_at = partitions
        return True


async def run_sync_stopped_on_cancel(work: Callable[[], Any], stop: Callable[[], None]) -> Any:
    """`trio.to_thread.run_sync(work)`, with `stop()` called on this loop as soon as the caller is
    cancelled (then the run is still waited for; `stop` is what makes that wait short)."""
    finished = False

    async def stop_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        finally:
            if not finished:
                stop()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_when_cancelled)
        # Captured, so that an exception of `work` ends the run like a result (no `stop`).
        result = await trio.to_thread.run_sync(outcome.capture, work)
        finished = True
        nursery.cancel_scope.cancel()
    return result.unwrap()


def freeze_startup_objects() -> None:
    """Moves what start-up allocated (modules, codecs, the opened logs' objects) out of the
    garbage collector's sight: a full collection otherwise walks all of it, a pause of over
    10 ms in the middle of serving requests (bench/perf.py --only latency counts them)."""
    gc.collect()
    gc.freeze()


async def run_until_signalled(broker: Broker, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Runs the broker until SIGTERM or SIGINT, then stops it gracefully."""
    import signal

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.run)
            task_status.started(broker)

            watching = trio.CancelScope()

            async def watch() -> None:
                with watching:
                    async for signum in signals:
                        log.info("received %s", signal.Signals(signum).name)
                        broker.request_shutdown()
                        return

            nursery.start_soon(watch)
            await broker._shutdown.wait()
            watching.cancel()  # a shutdown asked in the process (`request_shutdown`) ends the wait for a signal too
