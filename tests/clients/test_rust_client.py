"""rskafka, an independent pure-Rust Kafka client, against a real broker: runs the check binary
built by `bash scripts/clients/rust.sh` (tests/clients/rust) and asserts that every check passed
and that only the checks rskafka cannot run (no consumer groups, no config APIs) were skipped."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BrokerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
CRATE_DIR = REPO_ROOT / "tests" / "clients" / "rust"
BUILD_COMMAND = "bash scripts/clients/rust.sh"
BINARY_NAME = "fastlog-rskafka-check"

# Seconds one check may take inside the binary, and the whole run (16 checks) here.
CHECK_TIMEOUT_S = 15
RUN_TIMEOUT_S = 250

EXPECTED_CHECKS = {
    "list_topics",
    "auto_create_topic",
    "multi_partition",
    *(f"produce_consume_{codec}" for codec in ("none", "gzip", "lz4", "snappy", "zstd")),
    "batch_producer_stream_consumer",
    "fetch_limits",
    "produce_too_large",
    "consumer_group",
    "offsets_by_time",
    "admin_create_delete_topic",
    "admin_create_topic_errors",
    "admin_delete_records",
    "admin_configs",
}
# rskafka has no consumer-group API and no DescribeConfigs / AlterConfigs.
EXPECTED_SKIPS = {"consumer_group", "admin_configs"}


def locked_version(crate: str) -> str:
    """The version of `crate` that the client crate's Cargo.lock pins."""
    lock_text = (CRATE_DIR / "Cargo.lock").read_text()
    match = re.search(rf'name = "{re.escape(crate)}"\nversion = "([^"]+)"', lock_text)
    assert match, f"{crate} is not in {CRATE_DIR / 'Cargo.lock'}"
    return match.group(1)


def check_binary() -> Path:
    """The built binary; fails (never skips) when it is missing or older than its sources."""
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    binary = target_dir / "release" / BINARY_NAME
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `{BUILD_COMMAND}` first")
    sources = [CRATE_DIR / "Cargo.toml", CRATE_DIR / "Cargo.lock", *CRATE_DIR.glob("src/*.rs")]
    newest_source = max(sources, key=lambda path: path.stat().st_mtime)
    if newest_source.stat().st_mtime > binary.stat().st_mtime:
        pytest.fail(f"{binary} is older than {newest_source}: run `{BUILD_COMMAND}` again")
    return binary


def run_checks(binary: Path, bootstrap: str) -> tuple[list[dict], str, str]:
    """Runs the binary; returns its parsed JSON lines, its stderr and how it ended."""
    args = [str(binary), "--bootstrap", bootstrap, "--check-timeout-secs", str(CHECK_TIMEOUT_S)]
    try:
        completed = subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        stdout, stderr, ending = completed.stdout, completed.stderr, f"exit code {completed.returncode}"
    except subprocess.TimeoutExpired as expired:
        stdout, stderr = as_text(expired.stdout), as_text(expired.stderr)
        ending = f"killed after {RUN_TIMEOUT_S}s"
    results = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return results, stderr, ending


def as_text(output: str | bytes | None) -> str:
    """What a killed subprocess had written (bytes on some Python versions even with text=True)."""
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def failure_report(results: list[dict], stderr: str, ending: str, broker: BrokerProcess) -> str:
    failed = [r for r in results if not r["ok"]]
    lines = [f"rskafka check binary: {ending}"]
    lines += [f"FAILED {r['check']}: {r['detail']}" for r in failed]
    lines += ["--- binary stderr ---", stderr[-4000:], f"--- broker log ({broker.log_path}), last 40 lines ---"]
    lines += broker.log_text().splitlines()[-40:]
    return "\n".join(lines)


@pytest.mark.parametrize("client", [f"rskafka-{locked_version('rskafka')}"])
def test_rust_client_checks(client: str, broker: BrokerProcess) -> None:
    binary = check_binary()
    results, stderr, ending = run_checks(binary, broker.bootstrap)
    report = failure_report(results, stderr, ending, broker)

    assert all(r["ok"] for r in results), report
    ran = {r["check"] for r in results}
    assert ran == EXPECTED_CHECKS, f"checks missing: {EXPECTED_CHECKS - ran}, unexpected: {ran - EXPECTED_CHECKS}\n{report}"
    skipped = {r["check"] for r in results if r["skipped"]}
    assert skipped == EXPECTED_SKIPS, f"{client} skipped {sorted(skipped)}, expected {sorted(EXPECTED_SKIPS)}"
    assert ending == "exit code 0", report
