"""`fastlog topics ...` against a real broker."""

from __future__ import annotations

from tests.tools.helpers import fails, ok, ok_json, unreachable


def test_create_list_describe_alter_delete(broker, unique_topic) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    assert "Created topic" in ok("topics", "create", "--topic", unique_topic, "--partitions", "3", "--config", "retention.ms=3600000", *b)
    listed = ok_json("topics", "list", *b)
    assert {"topic": unique_topic, "partitions": 3, "replication_factor": 1, "internal": False} in listed
    assert unique_topic in ok("topics", "list", *b)

    ok("produce", "--topic", unique_topic, "--partition", "1", *b, input="a\nb\nc\n")
    [described] = ok_json("topics", "describe", "--topic", unique_topic, *b)
    assert described["partition_count"] == 3 and described["configs"] == {"retention.ms": "3600000"}
    by_index = {p["partition"]: p for p in described["partitions"]}
    assert by_index[1]["earliest_offset"] == 0 and by_index[1]["latest_offset"] == 3 and by_index[1]["messages"] == 3
    assert by_index[1]["size_bytes"] > 0 and by_index[0]["size_bytes"] == 0 and by_index[0]["leader"] == 0
    table = ok("topics", "describe", "--topic", unique_topic, *b)
    assert f"Topic: {unique_topic}" in table and "retention.ms=3600000" in table and "LATEST-OFFSET" in table

    assert "Altered" in ok("topics", "alter", "--topic", unique_topic, "--partitions", "5", "--config", "cleanup.policy=compact", "--delete-config", "retention.ms", *b)
    [described] = ok_json("topics", "describe", "--topic", unique_topic, *b)
    assert described["partition_count"] == 5 and described["configs"] == {"cleanup.policy": "compact"}

    assert ok_json("topics", "delete", "--topic", unique_topic, *b) == {"deleted": [unique_topic]}
    assert unique_topic not in ok("topics", "list", *b)


def test_create_twice_and_if_not_exists(broker, unique_topic) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    ok("topics", "create", "--topic", unique_topic, *b)
    assert "TOPIC_ALREADY_EXISTS" in fails("topics", "create", "--topic", unique_topic, *b)
    assert ok_json("topics", "create", "--topic", unique_topic, "--if-not-exists", *b)["created"] is False


def test_unknown_topic_fails_with_the_error_name(broker, unique_topic) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    for args in (
        ("topics", "describe", "--topic", unique_topic),
        ("topics", "delete", "--topic", unique_topic),
        ("topics", "alter", "--topic", unique_topic, "--partitions", "2"),
    ):
        assert "UNKNOWN_TOPIC_OR_PARTITION" in fails(*args, *b)
    assert ok_json("topics", "delete", "--topic", unique_topic, "--if-exists", *b) == {"deleted": []}


def test_refused_by_the_broker(broker, unique_topic) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    assert "INVALID_TOPIC_EXCEPTION" in fails("topics", "create", "--topic", "bad/name", *b)
    assert "INVALID_CONFIG" in fails("topics", "create", "--topic", unique_topic, "--config", "retention.ms=soon", *b)
    ok("topics", "create", "--topic", unique_topic, "--partitions", "2", *b)
    assert "INVALID_PARTITIONS" in fails("topics", "alter", "--topic", unique_topic, "--partitions", "1", *b)


def test_unreachable_broker() -> None:
    line = fails("topics", "list", "--bootstrap-server", unreachable(), "--request-timeout", "2")
    assert line.startswith("fastlog topics list: error: cannot connect to 127.0.0.1:")


def test_bad_arguments() -> None:
    assert "is not HOST:PORT" in fails("topics", "list", "--bootstrap-server", "nowhere", code=2)
    assert "--partitions" in fails("topics", "create", "--topic", "x", "--partitions", "0", code=2)
    assert "required" in fails("topics", "create", code=2)
    assert "expected KEY=VALUE" in fails("topics", "create", "--topic", "x", "--config", "novalue", code=2)
    assert "nothing to alter" in fails("topics", "alter", "--topic", "x", "--bootstrap-server", unreachable())


def test_help_everywhere() -> None:
    for args in (
        (), ("topics",), ("topics", "create"), ("topics", "list"), ("topics", "describe"), ("topics", "alter"),
        ("topics", "delete"), ("produce",), ("consume",), ("groups",), ("groups", "list"), ("groups", "describe"),
        ("groups", "reset-offsets"), ("groups", "delete"), ("perf",), ("perf", "produce"), ("perf", "consume"),
    ):
        out = ok(*args, "--help")
        assert "usage: fastlog" in out
        if args and args[-1] not in ("topics", "groups", "perf"):
            assert "--bootstrap-server" in out
