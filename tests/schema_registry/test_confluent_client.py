"""confluent-kafka's own SchemaRegistryClient and serializers against the built-in registry:
typed records produced through fastlog and read back, schema evolution at each level,
references, deletes, and ids that survive a restart."""

from __future__ import annotations

import json

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.schema_registry.conftest import RegistryBroker, round_trip

USER_V1 = {"type": "record", "name": "User", "namespace": "example", "fields": [{"name": "name", "type": "string"}]}
USER_V2 = {**USER_V1, "fields": [*USER_V1["fields"], {"name": "age", "type": "int", "default": 0}]}
USER_NO_DEFAULT = {**USER_V1, "fields": [*USER_V1["fields"], {"name": "email", "type": "string"}]}


def avro(document: dict) -> Schema:
    return Schema(json.dumps(document), "AVRO")


def client(broker: RegistryBroker) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": broker.url})


def against_all(broker: RegistryBroker, subject: str, document: dict) -> bool:
    answer = httpx.post(f"{broker.url}/compatibility/subjects/{subject}/versions", json={"schema": json.dumps(document)})
    assert answer.status_code == 200, answer.text
    return answer.json()["is_compatible"]


def test_avro_records_round_trip_through_fastlog(registry_broker: RegistryBroker, unique_topic: str) -> None:
    registry = client(registry_broker)
    serializer = AvroSerializer(registry, json.dumps(USER_V1))
    deserializer = AvroDeserializer(registry)
    values = [{"name": f"user-{i}"} for i in range(20)]
    assert round_trip(registry_broker, unique_topic, serializer, deserializer, values) == values
    latest = registry.get_latest_version(f"{unique_topic}-value")
    assert latest.version == 1
    assert json.loads(latest.schema.schema_str) == USER_V1
    # the wire format: magic byte 0, then the 4-byte id the registry gave
    payload = serializer({"name": "x"}, SerializationContext(unique_topic, MessageField.VALUE))
    assert payload[0] == 0 and int.from_bytes(payload[1:5], "big") == latest.schema_id


def test_json_records_round_trip_through_fastlog(registry_broker: RegistryBroker, unique_topic: str) -> None:
    registry = client(registry_broker)
    schema = {"type": "object", "properties": {"id": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["id"]}
    serializer = JSONSerializer(json.dumps(schema), registry)
    deserializer = JSONDeserializer(json.dumps(schema), schema_registry_client=registry)
    values = [{"id": i, "tags": ["a"] * i} for i in range(5)]
    assert round_trip(registry_broker, unique_topic, serializer, deserializer, values) == values
    assert registry.get_latest_version(f"{unique_topic}-value").schema.schema_type == "JSON"


def test_same_schema_same_id_new_schema_next_version(registry_broker: RegistryBroker, subject: str) -> None:
    registry = client(registry_broker)
    first = registry.register_schema(subject, avro(USER_V1))
    assert registry.register_schema(subject, avro(USER_V1)) == first
    # whitespace does not make another schema
    assert registry.register_schema(subject, Schema(json.dumps(USER_V1, indent=4), "AVRO")) == first
    second = registry.register_schema(subject, avro(USER_V2))
    assert second > first
    assert registry.get_versions(subject) == [1, 2]
    # the same schema under another subject keeps its id
    assert registry.register_schema(f"{subject}-other", avro(USER_V1)) == first
    found = registry.lookup_schema(subject, avro(USER_V2))
    assert (found.schema_id, found.version) == (second, 2)


@pytest.mark.parametrize(
    ("level", "old", "new", "accepted"),
    [
        ("BACKWARD", USER_V1, USER_V2, True),  # a field with a default: old data is readable
        ("BACKWARD", USER_V1, USER_NO_DEFAULT, False),  # old data lacks the field
        ("FORWARD", USER_V1, USER_NO_DEFAULT, True),  # old readers ignore the new field
        ("FORWARD", USER_V2, USER_V1, True),  # old readers fill in the default
        ("FORWARD", USER_NO_DEFAULT, USER_V1, False),  # old readers need "email"
        ("FULL", USER_V1, USER_V2, True),
        ("FULL", USER_V1, USER_NO_DEFAULT, False),
        ("NONE", USER_V1, {"type": "string"}, True),
        ("BACKWARD", USER_V1, {"type": "string"}, False),
    ],
)
def test_compatibility_levels(registry_broker: RegistryBroker, subject: str, level: str, old: dict, new: dict, accepted: bool) -> None:
    registry = client(registry_broker)
    registry.set_compatibility(subject, level)
    registry.register_schema(subject, avro(old))
    assert registry.test_compatibility(subject, avro(new)) is accepted
    if accepted:
        registry.register_schema(subject, avro(new))
    else:
        with pytest.raises(SchemaRegistryError) as refused:
            registry.register_schema(subject, avro(new))
        assert (refused.value.http_status_code, refused.value.error_code) == (409, 40901)


def test_transitive_checks_every_earlier_version(registry_broker: RegistryBroker, subject: str) -> None:
    """v1 {name}; v2 adds age with a default; v3 drops age's default. v3 reads v2's data
    (age is there) but not v1's: BACKWARD accepts it, BACKWARD_TRANSITIVE does not."""
    v3 = {**USER_V1, "fields": [*USER_V1["fields"], {"name": "age", "type": "int"}]}
    registry = client(registry_broker)
    registry.set_compatibility(subject, "BACKWARD_TRANSITIVE")
    registry.register_schema(subject, avro(USER_V1))
    registry.register_schema(subject, avro(USER_V2))
    # against "latest" only (what the client asks), against every version the level names
    assert registry.test_compatibility(subject, avro(v3)) is True
    assert against_all(registry_broker, subject, v3) is False
    with pytest.raises(SchemaRegistryError):
        registry.register_schema(subject, avro(v3))
    registry.set_compatibility(subject, "BACKWARD")
    assert against_all(registry_broker, subject, v3) is True
    registry.register_schema(subject, avro(v3))
    assert registry.get_versions(subject) == [1, 2, 3]


def test_avro_references(registry_broker: RegistryBroker, subject: str) -> None:
    registry = client(registry_broker)
    address = {"type": "record", "name": "Address", "namespace": "example", "fields": [{"name": "city", "type": "string"}]}
    registry.register_schema(f"{subject}-address", avro(address))
    person = {"type": "record", "name": "Person", "namespace": "example", "fields": [{"name": "home", "type": "example.Address"}]}
    schema = Schema(json.dumps(person), "AVRO", [SchemaReference("example.Address", f"{subject}-address", 1)])
    person_id = registry.register_schema(subject, schema)
    fetched = registry.get_schema(person_id)
    assert [r.name for r in fetched.references] == ["example.Address"]
    # a schema others reference is not deleted
    with pytest.raises(SchemaRegistryError) as refused:
        registry.delete_version(f"{subject}-address", 1)
    assert refused.value.error_code == 42206
    # an unknown type without its reference is not a schema
    with pytest.raises(SchemaRegistryError) as invalid:
        registry.register_schema(f"{subject}-2", avro(person))
    assert (invalid.value.http_status_code, invalid.value.error_code) == (422, 42201)


def test_soft_then_hard_delete(registry_broker: RegistryBroker, subject: str) -> None:
    registry = client(registry_broker)
    v1 = {**USER_V1, "name": "Deleted"}  # a schema no other subject has (ids are per schema)
    first = registry.register_schema(subject, avro(v1))
    registry.register_schema(subject, avro({**USER_V2, "name": "Deleted"}))
    assert registry.delete_version(subject, 2) == 2
    assert registry.get_versions(subject) == [1]
    with pytest.raises(SchemaRegistryError) as not_soft:
        registry.delete_subject(subject, permanent=True)
    assert not_soft.value.error_code == 40405
    assert registry.delete_subject(subject) == [1]
    assert subject not in registry.get_subjects()
    with pytest.raises(SchemaRegistryError) as gone:
        registry.get_latest_version(subject)
    assert gone.value.error_code == 40401
    # a soft-deleted schema's id still reads (deserializers of old records need it) ...
    assert json.loads(client(registry_broker).get_schema(first).schema_str) == v1
    assert registry.delete_subject(subject, permanent=True) == [1, 2]
    # ... a hard-deleted one does not, and is never given again
    with pytest.raises(SchemaRegistryError) as unknown:
        client(registry_broker).get_schema(first)
    assert unknown.value.error_code == 40403
    assert registry.register_schema(subject, avro(v1)) > first + 1


def test_ids_survive_a_restart(tmp_path, subject: str) -> None:
    broker = RegistryBroker(tmp_path / "data").start()
    try:
        registry = client(broker)
        first = registry.register_schema(subject, avro(USER_V1))
        second = registry.register_schema(subject, avro(USER_V2))
        broker.restart()
        from tests.schema_registry.conftest import wait_for_registry

        wait_for_registry(broker.url)
        again = client(broker)
        assert json.loads(again.get_schema(second).schema_str) == USER_V2
        assert again.register_schema(subject, avro(USER_V1)) == first
        assert again.register_schema(f"{subject}-new", avro({"type": "enum", "name": "E", "symbols": ["A"]})) == second + 1
    finally:
        broker.stop()
