"""Runs a mirror's flows: for each, a round of copying, then its checkpoints and heartbeats
when due, in turn, until stopped; a cluster that goes away is retried (the flow goes on from
its recorded progress when it is back). Metrics, when asked for, on a Prometheus endpoint."""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from fastlog.client import ClientError
from fastlog.mirror.checkpoints import GroupsAndHeartbeats
from fastlog.mirror.config import MirrorConfig
from fastlog.mirror.replicator import Replicator

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0
LAG_SECONDS = 5.0  # how often the source's end offsets are asked for the lag metric


class Flow:
    def __init__(self, config: MirrorConfig, flow, worker_id: Optional[str] = None) -> None:
        self.replicator = Replicator(config, flow, worker_id=worker_id)
        self.groups = GroupsAndHeartbeats(self.replicator)
        self.lag: dict[tuple[str, int], int] = {}
        self._lag_at = float("-inf")

    def run_once(self) -> None:
        self.replicator.run_once()
        self.groups.run_once()
        if time.monotonic() - self._lag_at >= LAG_SECONDS and self.replicator.positions:
            self._lag_at = time.monotonic()
            self.lag = self.replicator.lag()


def run(config: MirrorConfig, stop: Optional[threading.Event] = None, report_seconds: float = 30.0, metrics_port: Optional[int] = None,
        worker_id: Optional[str] = None) -> None:
    flows = [Flow(config, flow, worker_id) for flow in config.flows]
    if metrics_port is not None:
        serve_metrics(flows, metrics_port)
    reported = time.monotonic()
    try:
        while stop is None or not stop.is_set():
            for flow in flows:
                replicator = flow.replicator
                try:
                    flow.run_once()
                except Exception as e:  # a cluster away, a refusal, or a bug: logged and retried, the mirror goes on
                    if isinstance(e, (ClientError, OSError)):
                        log.warning("%s: %s; retrying", replicator.flow.name, e)
                    else:
                        log.exception("%s: the round failed; retrying", replicator.flow.name)
                    replicator.source.close()
                    replicator.target.close()
                    replicator._refreshed_at = float("-inf")  # leaders and topics read again
                    time.sleep(RETRY_SECONDS)
            if time.monotonic() - reported >= report_seconds:
                reported = time.monotonic()
                for flow in flows:
                    r = flow.replicator
                    log.info("%s: %d records (%d bytes) copied, %d topics, lag %d records, %d checkpoints", r.flow.name, r.totals.records,
                             r.totals.bytes, len(r.topics), sum(flow.lag.values()), flow.groups.checkpoints_written)
    finally:
        for flow in flows:
            flow.replicator.close()


def serve_metrics(flows: list[Flow], port: int) -> None:
    """fastlog_mirror_* at http://0.0.0.0:<port>/metrics, read from the flows at scrape time."""
    from prometheus_client import start_http_server
    from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily

    class Collector:
        def collect(self):
            records = CounterMetricFamily("fastlog_mirror_records", "Records copied", labels=["flow"])
            size = CounterMetricFamily("fastlog_mirror_bytes", "Key and value bytes copied", labels=["flow"])
            lag = GaugeMetricFamily("fastlog_mirror_lag_records", "Records at the source not copied yet", labels=["flow", "topic", "partition"])
            latency = GaugeMetricFamily("fastlog_mirror_replication_latency_seconds",
                                        "From the last copied record's timestamp to its copy", labels=["flow", "topic", "partition"])
            checkpoints = CounterMetricFamily("fastlog_mirror_checkpoints", "Checkpoints written", labels=["flow"])
            for flow in flows:
                r, name = flow.replicator, flow.replicator.flow.name
                records.add_metric([name], r.totals.records)
                size.add_metric([name], r.totals.bytes)
                checkpoints.add_metric([name], flow.groups.checkpoints_written)
                for (topic, partition), value in sorted(flow.lag.items()):
                    lag.add_metric([name, topic, str(partition)], value)
                for (topic, partition), value in sorted(r.latency.items()):
                    latency.add_metric([name, topic, str(partition)], value)
            yield from (records, size, lag, latency, checkpoints)

    REGISTRY.register(Collector())
    start_http_server(port)
    log.info("mirror metrics at http://0.0.0.0:%d/metrics", port)
