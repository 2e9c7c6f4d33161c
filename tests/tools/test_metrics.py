"""The Prometheus endpoint: scraped over HTTP before and after real client traffic."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from tests.conftest import BrokerProcess, free_port
from tests.tools.helpers import ok

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def scrape(url: str) -> dict[str, float]:
    """{'name{label="v",...}': value} of every sample."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, line
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def value(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sample of `name` whose labels include `labels` (0 when there is none)."""
    for key, v in samples.items():
        metric, _, rest = key.partition("{")
        if metric == name and all(f'{k}="{val}"' in rest for k, val in labels.items()):
            return v
    return 0.0


def test_counters_move_with_real_traffic(broker, unique_topic) -> None:
    before = scrape(broker.metrics_url)
    assert value(before, "fastlog_broker_info", node_id="0") == 1
    ok("topics", "create", "--topic", unique_topic, "--partitions", "2", "--bootstrap-server", broker.bootstrap)

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(200):
        producer.produce(unique_topic, key=f"k{i}".encode(), value=b"x" * 100)
    assert producer.flush(30) == 0

    group = f"g-{unique_topic}"
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([unique_topic])
    received = 0
    deadline = time.monotonic() + 30
    while received < 150 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            received += 1
    consumer.commit(asynchronous=False)
    consumer.close()
    assert received >= 150

    after = scrape(broker.metrics_url)
    assert value(after, "fastlog_messages_in_total", topic=unique_topic) == 200
    assert value(after, "fastlog_bytes_in_total") >= value(before, "fastlog_bytes_in_total") + 200 * 100
    assert value(after, "fastlog_bytes_out_total") > value(before, "fastlog_bytes_out_total")
    for api in ("Produce", "Fetch", "Metadata", "ApiVersions", "JoinGroup", "OffsetCommit"):
        assert value(after, "fastlog_requests_total", api=api) > value(before, "fastlog_requests_total", api=api), api
        assert value(after, "fastlog_request_duration_seconds_count", api=api) == value(after, "fastlog_requests_total", api=api)
    assert value(after, "fastlog_request_duration_seconds_bucket", api="Produce", le="+Inf") > 0
    # The broker's own time (frame read to response written) covers every answered request and
    # is at least the handling time; the answers to a request sent within the broker's time.
    for api in ("Produce", "Fetch", "Metadata"):
        answered = value(after, "fastlog_request_total_seconds_count", api=api) - value(before, "fastlog_request_total_seconds_count", api=api)
        handled = value(after, "fastlog_requests_total", api=api) - value(before, "fastlog_requests_total", api=api)
        assert 0 < answered <= handled, api
    assert value(after, "fastlog_request_total_seconds_sum", api="Produce") >= value(after, "fastlog_request_duration_seconds_sum", api="Produce") * 0.5
    assert any(key.startswith("fastlog_gc_pause_seconds_count") for key in after), "collections are timed"
    assert value(after, "fastlog_connections_opened_total") > value(before, "fastlog_connections_opened_total")
    assert value(after, "fastlog_connections_closed_total", reason="client_closed") > 0
    ends = [value(after, "fastlog_partition_log_end_offset", topic=unique_topic, partition=str(p)) for p in (0, 1)]
    assert sum(ends) == 200
    assert sum(value(after, "fastlog_partition_high_watermark", topic=unique_topic, partition=str(p)) for p in (0, 1)) == 200
    assert value(after, "fastlog_partition_log_size_bytes", topic=unique_topic, partition="0") > 0
    assert value(after, "fastlog_partitions") >= 2 and value(after, "fastlog_topics") >= 1
    assert "fastlog_log_cleaner_records_removed_total" in after and "fastlog_log_cleaner_enabled" in after
    committed = sum(value(after, "fastlog_consumer_group_committed_offset", group=group, topic=unique_topic, partition=str(p)) for p in (0, 1))
    lag = sum(value(after, "fastlog_consumer_group_lag", group=group, topic=unique_topic, partition=str(p)) for p in (0, 1))
    assert committed == received and lag == 200 - received


def test_errors_are_counted_by_code(broker, unique_topic) -> None:
    from fastlog.client import Client
    from fastlog.records import Record

    before = scrape(broker.metrics_url)
    with Client(broker.bootstrap) as client:
        client.metadata()
        client.brokers[0] = ("127.0.0.1", broker.port)
        client._cluster.topics.clear()  # route the produce without a metadata check
        from fastlog import protocol

        P = protocol.ProduceRequest
        request = P(acks=1, timeout_ms=1000, topic_data=[P.TopicProduceData(name=unique_topic + "-missing", partition_data=[P.PartitionProduceData(index=0, records=b"\0" * 70)])])
        response = client.connection(0).request(request)
        assert response.responses[0].partition_responses[0].error_code == 3
    # an oversized frame closes the connection with a reason
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock:
        sock.sendall((2**31 - 1).to_bytes(4, "big"))
        assert sock.recv(1) == b""
    after = scrape(broker.metrics_url)
    assert value(after, "fastlog_errors_total", api="Produce", error="UNKNOWN_TOPIC_OR_PARTITION") == value(
        before, "fastlog_errors_total", api="Produce", error="UNKNOWN_TOPIC_OR_PARTITION"
    ) + 1
    deadline = time.monotonic() + 5
    while value(after, "fastlog_connections_closed_total", reason="bad_frame_size") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
        after = scrape(broker.metrics_url)
    assert value(after, "fastlog_connections_closed_total", reason="bad_frame_size") >= 1
    assert "closing connection from 127.0.0.1:" in broker.log_text() and "socket.request.max.bytes" in broker.log_text()


def test_other_paths_and_methods(broker) -> None:
    base = broker.metrics_url.rsplit("/", 1)[0]
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(base + "/nope", timeout=5)
    assert missing.value.code == 404
    missing.value.close()
    with pytest.raises(urllib.error.HTTPError) as post:
        urllib.request.urlopen(urllib.request.Request(broker.metrics_url, data=b"x", method="POST"), timeout=5)
    assert post.value.code == 405
    post.value.close()
    with urllib.request.urlopen(base + "/", timeout=5) as response:
        assert b"/metrics" in response.read()


def test_start_up_lines_json_logs_and_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = BrokerProcess(tmp_path / "data", {"log.format": "json", "metrics.port": str(port)}).start()
        try:
            with socket.create_connection(("127.0.0.1", process.port), timeout=5) as sock:
                sock.sendall((2**31 - 1).to_bytes(4, "big"))
                sock.recv(1)
            time.sleep(0.3)
        finally:
            process.stop()
    lines = [json.loads(line) for line in process.log_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    messages = [line["message"] for line in lines]
    assert any(m.startswith("listening on") and str(tmp_path / "data") in m for m in messages)
    assert any(f"metrics endpoint off: cannot listen on 127.0.0.1:{port}" in m for m in messages)
    [closing] = [line for line in lines if line["message"].startswith("closing connection")]
    assert closing["level"] == "WARNING" and closing["peer"].startswith("127.0.0.1:")


def test_metrics_url_logged_and_metrics_off(tmp_path: Path) -> None:
    port = free_port()
    process = BrokerProcess(tmp_path / "on", {"metrics.port": str(port)}).start()
    process.stop()
    assert f"metrics at http://127.0.0.1:{port}/metrics" in process.log_text()
    off = BrokerProcess(tmp_path / "off", {"metrics.port": "-1"}).start()
    off.stop()
    assert "metrics endpoint off (metrics.port=-1)" in off.log_text()


def test_fsync_latency_of_scheduled_flushes(broker, unique_topic) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    before = value(scrape(broker.metrics_url), "fastlog_fsync_duration_seconds_count")
    ok("topics", "create", "--topic", unique_topic, "--config", "flush.ms=1", *b)
    ok("produce", "--topic", unique_topic, *b, input="a\nb\n")
    deadline = time.monotonic() + 10
    while value(scrape(broker.metrics_url), "fastlog_fsync_duration_seconds_count") <= before:
        assert time.monotonic() < deadline, "no flush observed"
        time.sleep(0.1)
    assert value(scrape(broker.metrics_url), "fastlog_fsync_duration_seconds_sum") > 0


def test_partition_gauges_from_the_rust_core_parse_as_prometheus_text_and_follow_topics(broker, unique_topic) -> None:
    """The five per-partition gauges are written by the Rust core, after prometheus_client's
    families: the whole page still parses with Prometheus' own text parser, each family once,
    and a deleted topic's partitions leave it."""
    from confluent_kafka.admin import AdminClient, NewTopic
    from prometheus_client.parser import text_string_to_metric_families

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(unique_topic, 3, 1)])[unique_topic].result(10)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(unique_topic, b"v", partition=2)
    assert producer.flush(10) == 0

    def families() -> dict:
        with urllib.request.urlopen(broker.metrics_url, timeout=10) as response:
            parsed = list(text_string_to_metric_families(response.read().decode()))
        names = [f.name for f in parsed]
        assert len(names) == len(set(names)), "each family once"
        return {f.name: f for f in parsed}

    def of_topic(family) -> dict[str, float]:
        return {s.labels["partition"]: s.value for s in family.samples if s.labels["topic"] == unique_topic}

    page = families()
    for name in ("fastlog_partition_log_size_bytes", "fastlog_partition_log_end_offset", "fastlog_partition_high_watermark",
                 "fastlog_partition_log_start_offset", "fastlog_partition_segments", "fastlog_partition_recovery_point",
                 "fastlog_partition_sync_failed"):
        assert page[name].type == "gauge", name
        assert set(of_topic(page[name])) == {"0", "1", "2"}, name
    assert of_topic(page["fastlog_partition_log_end_offset"]) == {"0": 0, "1": 0, "2": 1}
    assert of_topic(page["fastlog_partition_segments"]) == {"0": 1, "1": 1, "2": 1}
    assert of_topic(page["fastlog_partition_sync_failed"]) == {"0": 0, "1": 0, "2": 0}
    admin.delete_topics([unique_topic])[unique_topic].result(10)
    assert of_topic(families()["fastlog_partition_log_end_offset"]) == {}
