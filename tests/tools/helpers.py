"""Running `fastlog` subcommands as a user would: a subprocess, its output and exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Optional

from tests.conftest import free_port

CLI_TIMEOUT = 60


def fastlog(*args: str, input: Optional[str] = None, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fastlog", *args], input=input, capture_output=True, text=True, timeout=timeout
    )


def ok(*args: str, input: Optional[str] = None) -> str:
    """Runs a command that must succeed; returns its stdout."""
    result = fastlog(*args, input=input)
    assert result.returncode == 0, f"fastlog {' '.join(args)} exited {result.returncode}: {result.stderr}"
    return result.stdout


def ok_json(*args: str, input: Optional[str] = None) -> Any:
    return json.loads(ok(*args, "--json", input=input))


def fails(*args: str, input: Optional[str] = None, code: int = 1) -> str:
    """Runs a command that must fail with `code` and one line on stderr; returns that line."""
    result = fastlog(*args, input=input)
    assert result.returncode == code, f"expected exit {code}, got {result.returncode}: {result.stdout} {result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert lines, "no reason on stderr"
    if code == 1:
        assert len(lines) == 1, result.stderr
    return lines[-1]


def unreachable() -> str:
    """A bootstrap address nothing listens on."""
    return f"127.0.0.1:{free_port()}"
