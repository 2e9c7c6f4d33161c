"""The schema registry on a cluster: every broker runs one over the same `_schemas` (replicated),
a schema registered through one is known to the others, and a validated topic with
replication factor 3 takes acks=all records (pipelined: the answer waits for the ISR while the
connection reads on) and refuses unframed ones."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.cluster.helpers import Cluster, agreed, wait_for
from tests.conftest import free_port
from tests.schema_registry.conftest import wait_for_registry

SCHEMA = json.dumps({"type": "record", "name": "Replicated", "fields": [{"name": "n", "type": "int"}]})


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, list[str]]]:
    cluster = Cluster(Path(tmp_path_factory.mktemp("registry-cluster")))
    urls = []
    for node in cluster.nodes.values():
        port = free_port()
        node.overrides["schema.registry.listeners"] = f"http://127.0.0.1:{port}"
        urls.append(f"http://127.0.0.1:{port}")
    cluster.start()
    try:
        wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the cluster settles")
        for url in urls:
            wait_for_registry(url, 60)
        yield cluster, urls
    finally:
        cluster.stop()


def test_every_broker_serves_the_same_schemas(registries) -> None:
    cluster, urls = registries
    with SchemaRegistryClient({"url": urls[0]}) as client:
        schema_id = client.register_schema("shared-value", Schema(SCHEMA, "AVRO"))
    deadline = time.monotonic() + 30
    for url in urls[1:]:
        while httpx.get(f"{url}/schemas/ids/{schema_id}").status_code != 200:
            assert time.monotonic() < deadline, f"{url} did not learn schema {schema_id}"
            time.sleep(0.05)
    topic = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics("_schemas", timeout=10).topics["_schemas"]
    assert len(topic.partitions) == 1 and len(topic.partitions[0].replicas) == 3


def test_a_validated_replicated_topic_takes_acks_all(registries) -> None:
    cluster, urls = registries
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    configs = {"confluent.value.schema.validation": "true", "min.insync.replicas": "2"}
    admin.create_topics([NewTopic("validated-rf3", 3, 3, config=configs)])["validated-rf3"].result(30)
    wait_for(lambda: all(p.leader >= 0 for p in admin.list_topics("validated-rf3", timeout=5).topics["validated-rf3"].partitions.values()), "leaders")
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 5})
    errors: list = []
    context = SerializationContext("validated-rf3", MessageField.VALUE)
    with SchemaRegistryClient({"url": urls[1]}) as client:
        serializer = AvroSerializer(client, SCHEMA)
        values = [serializer({"n": n}, context) for n in range(300)]
    for value in values:
        producer.produce("validated-rf3", value=value, on_delivery=lambda e, m: errors.append(e))
    assert producer.flush(60) == 0
    assert errors == [None] * 300
    # alone in its batch: a batch is refused whole, as Kafka refuses it
    producer.produce("validated-rf3", value=b"unframed", partition=0, on_delivery=lambda e, m: errors.append(e))
    assert producer.flush(60) == 0
    assert errors[300] is not None and errors[300].code() == KafkaError.INVALID_RECORD
