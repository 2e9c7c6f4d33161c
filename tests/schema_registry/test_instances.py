"""Several registries on one cluster (the built-in one and `fastlog schema-registry` alone)
agree: they apply the same `_schemas` topic in the same order; and the command line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.conftest import free_port
from tests.schema_registry.conftest import RegistryBroker, wait_for_registry


def record(name: str, fields: list[str]) -> str:
    return json.dumps({"type": "record", "name": name, "fields": [{"name": f, "type": "string", "default": ""} for f in fields]})


@pytest.fixture
def standalone(registry_broker: RegistryBroker, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path / "standalone.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "fastlog", "schema-registry", "--bootstrap-server", registry_broker.bootstrap,
         "--listeners", f"http://127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for_registry(f"http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        assert process.wait(30) == 0, (tmp_path / "standalone.log").read_text()
        log.close()


def eventually(check, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the registries did not agree in time"
        time.sleep(0.05)


def test_a_second_registry_reads_what_the_first_wrote(registry_broker: RegistryBroker, standalone: str, subject: str) -> None:
    first = httpx.post(f"{registry_broker.url}/subjects/{subject}/versions", json={"schema": record("A", ["a"])}).json()["id"]
    eventually(lambda: httpx.get(f"{standalone}/schemas/ids/{first}").status_code == 200)
    assert httpx.get(f"{standalone}/subjects/{subject}/versions/1").json()["id"] == first
    # and the other way round; the id the second registry gives is new to the first too
    second = httpx.post(f"{standalone}/subjects/{subject}/versions", json={"schema": record("A", ["a", "b"])}).json()["id"]
    assert second > first
    eventually(lambda: httpx.get(f"{registry_broker.url}/subjects/{subject}/versions").json() == [1, 2])


def test_concurrent_writers_on_two_registries_agree(registry_broker: RegistryBroker, standalone: str, subject: str) -> None:
    """Both register different schemas in one subject at once (compatibility off): every
    registration gets its own version and id, and both registries list the same."""
    httpx.put(f"{registry_broker.url}/config/{subject}", json={"compatibility": "NONE"}).raise_for_status()
    results: dict[str, int] = {}

    def write(url: str, prefix: str) -> None:
        with httpx.Client(timeout=30) as http:
            for i in range(10):
                answer = http.post(f"{url}/subjects/{subject}/versions", json={"schema": record(f"{prefix}{i}", ["x"])})
                assert answer.status_code == 200, answer.text
                results[f"{prefix}{i}"] = answer.json()["id"]

    threads = [threading.Thread(target=write, args=(url, prefix)) for url, prefix in ((registry_broker.url, "P"), (standalone, "Q"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 20 and len(set(results.values())) == 20
    eventually(lambda: httpx.get(f"{standalone}/subjects/{subject}/versions").json() == list(range(1, 21)))
    for url in (registry_broker.url, standalone):
        by_version = {httpx.get(f"{url}/subjects/{subject}/versions/{v}").json()["id"] for v in range(1, 21)}
        assert by_version == set(results.values())


def test_concurrent_registrations_of_one_schema_get_one_id(registry_broker: RegistryBroker, subject: str) -> None:
    ids = []

    def write() -> None:
        ids.append(httpx.post(f"{registry_broker.url}/subjects/{subject}/versions", json={"schema": record("Same", ["s"])}, timeout=30).json()["id"])

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(ids) == 8 and len(set(ids)) == 1
    assert httpx.get(f"{registry_broker.url}/subjects/{subject}/versions").json() == [1]


def fastlog(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastlog", *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_the_command_line(registry_broker: RegistryBroker, subject: str, tmp_path: Path) -> None:
    url = ["--url", registry_broker.url]
    schema_file = tmp_path / "v1.avsc"
    schema_file.write_text(record("Cli", ["a"]))
    registered = fastlog("schemas", "register", subject, str(schema_file), *url)
    assert registered.returncode == 0, registered.stderr
    assert "registered under" in registered.stdout
    listed = fastlog("schemas", "list", *url, "--json")
    assert any(row["subject"] == subject and row["version"] == 1 for row in json.loads(listed.stdout))
    shown = fastlog("schemas", "get", subject, *url)
    assert json.loads(shown.stdout) == json.loads(record("Cli", ["a"]))
    # a field without a default breaks BACKWARD: exit code 1 and the reason
    incompatible = json.dumps({"type": "record", "name": "Cli", "fields": [{"name": "a", "type": "string", "default": ""}, {"name": "b", "type": "int"}]})
    checked = fastlog("schemas", "check", subject, "-", *url, stdin=incompatible)
    assert checked.returncode == 1 and "incompatible" in checked.stdout and "READER_FIELD_MISSING_DEFAULT_VALUE" in checked.stdout
    refused = fastlog("schemas", "register", subject, "-", *url, stdin=incompatible)
    assert refused.returncode == 1 and "error code 409" in refused.stderr
    assert fastlog("schemas", "delete", subject, *url).returncode == 0
    assert fastlog("schemas", "delete", subject, "--permanent", *url).returncode == 0
    missing = fastlog("schemas", "get", subject, *url)
    assert missing.returncode == 1 and "40401" in missing.stderr
    unreachable = fastlog("schemas", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 1 and "cannot reach the schema registry" in unreachable.stderr


def test_a_taken_registry_port_leaves_the_broker_serving(tmp_path: Path) -> None:
    from tests.conftest import BrokerProcess

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = BrokerProcess(tmp_path / "data", {"schema.registry.listeners": f"http://127.0.0.1:{port}"}).start()
        try:
            from confluent_kafka.admin import AdminClient

            assert AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).brokers
            assert "schema registry not started: cannot listen on" in broker.log_text()
        finally:
            assert broker.stop() == 0


def test_garbage_in_the_schemas_topic_is_skipped(tmp_path: Path) -> None:
    """Any client can write to _schemas: records the registry cannot read are skipped, now
    and after a restart, and it goes on registering."""
    from confluent_kafka import Producer

    broker = RegistryBroker(tmp_path / "data").start()
    try:
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        for key, value in [
            (b'{"keytype":"SCHEMA","subject":"g","version":1e999,"magic":1}', b'{"subject":"g","version":1e999,"id":1e999,"schema":"x"}'),
            (b'{"keytype":"SCHEMA","subject":"g","version":[1],"magic":1}', b'{}'),
            (b'{"keytype":"SCHEMA","subject":"g","version":1,"magic":1}', b'{"subject":"g","version":1,"id":1099511627776,"schema":"\\"int\\""}'),
            (b"[" * 100_000, b"]"),
            (b"not json", b"\xff\xfe"),
            (b'{"keytype":"CONFIG","subject":5,"magic":0}', b'{"compatibilityLevel":"NONE"}'),
        ]:
            producer.produce("_schemas", key=key, value=value)
        assert producer.flush(30) == 0
        with httpx.Client(base_url=broker.url, timeout=30) as http:
            assert http.post("/subjects/after-garbage/versions", json={"schema": record("G", ["a"])}).json()["id"] == 1
        broker.restart()
        wait_for_registry(broker.url)
        with httpx.Client(base_url=broker.url, timeout=30) as http:
            assert http.get("/subjects").json() == ["after-garbage"]
            assert http.post("/subjects/after-garbage/versions", json={"schema": record("G", ["a", "b"])}).json()["id"] == 2
    finally:
        broker.stop()
