"""Operator commands: `fastlog topics|produce|consume|groups|perf|cluster|schemas|users|acls|mirror`, one module per group.

Every command talks to a broker over the Kafka protocol (`fastlog.client`), so it works with
any Kafka-compatible broker. Shared conventions, as in Kafka's own tools:
`--bootstrap-server HOST:PORT` (default 127.0.0.1:9092), a readable table by default and JSON
with `--json`, exit code 0 on success, 1 on failure with a one-line reason on stderr, 2 for
bad arguments (argparse).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Iterable, Optional, Sequence, TextIO

from fastlog.client import DEFAULT_BOOTSTRAP, Client, ClientError, parse_bootstrap
from fastlog.config import ConfigError
from fastlog.security.client_side import ClientSecurity

Handler = Callable[[argparse.Namespace], int]


class ToolError(Exception):
    """A failure a command reports as one line on stderr (exit code 1)."""


def register(commands: "argparse._SubParsersAction") -> None:
    """Adds every tool's subcommand to the `fastlog` parser."""
    from fastlog.tools import acls, cluster, console, groups, mirror, perf, quotas, schemas, topics, users, web_console

    topics.register(commands)
    schemas.register(commands)
    cluster.register(commands)
    console.register(commands)
    groups.register(commands)
    perf.register(commands)
    users.register(commands)
    acls.register(commands)
    mirror.register(commands)
    web_console.register(commands)
    quotas.register(commands)


def bootstrap_server(text: str) -> str:
    try:
        parse_bootstrap(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def add_common(parser: argparse.ArgumentParser, *, json_output: bool = True) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--bootstrap-server",
        metavar="HOST:PORT",
        type=bootstrap_server,
        default=DEFAULT_BOOTSTRAP,
        help=f"a broker to start from; comma-separate several (default {DEFAULT_BOOTSTRAP})",
    )
    group.add_argument(
        "--request-timeout",
        metavar="SECONDS",
        type=float,
        default=10.0,
        help="timeout of each connect, send and receive (default 10)",
    )
    group.add_argument(
        "--command-config",
        metavar="FILE",
        help="client settings for a secured listener, as Kafka's tools take them (security.protocol, ssl.truststore.location, "
        "sasl.mechanism, sasl.jaas.config, ...)",
    )
    if json_output:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def connect(args: argparse.Namespace) -> Client:
    config = getattr(args, "command_config", None)
    try:
        security = ClientSecurity.from_file(config) if config else None
    except ConfigError as e:
        raise ToolError(str(e)) from None
    return Client(args.bootstrap_server, timeout=args.request_timeout, security=security)


def run_tool(name: str, handler: Handler, args: argparse.Namespace) -> int:
    """Runs a command; a failure becomes one line on stderr and exit code 1."""
    try:
        return handler(args)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's exit-time flush quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ClientError, ToolError, ValueError, OSError) as e:
        reason = str(e) or type(e).__name__
        print(f"fastlog {name}: error: {reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fastlog {name}: interrupted", file=sys.stderr)
        return 130


def command(subparsers: "argparse._SubParsersAction", name: str, handler: Handler, *, full_name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand whose handler runs under `run_tool`."""
    parser = subparsers.add_parser(name, **kwargs)
    parser.set_defaults(func=lambda args: run_tool(full_name, handler, args))
    return parser


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO = sys.stdout) -> None:
    """Left-aligned columns, two spaces apart, headers in capitals (as Kafka's tools print)."""
    text_rows = [[("-" if cell is None else str(cell)) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    for row in [list(headers), *text_rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip(), file=out)


def print_json(value: Any, out: TextIO = sys.stdout) -> None:
    print(json.dumps(value, indent=2, sort_keys=False, default=str), file=out)


def text(data: Optional[bytes]) -> Optional[str]:
    """Record bytes shown as text (undecodable bytes as \\x escapes)."""
    return None if data is None else data.decode("utf-8", errors="backslashreplace")


def percentiles(samples: Iterable[float], points: Sequence[float] = (50, 95, 99, 99.9)) -> dict[str, float]:
    values = sorted(samples)
    if not values:
        return {f"p{p:g}": 0.0 for p in points}
    out = {}
    for p in points:
        index = min(len(values) - 1, max(0, int(round(p / 100 * len(values) + 0.5)) - 1))
        out[f"p{p:g}"] = values[index]
    return out
