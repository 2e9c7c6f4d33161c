"""The `fastlog` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from fastlog import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastlog", description="A Kafka-compatible streaming broker.")
    parser.add_argument("--version", action="version", version=f"fastlog {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run a broker",
        description="Run a broker. With no arguments: 127.0.0.1:9092, data in ./fastlog-data.",
    )
    serve.add_argument("--config", metavar="FILE", help="a server.properties file (Kafka's key names)")
    serve.add_argument(
        "--override",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="set a config key, e.g. --override listeners=PLAINTEXT://127.0.0.1:19092 (repeatable)",
    )
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    from fastlog import tools

    tools.register(commands)
    return parser


def serve(args: argparse.Namespace) -> int:
    import trio

    from fastlog.broker import Broker, run_until_signalled
    from fastlog.config import BrokerConfig, ConfigError
    from fastlog.metadata_observer import ClusterMismatch

    from fastlog import logs

    logs.configure(args.log_level)
    try:
        config = BrokerConfig.load(args.config, args.override)
    except ConfigError as e:
        print(f"fastlog: configuration error: {e}", file=sys.stderr)
        return 2
    if config["log.format"] != "text":
        logs.configure(args.log_level, config["log.format"])
    try:
        broker = Broker(config)  # reads certificates, JAAS files, SCRAM credentials
    except ConfigError as e:
        print(f"fastlog: configuration error: {e}", file=sys.stderr)
        return 2
    try:
        trio.run(run_until_signalled, broker)
    except (OSError, ClusterMismatch) as e:
        print(f"fastlog: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if hasattr(args, "func"):
        return args.func(args)
    parser.print_help()
    return 0
