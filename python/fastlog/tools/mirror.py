"""`fastlog mirror --config mirror.properties`: MirrorMaker 2's job with its settings
(`fastlog.mirror.config`). Runs until SIGINT or SIGTERM; a mirror stopped or killed at any
point resumes from the progress it recorded in the target cluster."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from fastlog.config import ConfigError
from fastlog.mirror.config import MirrorConfig
from fastlog.mirror.runner import run
from fastlog.tools import ToolError, command


def register(commands: "argparse._SubParsersAction") -> None:
    mirror = command(commands, "mirror", do_mirror, full_name="mirror", help="copy topics between clusters (MirrorMaker 2)",
                     description="Copy topics between Kafka-protocol clusters with MirrorMaker 2's settings (clusters, A->B.enabled, A->B.topics, ...).")
    mirror.add_argument("--config", required=True, metavar="FILE", help="mirror.properties (MM2's names)")
    mirror.add_argument("--report-seconds", type=float, default=30.0, metavar="SECONDS", help="how often progress is logged (default 30)")
    mirror.add_argument("--worker-id", metavar="ID", help="a name this mirror keeps across restarts (static group membership: "
                        "restarted, it takes its partitions back at once); mirrors sharing a flow need different ones")
    mirror.add_argument("--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics (records, bytes, lag, latency) on this port")


def do_mirror(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        config = MirrorConfig.from_file(args.config)
    except ConfigError as e:
        raise ToolError(str(e)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger(__name__).info("mirroring %s", ", ".join(f.name for f in config.flows))
    run(config, stop, args.report_seconds, args.metrics_port, args.worker_id)
    return 0
