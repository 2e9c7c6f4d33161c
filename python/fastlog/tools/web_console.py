"""`fastlog console`: the web console that a broker serves beside /metrics, served alone against
any Kafka-compatible cluster (`--bootstrap-server`), with an optional schema registry.

With a `--command-config` for a SASL listener that names no user, everyone who opens the
console logs in with their own SASL username and password, and the cluster's ACLs decide
what each may see and do.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Optional

from fastlog.tools import add_common

if TYPE_CHECKING:
    from fastlog.security.client_side import ClientSecurity

DEFAULT_LISTEN = "http://127.0.0.1:8080"


def register(commands: "argparse._SubParsersAction") -> None:
    parser = commands.add_parser(
        "console",
        help="serve the web console against any Kafka-compatible cluster",
        description="Serve the web console (topics, messages, consumer lag, schemas) against a cluster.",
    )
    parser.add_argument("--listeners", default=DEFAULT_LISTEN, help=f"where the console listens: http://HOST:PORT, comma-separated (default {DEFAULT_LISTEN})")
    parser.add_argument("--schema-registry-url", metavar="URL", help="a Confluent-compatible schema registry, for the Schemas page and Avro values")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--read-only", action="store_true", help="show, change nothing (no config edits, test messages or offset resets)")
    mode.add_argument("--read-write", action="store_true", help="allow changes on a non-loopback address too (read-only there by default)")
    parser.add_argument("--sample-interval", type=float, default=5.0, metavar="SECONDS", help="how often rates and lag are sampled for the charts (default 5)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add_common(parser, json_output=False)
    parser.set_defaults(func=run)


def security_of(path: Optional[str]) -> "ClientSecurity":
    """The client settings; a SASL listener without a user means each person logs in."""
    from fastlog.config import read_properties
    from fastlog.security.client_side import ClientSecurity

    if not path:
        return ClientSecurity()
    settings = read_properties(path)
    if settings.get("security.protocol", "").strip().upper().startswith("SASL_") and not (
        settings.get("sasl.jaas.config") or "sasl.username" in settings
    ):
        settings = {**settings, "sasl.username": "", "sasl.password": ""}
    return ClientSecurity.from_settings(settings, path)


def run(args: argparse.Namespace) -> int:
    import signal

    import trio

    from fastlog import console, logs
    from fastlog.config import ConfigError, http_listener_addresses
    from fastlog.http_serving import bind, is_loopback

    logs.configure(args.log_level)
    try:
        addresses = http_listener_addresses(args.listeners, "--listeners")
        security = security_of(args.command_config)
    except (ConfigError, OSError) as e:
        print(f"fastlog console: {e}", file=sys.stderr)
        return 2
    if not addresses:
        print("fastlog console: --listeners names no address", file=sys.stderr)
        return 2
    if not 0.5 <= args.sample_interval <= 60:
        print("fastlog console: --sample-interval must be between 0.5 and 60 seconds", file=sys.stderr)
        return 2
    try:
        sockets = bind(addresses)
    except OSError as e:
        print(f"fastlog console: cannot listen on {args.listeners}: {e}", file=sys.stderr)
        return 1
    loopback = all(is_loopback(host) for host, _ in addresses)
    read_only = args.read_only or (not loopback and not args.read_write)
    settings = console.ConsoleSettings(
        bootstrap=args.bootstrap_server, security=security, read_only=read_only, loopback_only=loopback,
        registry_url=args.schema_registry_url, sample_seconds=args.sample_interval, request_timeout=args.request_timeout,
    )

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                urls = await nursery.start(console.serve, console.Console(settings), sockets)
                console.log.info("console at %s against %s%s", ", ".join(u + "/" for u in urls), args.bootstrap_server,
                                 " (read-only)" if read_only else "")
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)
    return 0
