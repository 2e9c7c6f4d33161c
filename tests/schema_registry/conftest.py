"""A broker with its schema registry on a free port (the registry is off in other tests)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.conftest import BrokerProcess, free_port


class RegistryBroker(BrokerProcess):
    def __init__(self, data_dir: Path, **overrides: str) -> None:
        self.registry_port = free_port()
        super().__init__(data_dir, {"schema.registry.listeners": f"http://127.0.0.1:{self.registry_port}", **overrides})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.registry_port}"

    def start(self, timeout: float = 30) -> "RegistryBroker":
        super().start(timeout)
        wait_for_registry(self.url, timeout)
        return self


def wait_for_registry(url: str, timeout: float = 30) -> None:
    """Until the registry answers (it reads `_schemas` to its end first)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/subjects", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the schema registry at {url} did not answer within {timeout}s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def registry_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryBroker]:
    process = RegistryBroker(tmp_path_factory.mktemp("registry") / "data").start()
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def close_registry_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """confluent-kafka's SchemaRegistryClient keeps its HTTP connections until closed (and
    warns when collected with them open): every one a test makes is closed after it."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    made: list = []
    original = SchemaRegistryClient.__init__

    def tracked(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(SchemaRegistryClient, "__init__", tracked)
    yield
    for client in made:
        client.close()


@pytest.fixture
def subject() -> str:
    return f"subject-{uuid.uuid4().hex[:8]}-value"


def round_trip(broker: RegistryBroker, topic: str, serializer, deserializer, values: list) -> list:
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for value in values:
        producer.produce(topic, value=serializer(value, SerializationContext(topic, MessageField.VALUE)))
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    out = []
    try:
        for _ in range(300):
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                out.append(deserializer(message.value(), SerializationContext(topic, MessageField.VALUE)))
            if len(out) == len(values):
                break
    finally:
        consumer.close()
    return out
