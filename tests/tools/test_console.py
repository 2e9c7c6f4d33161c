"""`fastlog produce` and `fastlog consume` against a real broker."""

from __future__ import annotations

import json
from pathlib import Path

from tests.tools.helpers import fails, fastlog, ok, ok_json, unreachable


def test_produce_stdin_and_consume_formats(broker, unique_topic) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    ok("topics", "create", "--topic", unique_topic, "--partitions", "1", *b)
    summary = ok_json(
        "produce", "--topic", unique_topic, "--key-separator", ":", "--header", "source=test", "--header", "n=1",
        "--compression", "zstd", *b, input="k1:v1\nk2:v:2\nk3:\n",
    )
    assert summary["records"] == 3 and summary["partitions"] == {"0": {"first_offset": 0, "last_offset": 2}}

    assert ok("consume", "--topic", unique_topic, "--from-beginning", "--max-messages", "3", *b) == "v1\nv:2\n\n"
    assert ok("consume", "--topic", unique_topic, "--from-beginning", "--max-messages", "2", "--format", "key-value", *b) == "k1\tv1\nk2\tv:2\n"
    lines = ok("consume", "--topic", unique_topic, "--from-beginning", "--max-messages", "3", "--format", "json", *b).splitlines()
    first = json.loads(lines[0])
    assert first["offset"] == 0 and first["partition"] == 0 and first["key"] == "k1" and first["value"] == "v1"
    assert first["headers"] == [["source", "test"], ["n", "1"]] and first["timestamp"] > 0
    assert [json.loads(line)["offset"] for line in lines] == [0, 1, 2]


def test_produce_file_with_progress_and_keyed_partitioning(broker, unique_topic, tmp_path: Path) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    ok("topics", "create", "--topic", unique_topic, "--partitions", "4", *b)
    data = tmp_path / "lines.txt"
    data.write_text("".join(f"key{i % 10}|value{i}\n" for i in range(3000)))
    result = fastlog("produce", "--topic", unique_topic, "--file", str(data), "--key-separator", "|", "--progress", "--batch-size", "100", *b)
    assert result.returncode == 0, result.stderr
    assert "100.0%" in result.stderr and "3000 records" in result.stderr
    assert "Produced 3000 records" in result.stdout
    out = ok("consume", "--topic", unique_topic, "--from-beginning", "--max-messages", "3000", "--format", "json", *b)
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted(int(r["value"][5:]) for r in records) == list(range(3000))
    partitions_of_key: dict = {}
    for r in records:
        partitions_of_key.setdefault(r["key"], set()).add(r["partition"])
    assert all(len(p) == 1 for p in partitions_of_key.values())  # same key, same partition
    # The partition Java clients (and librdkafka with murmur2_random) choose for "key0".
    from fastlog.client import murmur2_partition

    assert partitions_of_key["key0"] == {murmur2_partition(b"key0", 4)}


def test_consume_timeout_partition_offset_and_latest(broker, unique_topic) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    ok("topics", "create", "--topic", unique_topic, "--partitions", "2", *b)
    ok("produce", "--topic", unique_topic, "--partition", "1", *b, input="a\nb\nc\nd\n")
    result = fastlog("consume", "--topic", unique_topic, "--timeout-ms", "300", *b)  # from latest: nothing
    assert result.returncode == 0 and result.stdout == "" and "Processed a total of 0 messages" in result.stderr
    assert ok("consume", "--topic", unique_topic, "--partition", "1", "--offset", "2", "--timeout-ms", "300", *b) == "c\nd\n"
    assert ok("consume", "--topic", unique_topic, "--from-beginning", "--timeout-ms", "300", *b) == "a\nb\nc\nd\n"


def test_consume_with_group_commits_and_resumes(broker, unique_topic) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    group = f"g-{unique_topic}"
    ok("topics", "create", "--topic", unique_topic, *b)
    ok("produce", "--topic", unique_topic, *b, input="".join(f"m{i}\n" for i in range(10)))
    assert ok("consume", "--topic", unique_topic, "--group", group, "--from-beginning", "--max-messages", "4", *b).split() == ["m0", "m1", "m2", "m3"]
    assert ok("consume", "--topic", unique_topic, "--group", group, "--timeout-ms", "300", *b).split() == [f"m{i}" for i in range(4, 10)]
    assert ok("consume", "--topic", unique_topic, "--group", group, "--timeout-ms", "300", *b) == ""


def test_failures(broker, unique_topic) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    assert "UNKNOWN_TOPIC_OR_PARTITION" in fails("produce", "--topic", unique_topic, *b, input="x\n")
    assert "UNKNOWN_TOPIC_OR_PARTITION" in fails("consume", "--topic", unique_topic, "--timeout-ms", "100", *b)
    ok("topics", "create", "--topic", unique_topic, *b)
    assert "UNKNOWN_TOPIC_OR_PARTITION" in fails("produce", "--topic", unique_topic, "--partition", "7", *b, input="x\n")
    assert "line 2 has no key separator" in fails("produce", "--topic", unique_topic, "--key-separator", ",", *b, input="k,v\nnokey\n")
    assert "--offset needs --partition" in fails("consume", "--topic", unique_topic, "--offset", "3", *b)
    assert "cannot connect" in fails("produce", "--topic", unique_topic, "--bootstrap-server", unreachable(), input="x\n")
    assert "cannot connect" in fails("consume", "--topic", unique_topic, "--bootstrap-server", unreachable())
    assert "invalid choice" in fails("produce", "--topic", unique_topic, "--compression", "brotli", code=2)
    assert "invalid choice" in fails("consume", "--topic", unique_topic, "--format", "xml", code=2)
    assert "No such file" in fails("produce", "--topic", unique_topic, "--file", "/nonexistent/file", *b)


def test_murmur2_matches_kafka_python() -> None:
    import random

    from kafka.partitioner.default import murmur2 as reference

    from fastlog.client import murmur2

    rng = random.Random(7)
    for size in range(64):
        data = bytes(rng.randrange(256) for _ in range(size))
        assert murmur2(data) == reference(data) & 0xFFFFFFFF
