"""bench/loadgen.rs, the steady Produce generator of bench/perf.py's latency rows, against a
real broker: what it reports is what the broker stored, and bad input stops it with a message."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def loadgen() -> Path:
    """The debug build (scripts/test's `cargo test` has built it already; then this is a no-op)."""
    subprocess.run(["cargo", "build", "--quiet", "--no-default-features", "--example", "loadgen"], cwd=REPO, check=True, timeout=600)
    return REPO / "target" / "debug" / "examples" / "loadgen"


def run(loadgen: Path, *args: str) -> tuple[int, dict, str]:
    done = subprocess.run([str(loadgen), *args], capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr


def create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the topic is made
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def stored(bootstrap: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "loadgen-check"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    finally:
        consumer.close()


@pytest.mark.parametrize("version", ["7", "11"])  # classic and flexible Produce
def test_every_record_reported_acked_is_in_the_log_spread_over_the_partitions(broker, unique_topic, loadgen, version) -> None:
    create(broker.bootstrap, unique_topic, 3)
    rc, report, err = run(loadgen, "--bootstrap", broker.bootstrap, "--topic", unique_topic, "--partitions", "3",
                          "--rate", "2000", "--seconds", "1", "--size", "50", "--version", version)
    assert rc == 0, err
    assert (report["sent"], report["acked"], report["refused"], report["error"]) == (2000, 2000, 0, None)
    assert 3 <= report["requests"] <= 2000
    assert 0 < report["p50_ms"] <= report["p99_ms"] <= report["p999_ms"] <= report["max_ms"]
    assert 0.9 < report["seconds"] < 30
    assert 0 <= report["send_lag_p99_ms"] < 1000
    ends = stored(broker.bootstrap, unique_topic, 3)
    assert sum(ends) == 2000 and min(ends) > 0, ends


def test_a_generator_that_falls_behind_keeps_its_catch_up_requests_under_the_size_limit(broker, unique_topic, loadgen) -> None:
    """At 2,000,000 records/s of 1 KB with one request in flight, thousands of records fall due
    while a response is awaited; each request takes at most 900 KB of them, so the broker
    (message.max.bytes 1 MB) refuses none."""
    create(broker.bootstrap, unique_topic, 2)
    rc, report, err = run(loadgen, "--bootstrap", broker.bootstrap, "--topic", unique_topic, "--partitions", "2",
                          "--rate", "2000000", "--seconds", "0.02", "--size", "1000", "--in-flight", "1")
    assert rc == 0, (report, err)
    assert (report["acked"], report["refused"]) == (40_000, 0)
    assert report["requests"] >= 40_000 // 870
    assert sum(stored(broker.bootstrap, unique_topic, 2)) == 40_000


def test_records_the_broker_refuses_are_counted_and_fail_the_run(broker, unique_topic, loadgen) -> None:
    rc, report, _ = run(loadgen, "--bootstrap", broker.bootstrap, "--topic", unique_topic, "--rate", "500", "--seconds", "0.2")
    assert rc == 1
    assert (report["acked"], report["refused"]) == (0, 100)
    assert report["error"] == "partition error code 3"  # UNKNOWN_TOPIC_OR_PARTITION
    assert report["p50_ms"] is None and report["p99_ms"] is None, "no latency without an acked record"


def test_no_broker_and_bad_flags_stop_it_with_a_message(loadgen) -> None:
    from tests.conftest import free_port

    address = f"127.0.0.1:{free_port()}"
    rc, report, err = run(loadgen, "--bootstrap", address, "--topic", "t", "--seconds", "0.1")
    assert (rc, report) == (1, {}) and address in err
    for flags, message in [
        (["--topic", "t"], "--bootstrap and --topic are required"),
        (["--bootstrap", address, "--topic", "t", "--rate", "fast"], "--rate fast"),
        (["--bootstrap", address, "--topic", "t", "--rate", "0"], "must be positive"),
        (["--bootstrap", address, "--topic", "t", "--version", "12"], "--version must be 3 to 11"),
        (["--bootstrap", address, "--topic", "t", "--cpu", "100000"], "--cpu must be below"),
        (["--bootstrap", address, "--topic", "t", "--colour", "red"], "unknown flag --colour"),
        (["--bootstrap"], "--bootstrap needs a value"),
    ]:
        rc, report, err = run(loadgen, *flags)
        assert (rc, report) == (2, {}) and message in err, (flags, err)
