"""The `fastlog` command line."""

from __future__ import annotations

import argparse
from typing import Sequence

from fastlog import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastlog", description="A Kafka-compatible streaming broker."
    )
    parser.add_argument("--version", action="version", version=f"fastlog {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0
