"""`fastlog perf produce|consume`: bounded runs that report throughput and latency."""

from __future__ import annotations

from tests.tools.helpers import fails, ok, ok_json


def test_produce_then_consume(broker, unique_topic) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    ok("topics", "create", "--topic", unique_topic, "--partitions", "2", *b)
    produced = ok_json("perf", "produce", "--topic", unique_topic, "--num-records", "5000", "--record-size", "200", "--batch-size", "250", "--compression", "lz4", *b)
    assert produced["records"] == 5000 and produced["bytes"] == 5000 * 200 and produced["requests"] == 20
    assert produced["records_per_second"] > 0 and produced["mb_per_second"] > 0
    latency = produced["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]

    consumed = ok_json("perf", "consume", "--topic", unique_topic, "--num-records", "5000", "--timeout-ms", "20000", *b)
    assert consumed["records"] == 5000 and consumed["bytes"] == 5000 * 200 and consumed["requests"] >= 1

    line = ok("perf", "produce", "--topic", unique_topic, "--num-records", "100", *b)
    assert "100 records produced" in line and "records/s" in line and "MB/s" in line and "p99" in line


def test_consume_stops_at_its_timeout(broker, unique_topic) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    ok("topics", "create", "--topic", unique_topic, *b)
    assert ok_json("perf", "consume", "--topic", unique_topic, "--num-records", "10", "--timeout-ms", "300", *b)["records"] == 0


def test_failures(broker, unique_topic) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    assert "UNKNOWN_TOPIC_OR_PARTITION" in fails("perf", "produce", "--topic", unique_topic, "--num-records", "10", *b)
    assert "is not positive" in fails("perf", "produce", "--topic", unique_topic, "--num-records", "0", *b, code=2)
