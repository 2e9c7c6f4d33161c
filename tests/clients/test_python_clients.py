"""Python Kafka clients, each at an old and the newest version, against one real fastlog broker:
confluent-kafka 1.9.2 (built against the librdkafka 1.9.2 its wheel bundles), 2.3.0 and the
newest; kafka-python 2.0.2 and the newest; aiokafka 0.8.1 and the newest.

The old versions live in virtualenvs under .cache/clients/python, made by
`bash scripts/clients/python.sh`; the newest are pyproject's [test] extra, in this interpreter.
Each version runs its scenario script (tests/clients/python/*_scenario.py: list topics, produce
and consume per codec, a group's commit and resume, offsets by time, topic admin) in its own
interpreter; every check must pass, and only the checks that version has no API for may be
skipped. The batches each codec check stored must carry that codec. A failure shows the
scenario's output and the broker's warnings during the run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional

import pytest

from fastlog.records import Compression, decode_batches
from tests.conftest import BrokerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = REPO_ROOT / "tests" / "clients" / "python"
VENVS = REPO_ROOT / ".cache" / "clients" / "python"
SETUP_COMMAND = "bash scripts/clients/python.sh"
SCENARIO_TIMEOUT_S = 150
CHECK_TIMEOUT_S = 30
CODECS = {"none": Compression.NONE, "gzip": Compression.GZIP, "snappy": Compression.SNAPPY,
          "lz4": Compression.LZ4, "zstd": Compression.ZSTD}
REQUIRED_CHECKS = {
    "client_version",
    "list_topics.admin",
    "list_topics.consumer",
    *(f"produce_consume.{codec}" for codec in CODECS),
    "group_commit_resume",
    "offsets_for_times",
    "admin.create_topic",
    "admin.describe_configs",
    "admin.describe_topics",
    "admin.alter_configs",
    "admin.incremental_alter_configs",
    "admin.create_partitions",
    "admin.delete_topic",
}
CODEC_TOPIC = re.compile(r"^pyclients-codec-(\w+)-[0-9a-f]{10}-0$")
NOTEWORTHY_LOG_LINE = re.compile(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b|refus|closed connection|trailing")
METRICS_URL = re.compile(r"metrics at (http://127\.0\.0\.1:\d+/metrics)")
# Broker metrics whose growth during a run tells what the broker refused or tolerated: error
# codes it answered per API, connections closed (and why), requests with bytes past their end.
TELLING_METRICS = re.compile(
    r"^(fastlog_errors_total|fastlog_connections_closed_total|fastlog_requests_with_trailing_bytes_total)"
    r"\{(.*)\} ([0-9.e+]+)$"
)


def newest(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not-installed"


@dataclass(frozen=True)
class PythonClient:
    package: str
    version: str
    scenario: str
    venv: Optional[str] = None  # None: the newest, in this interpreter
    librdkafka: Optional[str] = None  # the librdkafka version confluent-kafka must load
    expected_skips: frozenset[str] = frozenset()  # checks this version has no API for

    @property
    def test_id(self) -> str:
        return f"{self.package}-{self.version}" + ("" if self.venv else "-newest")

    def interpreter(self) -> Path:
        if self.venv is None:
            if self.version == "not-installed":
                pytest.fail(f"{self.package} is not installed here: pip install -e '.[test]'")
            return Path(sys.executable)
        python = VENVS / self.venv / "bin" / "python"
        if not python.exists():
            pytest.fail(f"no virtualenv for {self.test_id} at {python}: run `{SETUP_COMMAND}` first")
        return python


CLIENTS = [
    PythonClient("confluent-kafka", "1.9.2", "confluent_scenario.py", "confluent-kafka-1.9.2", librdkafka="1.9.2",
                 expected_skips=frozenset({"offsets_for_times.admin_list_offsets", "admin.describe_topics",
                                           "admin.incremental_alter_configs"})),
    PythonClient("confluent-kafka", "2.3.0", "confluent_scenario.py", "confluent-kafka-2.3.0", librdkafka="2.3.0"),
    PythonClient("confluent-kafka", newest("confluent-kafka"), "confluent_scenario.py"),
    PythonClient("kafka-python", "2.0.2", "kafka_python_scenario.py", "kafka-python-2.0.2",
                 expected_skips=frozenset({"admin.incremental_alter_configs"})),
    PythonClient("kafka-python", newest("kafka-python"), "kafka_python_scenario.py"),
    PythonClient("aiokafka", "0.8.1", "aiokafka_scenario.py", "aiokafka-0.8.1",
                 expected_skips=frozenset({"admin.incremental_alter_configs"})),
    PythonClient("aiokafka", newest("aiokafka"), "aiokafka_scenario.py",
                 expected_skips=frozenset({"admin.incremental_alter_configs"})),
]


@dataclass
class ScenarioRun:
    returncode: Optional[int]  # None: killed at the timeout
    stdout: str
    stderr: str
    broker_log: str  # what the broker logged during the run
    broker_counts: Counter = field(default_factory=Counter)  # TELLING_METRICS' growth during the run

    def checks(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def explain(self, problem: str) -> str:
        noteworthy = [line for line in self.broker_log.splitlines() if NOTEWORTHY_LOG_LINE.search(line)]
        return "\n".join([
            problem,
            f"exit code: {'killed after %ss' % SCENARIO_TIMEOUT_S if self.returncode is None else self.returncode}",
            "scenario output:", self.stdout.strip() or "(none)",
            "scenario stderr (last 30 lines):", *self.stderr.strip().splitlines()[-30:],
            "broker warnings during the run (last 40):", *(noteworthy[-40:] or ["(none)"]),
            "broker counters that grew during the run (errors answered, connections dropped, trailing bytes):",
            *([f"  {name} +{count:g}" for name, count in sorted(self.broker_counts.items())] or ["(none)"]),
        ])


def run_scenario(client: PythonClient, broker: BrokerProcess) -> ScenarioRun:
    command = [str(client.interpreter()), str(SCENARIOS / client.scenario), "--bootstrap", broker.bootstrap,
               "--expect-version", client.version, "--check-timeout", str(CHECK_TIMEOUT_S)]
    if client.librdkafka:
        command += ["--expect-librdkafka", client.librdkafka]
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    log_start = broker.log_path.stat().st_size
    counts_before = telling_metrics(broker)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_S, env=env,
                              stdin=subprocess.DEVNULL)
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        returncode, stdout, stderr = None, as_text(expired.stdout), as_text(expired.stderr)
    with open(broker.log_path, errors="replace") as log:
        log.seek(log_start)
        broker_log = log.read()
    counts = telling_metrics(broker)
    counts.subtract(counts_before)
    return ScenarioRun(returncode, stdout, stderr, broker_log, +counts)


def telling_metrics(broker: BrokerProcess) -> Counter:
    """TELLING_METRICS from the broker's metrics endpoint (empty if it cannot be read)."""
    found = METRICS_URL.search(broker.log_text())
    if not found:
        return Counter()
    try:
        with urllib.request.urlopen(found.group(1), timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return Counter()
    counts: Counter = Counter()
    for line in text.splitlines():
        match = TELLING_METRICS.match(line)
        if match and 'reason="client_closed"' not in line:
            counts[f"{match.group(1)}{{{match.group(2)}}}"] = float(match.group(3))
    return counts


def as_text(output: Optional[bytes | str]) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def topic_dirs(broker: BrokerProcess) -> set[str]:
    return {path.name for path in broker.data_dir.iterdir()} if broker.data_dir.exists() else set()


def stored_codecs(broker: BrokerProcess, partition_dir: str) -> set[Compression]:
    batches = []
    for segment in sorted((broker.data_dir / partition_dir).glob("*.log")):
        batches += decode_batches(segment.read_bytes())
    return {batch.compression for batch in batches}


def assert_codecs_stored(broker: BrokerProcess, new_dirs: set[str], run: ScenarioRun) -> None:
    """Each produce_consume.<codec> topic holds batches of that codec (and, where a client found
    compressing a batch not worth it, uncompressed ones), so the client really compressed."""
    seen = {}
    for name in new_dirs:
        match = CODEC_TOPIC.match(name)
        if match:
            seen[match.group(1)] = stored_codecs(broker, name)
    for codec, compression in CODECS.items():
        stored = seen.get(codec)
        assert stored is not None, run.explain(f"no topic of the produce_consume.{codec} check on disk")
        assert compression in stored and stored <= {compression, Compression.NONE}, run.explain(
            f"produce_consume.{codec} stored batches compressed with {sorted(c.name for c in stored)}")


@pytest.mark.parametrize("client", [pytest.param(c, id=c.test_id) for c in CLIENTS])
def test_python_client(broker: BrokerProcess, client: PythonClient) -> None:
    before = topic_dirs(broker)
    run = run_scenario(client, broker)
    checks = run.checks()
    failed = [f"{c['check']}: {c['detail']}" for c in checks if not c["ok"]]
    assert not failed, run.explain(f"{client.test_id}: {len(failed)} checks failed:\n  " + "\n  ".join(failed))
    missing = REQUIRED_CHECKS - {c["check"] for c in checks}
    assert not missing, run.explain(f"{client.test_id}: checks never reported: {sorted(missing)}")
    assert run.returncode == 0, run.explain(f"{client.test_id}: the scenario did not exit cleanly")
    skipped = {c["check"] for c in checks if "skipped" in c}
    assert skipped == client.expected_skips, run.explain(
        f"{client.test_id}: skipped {sorted(skipped)}, expected to skip only {sorted(client.expected_skips)}")
    assert_codecs_stored(broker, topic_dirs(broker) - before, run)
