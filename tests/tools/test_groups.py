"""`fastlog groups ...` against a real broker, with a real consumer group (confluent-kafka)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from confluent_kafka import Consumer

from tests.tools.helpers import fails, ok, ok_json, unreachable


def consume(bootstrap: str, group: str, topic: str, count: int, close: bool = True) -> Consumer:
    """A subscribed consumer that read and committed `count` records."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "client.id": "tools-test",
        }
    )
    consumer.subscribe([topic])
    received = 0
    deadline = time.monotonic() + 30
    while received < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            received += 1
            consumer.commit(message, asynchronous=False)
    assert received == count
    if close:
        consumer.close()
    return consumer


def test_list_describe_reset_delete(broker, unique_topic) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    group = f"g-{unique_topic}"
    ok("topics", "create", "--topic", unique_topic, "--partitions", "1", *b)
    ok("produce", "--topic", unique_topic, *b, input="".join(f"m{i}\n" for i in range(10)))
    consumer = consume(broker.bootstrap, group, unique_topic, 4, close=False)
    try:
        assert {"group": group, "state": "Stable", "protocol_type": "consumer"} in ok_json("groups", "list", *b)
        [described] = ok_json("groups", "describe", "--group", group, *b)
        assert described["state"] == "Stable" and len(described["members"]) == 1 and described["total_lag"] == 6
        [partition] = described["partitions"]
        assert partition["current_offset"] == 4 and partition["log_end_offset"] == 10 and partition["lag"] == 6
        assert partition["client_id"] == "tools-test" and partition["consumer_id"]
        table = ok("groups", "describe", "--group", group, *b)
        assert "LAG" in table and "tools-test" in table
        # Kafka's rule: no reset while the group has members.
        assert "members" in fails("groups", "reset-offsets", "--group", group, "--all-topics", "--to-earliest", "--execute", *b)
        assert "NON_EMPTY_GROUP" in fails("groups", "delete", "--group", group, *b)
    finally:
        consumer.close()

    # dry run by default: the plan is printed, nothing changes
    plan = ok("groups", "reset-offsets", "--group", group, "--topic", unique_topic, "--to-earliest", *b)
    assert "Dry run" in plan and "NEW-OFFSET" in plan
    assert ok_json("groups", "describe", "--group", group, *b)[0]["partitions"][0]["current_offset"] == 4

    reset = ok_json("groups", "reset-offsets", "--group", group, "--topic", f"{unique_topic}:0", "--to-offset", "7", "--execute", *b)
    assert reset["executed"] and reset["offsets"] == [{"group": group, "topic": unique_topic, "partition": 0, "new_offset": 7}]
    assert ok_json("groups", "describe", "--group", group, *b)[0]["partitions"][0]["lag"] == 3
    assert ok_json("groups", "reset-offsets", "--group", group, "--all-topics", "--to-offset", "999", *b)["offsets"][0]["new_offset"] == 10
    ok("groups", "reset-offsets", "--group", group, "--all-topics", "--to-latest", "--execute", *b)
    assert ok_json("groups", "describe", "--group", group, *b)[0]["partitions"][0]["lag"] == 0
    past = datetime(2000, 1, 1, tzinfo=timezone.utc).isoformat()
    ok("groups", "reset-offsets", "--group", group, "--all-topics", "--to-datetime", past, "--execute", *b)
    assert ok_json("groups", "describe", "--group", group, *b)[0]["partitions"][0]["current_offset"] == 0
    future = datetime(2100, 1, 1).isoformat()
    assert ok_json("groups", "reset-offsets", "--group", group, "--all-topics", "--to-datetime", future, *b)["offsets"][0]["new_offset"] == 10

    # the console consumer resumes from the reset offset
    assert ok("consume", "--topic", unique_topic, "--group", group, "--max-messages", "2", *b).split() == ["m0", "m1"]

    assert "Deleted group" in ok("groups", "delete", "--group", group, *b)
    assert group not in [g["group"] for g in ok_json("groups", "list", *b)]


def test_failures(broker, unique_topic) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    group = f"missing-{unique_topic}"
    assert "GROUP_ID_NOT_FOUND" in fails("groups", "describe", "--group", group, *b)
    assert "GROUP_ID_NOT_FOUND" in fails("groups", "delete", "--group", group, *b)
    assert "no committed offsets" in fails("groups", "reset-offsets", "--group", group, "--all-topics", "--to-earliest", *b)
    assert "UNKNOWN_TOPIC_OR_PARTITION" in fails("groups", "reset-offsets", "--group", group, "--topic", unique_topic, "--to-earliest", *b)
    assert "is not YYYY-MM-DD" in fails("groups", "reset-offsets", "--group", group, "--all-topics", "--to-datetime", "yesterday", *b, code=2)
    assert "cannot connect" in fails("groups", "list", "--bootstrap-server", unreachable())
    assert "one of the arguments" in fails("groups", "reset-offsets", "--group", group, "--all-topics", *b, code=2)
    assert "not allowed with" in fails("groups", "reset-offsets", "--group", group, "--all-topics", "--to-earliest", "--to-latest", *b, code=2)
    assert "not allowed with" in fails("groups", "reset-offsets", "--group", group, "--all-topics", "--to-earliest", "--dry-run", "--execute", *b, code=2)
