"""The web console's JSON endpoints (what its pages call), over HTTP against real brokers:
what they show for data written by real clients, what they change, and how they refuse bad
parameters, huge offsets, unknown topics and groups, read-only mode, and logins (a SASL
broker with ACLs, where each user sees and does what the ACLs allow)."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from tests.conftest import BrokerProcess, free_port
from tests.console.conftest import call, console_broker_process, sasl_console_broker

pytestmark = pytest.mark.timeout(120)


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the result is in
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)


def produce(bootstrap: str, topic: str, records: list[tuple], partition: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for key, value, headers in records:
        producer.produce(topic, key=key, value=value, headers=headers, partition=partition)
    assert producer.flush(30) == 0


def committed_group(bootstrap: str, group: str, topic: str, offset: int) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    consumer.close()


def test_pages_and_metrics_share_the_listener(console_broker: BrokerProcess) -> None:
    url = console_broker.console_url  # type: ignore[attr-defined]
    with urllib.request.urlopen(url + "/", timeout=10) as response:
        page = response.read().decode()
    assert 'src="/static/app.js"' in page and "/metrics" in page
    with urllib.request.urlopen(url + "/static/app.js", timeout=10) as response:
        assert b"export" in response.read() or response.status == 200
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        assert b"fastlog_request_duration_seconds" in response.read()
    status, info, _ = call(url + "/api/info")
    assert status == 200 and info["read_only"] is False and info["login_required"] is False
    assert info["schema_registry"] is True and info["bootstrap"] == console_broker.bootstrap
    assert f"console at {url}/" in console_broker.log_text()


def test_overview_topics_and_a_topic(console_broker: BrokerProcess, unique_topic: str) -> None:
    url, bootstrap = console_broker.console_url, console_broker.bootstrap  # type: ignore[attr-defined]
    create_topic(bootstrap, unique_topic, 2)
    produce(bootstrap, unique_topic, [(b"k", b"v" * 100, None)] * 5, partition=1)
    status, overview, _ = call(url + "/api/overview")
    assert status == 200
    assert [b["id"] for b in overview["brokers"]] == [0] and overview["controller"] == 0
    assert overview["partitions"] >= 2 and overview["size_bytes"] > 0 and overview["under_replicated"] == []
    status, listed, _ = call(url + "/api/topics")
    mine = next(t for t in listed["topics"] if t["name"] == unique_topic)
    assert mine["partitions"] == 2 and mine["messages"] == 5 and mine["size_bytes"] > 500
    assert mine["retention_ms"] == "604800000" and mine["cleanup_policy"] == "delete"
    status, topic, _ = call(url + f"/api/topics/{unique_topic}")
    assert status == 200
    assert [(p["partition"], p["start_offset"], p["end_offset"], p["leader"], p["isr"]) for p in topic["partitions"]] == [
        (0, 0, 0, 0, [0]), (1, 0, 5, 0, [0])]
    assert {"name": "retention.ms", "value": "604800000", "source": "broker default", "read_only": False, "sensitive": False} in topic["configs"]


def test_messages_are_shown_byte_exact(console_broker: BrokerProcess, unique_topic: str) -> None:
    url, bootstrap = console_broker.console_url, console_broker.bootstrap  # type: ignore[attr-defined]
    create_topic(bootstrap, unique_topic)
    binary = bytes(range(256))
    records = [
        (b"text", "grüße".encode(), [("h", b"\x00\xff")]),
        (None, b'{"a": [1, 2], "b": "x"}', None),
        (binary, binary, None),
        (b"", None, None),
    ]
    produce(bootstrap, unique_topic, records)
    status, page, _ = call(url + f"/api/topics/{unique_topic}/messages?partition=0&offset=0&limit=10")
    assert status == 200 and (page["start_offset"], page["end_offset"], page["next_offset"]) == (0, 4, 4)
    shown = page["messages"]
    assert [m["offset"] for m in shown] == [0, 1, 2, 3]
    for message, (key, value, headers) in zip(shown, records):
        for rendered, raw in ((message["key"], key), (message["value"], value)):
            assert (rendered is None) == (raw is None)
            if raw is not None:
                assert base64.b64decode(rendered["base64"]) == raw and rendered["size"] == len(raw)
        assert [(h["key"], base64.b64decode(h["value"]["base64"])) for h in message["headers"]] == (headers or [])
    assert shown[0]["value"] == {**shown[0]["value"], "format": "text", "text": "grüße"}
    assert shown[1]["value"]["format"] == "json" and json.loads(shown[1]["value"]["text"]) == {"a": [1, 2], "b": "x"}
    assert shown[1]["value"]["text"].count("\n") >= 4  # pretty printed
    assert shown[2]["value"]["format"] == "hex" and shown[2]["value"]["text"].startswith("00 01 02")
    # newest first page, and from a timestamp
    status, newest, _ = call(url + f"/api/topics/{unique_topic}/messages?partition=0&limit=2")
    assert [m["offset"] for m in newest["messages"]] == [2, 3]
    status, later, _ = call(url + f"/api/topics/{unique_topic}/messages?partition=0&timestamp={shown[2]['timestamp']}")
    assert later["messages"][0]["offset"] <= 2 and later["messages"][-1]["offset"] == 3
    status, future, _ = call(url + f"/api/topics/{unique_topic}/messages?partition=0&timestamp={int(time.time() * 1000) + 86_400_000}")
    assert status == 200 and future["messages"] == []


@pytest.mark.parametrize("query, status, words", [
    ("partition=0&offset=abc", 400, "offset must be an integer"),
    ("partition=0&offset=-1", 400, "offset must be between"),
    ("partition=0&offset=99999999999999999999999", 400, "offset must be between"),
    ("partition=-1", 400, "partition must be between"),
    ("partition=7", 404, "has no partition 7"),
    ("partition=0&limit=0", 400, "limit must be between 1 and 500"),
    ("partition=0&limit=100000", 400, "limit must be between 1 and 500"),
    ("partition=0&offset=1&timestamp=5", 400, "not both"),
])
def test_bad_message_queries(console_broker: BrokerProcess, query: str, status: int, words: str) -> None:
    url = console_broker.console_url  # type: ignore[attr-defined]
    name = "console-bad-queries"
    create_topic_once(console_broker.bootstrap, name)
    got, document, _ = call(url + f"/api/topics/{name}/messages?{query}")
    assert got == status and words in document["error"]


_created: set[str] = set()


def create_topic_once(bootstrap: str, name: str) -> None:
    if name not in _created:
        create_topic(bootstrap, name)
        _created.add(name)


def test_huge_offset_is_clamped_to_the_log_end(console_broker: BrokerProcess, unique_topic: str) -> None:
    url, bootstrap = console_broker.console_url, console_broker.bootstrap  # type: ignore[attr-defined]
    create_topic(bootstrap, unique_topic)
    produce(bootstrap, unique_topic, [(None, b"x", None)] * 3)
    status, page, _ = call(url + f"/api/topics/{unique_topic}/messages?partition=0&offset={2**63 - 1}")
    assert status == 200 and page["first_offset"] == 3 and page["messages"] == []


@pytest.mark.parametrize("path", ["/api/topics/no-such-topic", "/api/topics/no-such-topic/messages?partition=0", "/api/groups/no-such-group"])
def test_unknown_topics_and_groups(console_broker: BrokerProcess, path: str) -> None:
    status, document, _ = call(console_broker.console_url + path)  # type: ignore[attr-defined]
    assert status == 404 and "no-such" in document["error"]


def test_unknown_paths_and_methods(console_broker: BrokerProcess) -> None:
    url = console_broker.console_url  # type: ignore[attr-defined]
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(url + "/api/nope", timeout=10)
    assert missing.value.code == 404
    missing.value.close()
    with pytest.raises(urllib.error.HTTPError) as post:
        urllib.request.urlopen(urllib.request.Request(url + "/metrics", data=b"x", method="POST"), timeout=10)
    assert post.value.code == 405
    post.value.close()


def test_config_edit_validates_then_applies(console_broker: BrokerProcess, unique_topic: str) -> None:
    url, bootstrap = console_broker.console_url, console_broker.bootstrap  # type: ignore[attr-defined]
    create_topic(bootstrap, unique_topic)
    target = url + f"/api/topics/{unique_topic}/configs"
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def retention() -> str:
        resource = ConfigResource(ConfigResource.Type.TOPIC, unique_topic)
        return admin.describe_configs([resource])[resource].result(timeout=30)["retention.ms"].value

    status, _, _ = call(target, {"set": {"retention.ms": "3600000"}, "validate_only": True})
    assert status == 200 and retention() == "604800000"
    status, _, _ = call(target, {"set": {"retention.ms": "3600000"}})
    assert status == 200 and retention() == "3600000"
    status, _, _ = call(target, {"delete": ["retention.ms"]})
    assert status == 200 and retention() == "604800000"
    for body, words in [
        ({"set": {"retention.ms": "abc"}}, "INVALID_CONFIG"),
        ({"set": {"no.such.config": "1"}}, "INVALID_CONFIG"),
        ({"set": {"retention.ms": 5}}, "string values"),
        ({}, "nothing to change"),
        ({"delete": "retention.ms"}, "list of config names"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
    ]:
        status, document, _ = call(target, body)
        assert status == 400 and words in document["error"], (body, document)
    assert retention() == "604800000"
    status, document, _ = call(url + "/api/topics/no-such-topic/configs", {"set": {"retention.ms": "1"}})
    assert status == 404


def test_produce_a_test_message(console_broker: BrokerProcess, unique_topic: str) -> None:
    url, bootstrap = console_broker.console_url, console_broker.bootstrap  # type: ignore[attr-defined]
    create_topic(bootstrap, unique_topic, 2)
    status, written, _ = call(url + f"/api/topics/{unique_topic}/messages",
                              {"partition": 1, "key": "k", "value": "héllo", "headers": [{"key": "source", "value": "console"}]})
    assert status == 200 and (written["partition"], written["offset"]) == (1, 0)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(unique_topic, 1, 0)])
    message = consumer.poll(15)
    consumer.close()
    assert message is not None and not message.error()
    assert (message.key(), message.value(), message.headers()) == (b"k", "héllo".encode(), [("source", b"console")])
    target = url + f"/api/topics/{unique_topic}/messages"
    for body, status_wanted, words in [
        ({"partition": 5, "value": "x"}, 404, "no partition 5"),
        ({"partition": "one", "value": "x"}, 400, "partition must be an integer"),
        ({"value": 5}, 400, "strings or null"),
        ({"value": "x", "headers": [{"key": 1}]}, 400, "headers"),
        ({"value": "x" * (2 << 20)}, 400, "at most"),
    ]:
        status, document, _ = call(target, body)
        assert status == status_wanted and words in document["error"], (body, document)


def test_a_body_too_large_sent_slowly_is_still_answered(console_broker: BrokerProcess, unique_topic: str) -> None:
    """A body declared larger than the console takes gets a 400 saying so, even from a client
    still sending it when the refusal is decided: the console reads and drops the body first.
    Closed with the body unread, the connection was reset under the client, which never read
    the answer (a broken pipe)."""
    url = console_broker.console_url  # type: ignore[attr-defined]
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    body_size, piece = 3 << 20, b"x" * (256 << 10)
    head = (f"POST /api/topics/{unique_topic}/messages HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {body_size}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=30) as client:
        client.sendall(head)
        for _ in range(body_size // len(piece)):
            time.sleep(0.02)  # the console has decided long before the body is all sent
            client.sendall(piece)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert b"at most" in rest.partition(b"\r\n\r\n")[2]


def test_group_lag_reset_plan_and_execute(console_broker: BrokerProcess, unique_topic: str) -> None:
    url, bootstrap = console_broker.console_url, console_broker.bootstrap  # type: ignore[attr-defined]
    create_topic(bootstrap, unique_topic)
    produce(bootstrap, unique_topic, [(None, b"x", None)] * 10)
    group = f"{unique_topic}-g"
    committed_group(bootstrap, group, unique_topic, 4)
    status, described, _ = call(url + f"/api/groups/{group}")
    assert status == 200 and described["state"] == "Empty" and described["total_lag"] == 6
    assert [(p["partition"], p["current_offset"], p["log_end_offset"], p["lag"]) for p in described["partitions"]] == [(0, 4, 10, 6)]
    # the history follows the group's lag as it grows
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        history = call(url + f"/api/groups/{group}")[1]["lag_history"]
        if history and history[-1]["lag"] == 6:
            break
        time.sleep(0.3)
    produce(bootstrap, unique_topic, [(None, b"x", None)] * 5)
    while time.monotonic() < deadline:
        history = call(url + f"/api/groups/{group}")[1]["lag_history"]
        if history and history[-1]["lag"] == 11:
            break
        time.sleep(0.3)
    lags = [point["lag"] for point in history]
    assert 6 in lags and lags[-1] == 11, lags
    status, listed, _ = call(url + "/api/groups")
    assert any(g["group"] == group for g in listed["groups"])

    target = url + f"/api/groups/{group}/reset"
    status, plan, _ = call(target, {"to": "offset", "value": 2})
    assert status == 200 and plan["executed"] is False
    assert plan["offsets"] == [{"topic": unique_topic, "partition": 0, "current_offset": 4, "new_offset": 2}]
    assert call(url + f"/api/groups/{group}")[1]["partitions"][0]["current_offset"] == 4  # a plan changes nothing
    status, done, _ = call(target, {"to": "earliest", "topic": unique_topic, "execute": True})
    assert status == 200 and done["executed"] is True
    assert call(url + f"/api/groups/{group}")[1]["partitions"][0]["current_offset"] == 0
    for body, status_wanted, words in [
        ({"to": "sideways"}, 400, "to must be one of"),
        ({"to": "offset", "value": "ten"}, 400, "value must be an integer"),
        ({"to": "earliest", "topic": "no-such-topic"}, 404, "no topic"),
        ({"to": "earliest", "topic": 5}, 400, "topic must be a name"),
    ]:
        status, document, _ = call(target, body)
        assert status == status_wanted and words in document["error"], (body, document)
    status, document, _ = call(url + "/api/groups/never-used/reset", {"to": "earliest"})
    assert status == 400 and "no committed offsets" in document["error"]


def test_reset_refused_while_the_group_has_members(console_broker: BrokerProcess, unique_topic: str) -> None:
    url, bootstrap = console_broker.console_url, console_broker.bootstrap  # type: ignore[attr-defined]
    create_topic(bootstrap, unique_topic)
    produce(bootstrap, unique_topic, [(None, b"x", None)] * 3)
    group = f"{unique_topic}-live"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    consumer.subscribe([unique_topic])
    try:
        deadline = time.monotonic() + 20
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        status, described, _ = call(url + f"/api/groups/{group}")
        assert described["state"] == "Stable" and len(described["members"]) == 1
        assert described["partitions"][0]["consumer_id"] == described["members"][0]["member_id"]
        status, document, _ = call(url + f"/api/groups/{group}/reset", {"to": "earliest", "topic": unique_topic})
        assert status == 409 and "1 members" in document["error"]
    finally:
        consumer.close()


def test_schemas_subjects_versions_and_diff(console_broker: BrokerProcess) -> None:
    url, registry = console_broker.console_url, console_broker.registry_url  # type: ignore[attr-defined]
    subject = "console-orders-value"
    first = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"}]}
    second = {**first, "fields": [*first["fields"], {"name": "note", "type": "string", "default": ""}]}
    for schema in (first, second):
        request = urllib.request.Request(f"{registry}/subjects/{subject}/versions", data=json.dumps({"schema": json.dumps(schema)}).encode(),
                                         headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass
    status, subjects, _ = call(url + "/api/schemas")
    assert status == 200 and subject in subjects["subjects"] and subjects["compatibility"] == "BACKWARD"
    status, described, _ = call(url + f"/api/schemas/{subject}")
    assert [v["version"] for v in described["versions"]] == [1, 2] and described["compatibility"] == "BACKWARD"
    status, diff, _ = call(url + f"/api/schemas/{subject}/diff?from=1&to=2")
    assert status == 200 and any(line.startswith("+") and '"note"' in line for line in diff["diff"])
    assert call(url + f"/api/schemas/{subject}/diff?from=1")[0] == 400
    assert call(url + f"/api/schemas/{subject}/diff?from=1&to=9")[0] == 404
    assert call(url + "/api/schemas/no-such-subject")[0] == 404


def test_avro_values_are_decoded_through_the_registry(console_broker: BrokerProcess, unique_topic: str) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    url, bootstrap = console_broker.console_url, console_broker.bootstrap  # type: ignore[attr-defined]
    create_topic(bootstrap, unique_topic)
    schema = json.dumps({"type": "record", "name": "Reading", "fields": [{"name": "sensor", "type": "string"}, {"name": "celsius", "type": "double"}]})
    with SchemaRegistryClient({"url": console_broker.registry_url}) as registry:  # type: ignore[attr-defined]
        serializer = AvroSerializer(registry, schema)
        value = serializer({"sensor": "t-1", "celsius": 21.5}, SerializationContext(unique_topic, MessageField.VALUE))
    produce(bootstrap, unique_topic, [(b"t-1", value, None), (None, b"\x00\x00\x00\x7f\xff\xfe", None)])
    status, page, _ = call(url + f"/api/topics/{unique_topic}/messages?partition=0&offset=0")
    decoded, unknown = page["messages"][0]["value"], page["messages"][1]["value"]
    assert decoded["format"] == "avro" and json.loads(decoded["text"]) == {"sensor": "t-1", "celsius": 21.5}
    assert base64.b64decode(decoded["base64"]) == value
    assert unknown["format"] == "hex"  # schema id 127 is unknown: the bytes as they are


def test_read_only_console_refuses_every_change(tmp_path: Path) -> None:
    broker = console_broker_process(tmp_path / "data", **{"console.read.only": "true", "schema.registry.listeners": "-1"}).start()
    try:
        url = broker.console_url  # type: ignore[attr-defined]
        create_topic(broker.bootstrap, "ro")
        assert call(url + "/api/info")[1]["read_only"] is True
        assert call(url + "/api/topics/ro")[0] == 200
        for path, body in [("/api/topics/ro/configs", {"set": {"retention.ms": "1"}}), ("/api/topics/ro/messages", {"value": "x"}),
                           ("/api/groups/g/reset", {"to": "earliest"})]:
            status, document, _ = call(url + path, body)
            assert status == 403 and "read-only" in document["error"]
        assert call(url + "/api/schemas")[0] == 404  # no registry on this broker
        assert "(read-only)" in broker.log_text()
    finally:
        broker.stop()


def test_console_off_leaves_metrics_alone(tmp_path: Path) -> None:
    broker = console_broker_process(tmp_path / "data", **{"console.enable": "false"}).start()
    try:
        url = broker.console_url  # type: ignore[attr-defined]
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            assert b"fastlog_" in response.read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url + "/api/info", timeout=10)
        assert missing.value.code == 404
        missing.value.close()
    finally:
        broker.stop()


# -- logins on a SASL broker with ACLs --------------------------------------------------------




def post_login(url: str, username: str, password: str) -> tuple[int, dict, str]:
    status, document, headers = call(url + "/api/login", {"username": username, "password": password})
    cookie = (headers.get("set-cookie") or "").split(";")[0]
    return status, document, cookie


def test_login_with_sasl_users_and_acls(tmp_path: Path) -> None:
    broker = sasl_console_broker(tmp_path, **{
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "super.users": "User:admin",
    })
    port = broker.port
    try:
        url = broker.console_url  # type: ignore[attr-defined]
        info = call(url + "/api/info")[1]
        assert info["login_required"] is True and info["logged_in"] is False
        assert call(url + "/api/overview")[0] == 401
        status, document, cookie = post_login(url, "alice", "wrong")
        assert status == 401 and "login refused" in document["error"] and not cookie
        assert call(url + "/api/login", {"username": ""})[0] == 400

        status, document, admin = post_login(url, "admin", "admin-secret")
        assert status == 200 and document["user"] == "admin" and admin
        assert call(url + "/api/info", cookie=admin)[1]["user"] == "admin"
        status, _, _ = call(url + "/api/topics/secret/messages", {"value": "x"}, cookie=admin)
        assert status == 404  # no such topic yet: create it as admin through Kafka
        conf = {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                "sasl.username": "admin", "sasl.password": "admin-secret"}
        admin_client = AdminClient(conf)
        admin_client.create_topics([NewTopic("secret", 1, 1)])["secret"].result(timeout=30)
        del admin_client
        status, written, _ = call(url + "/api/topics/secret/messages", {"value": "x"}, cookie=admin)
        assert status == 200 and written["offset"] == 0

        status, _, alice = post_login(url, "alice", "alice-secret")
        assert status == 200 and alice
        status, listed, _ = call(url + "/api/topics", cookie=alice)
        assert status == 200, listed
        names = [t["name"] for t in listed["topics"]]
        assert "secret" not in names  # alice may not describe it
        status, document, _ = call(url + "/api/topics/secret/messages", {"value": "x"}, cookie=alice)
        assert status in (403, 404), document
        status, document, _ = call(url + "/api/topics/secret/configs", {"set": {"retention.ms": "1"}}, cookie=alice)
        assert status in (403, 404), document
        assert "secret" in [t["name"] for t in call(url + "/api/topics", cookie=admin)[1]["topics"]]

        call(url + "/api/logout", {}, cookie=alice)
        assert call(url + "/api/topics", cookie=alice)[0] == 401
    finally:
        broker.stop()


def info_once_up(url: str, alive: Callable[[], bool], log: Callable[[], str], seconds: float = 20) -> dict:
    """/api/info of a console that is starting, once it answers (200)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            status, info, _ = call(url + "/api/info")
            assert status == 200, info
            return info
        except (OSError, urllib.error.URLError):
            assert alive() and time.monotonic() < deadline, log()
            time.sleep(0.1)


def test_standalone_console_against_a_broker(console_broker: BrokerProcess, tmp_path: Path, unique_topic: str) -> None:
    create_topic(console_broker.bootstrap, unique_topic)
    produce(console_broker.bootstrap, unique_topic, [(b"k", b"standalone", None)])
    port = free_port()
    log_path = tmp_path / "console.log"
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "fastlog", "console", "--bootstrap-server", console_broker.bootstrap, "--listeners", f"http://127.0.0.1:{port}",
             "--schema-registry-url", console_broker.registry_url, "--sample-interval", "0.5"],  # type: ignore[attr-defined]
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        info = info_once_up(url, lambda: process.poll() is None, log_path.read_text)
        assert info["metrics"] is False and info["schema_registry"] is True
        page = call(url + f"/api/topics/{unique_topic}/messages?partition=0&offset=0")[1]
        assert base64.b64decode(page["messages"][0]["value"]["base64"]) == b"standalone"
        assert call(url + "/api/schemas")[0] == 200
        assert f"console at {url}/ against {console_broker.bootstrap}" in log_path.read_text()
    finally:
        process.terminate()
        assert process.wait(15) == 0


def test_standalone_console_refuses_bad_arguments(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fastlog", "console", *args], capture_output=True, text=True, timeout=30)

    bad_url = run("--listeners", "ftp://x")
    assert bad_url.returncode == 2 and "'ftp://x' is not http://HOST:PORT" in bad_url.stderr
    done = run("--sample-interval", "0")
    assert done.returncode == 2 and "--sample-interval" in done.stderr
    missing = run("--command-config", str(tmp_path / "missing.properties"))
    assert missing.returncode == 2 and "missing.properties" in missing.stderr


def test_console_on_listeners_of_its_own(tmp_path: Path) -> None:
    port = free_port()
    broker = console_broker_process(tmp_path / "data", **{"console.listeners": f"http://127.0.0.1:{port}", "schema.registry.listeners": "-1"}).start()
    try:
        url = f"http://127.0.0.1:{port}"
        info = info_once_up(url, lambda: True, broker.log_text)
        assert info["bootstrap"] == broker.bootstrap
        assert call(url + "/api/overview")[1]["brokers"][0]["port"] == broker.port
        with urllib.request.urlopen(broker.console_url + "/metrics", timeout=10) as response:  # type: ignore[attr-defined]
            assert b"fastlog_" in response.read()  # /metrics stays where it was, alone
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(broker.console_url + "/api/info", timeout=10)  # type: ignore[attr-defined]
        assert missing.value.code == 404
        missing.value.close()
        assert f"console at {url}/" in broker.log_text()
    finally:
        broker.stop()


def test_requests_a_web_page_elsewhere_could_send_are_refused(console_broker: BrokerProcess, unique_topic: str) -> None:
    url = console_broker.console_url  # type: ignore[attr-defined]
    create_topic(console_broker.bootstrap, unique_topic)

    def raw(method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, dict, dict]:
        request = urllib.request.Request(url + path, data=body if method == "POST" else None, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response), dict(response.headers)
        except urllib.error.HTTPError as e:
            with e:
                return e.code, json.load(e), dict(e.headers)

    target = f"/api/topics/{unique_topic}/messages"
    # a form or a no-cors fetch cannot send JSON without asking first: text/plain is refused
    status, document, _ = raw("POST", target, {"Content-Type": "text/plain"}, b'{"value": "x"}')
    assert status == 400 and "application/json" in document["error"]
    status, document, _ = raw("POST", target, {"Content-Type": "application/json", "Origin": "http://evil.example"}, b'{"value": "x"}')
    assert status == 403 and "evil.example" in document["error"]
    # DNS rebinding: a loopback console answers only for loopback names
    status, document, _ = raw("GET", "/api/topics", {"Host": "evil.example:9404"})
    assert status == 403 and "loopback host" in document["error"]
    status, _, headers = raw("GET", "/api/info", {})
    assert status == 200 and headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in headers["content-security-policy"]
    assert call(url + f"/api/topics/{unique_topic}")[1]["partitions"][0]["end_offset"] == 0  # nothing was written


def test_a_console_on_every_interface_is_read_only_unless_told_otherwise(tmp_path: Path) -> None:
    for overrides, read_only in (({}, True), ({"console.read.only": "false"}, False)):
        broker = console_broker_process(tmp_path / f"data-{read_only}", **{"metrics.host": "0.0.0.0", "schema.registry.listeners": "-1", **overrides}).start()
        try:
            assert call(broker.console_url + "/api/info")[1]["read_only"] is read_only  # type: ignore[attr-defined]
        finally:
            broker.stop()


def test_failed_logins_are_slowed(tmp_path: Path) -> None:
    broker = sasl_console_broker(tmp_path)
    try:
        url = broker.console_url  # type: ignore[attr-defined]
        statuses = [post_login(url, "admin", f"guess-{i}")[0] for i in range(7)]
        assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
        assert post_login(url, "admin", "admin-secret")[0] == 429  # even the right password, for a while
    finally:
        broker.stop()
