"""Protobuf schemas: confluent-kafka's ProtobufSerializer/Deserializer through fastlog (it
registers a base64 FileDescriptorProto and reads it back with format=serialized), `.proto` text
over HTTP, and Confluent's Protobuf compatibility rules, one row per rule."""

from __future__ import annotations

import httpx
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from tests.schema_registry.conftest import RegistryBroker, round_trip


def order_class():
    """A message class built from a descriptor here (no protoc): package shop, message Order."""
    file = descriptor_pb2.FileDescriptorProto(name="shop_order_test.proto", package="shop", syntax="proto3")
    message = file.message_type.add(name="Order")
    message.field.add(name="id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    message.field.add(name="items", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))


def test_protobuf_records_round_trip_through_fastlog(registry_broker: RegistryBroker, unique_topic: str) -> None:
    Order = order_class()
    registry = SchemaRegistryClient({"url": registry_broker.url})
    serializer = ProtobufSerializer(Order, registry, {"use.deprecated.format": False})
    deserializer = ProtobufDeserializer(Order, {"use.deprecated.format": False})
    read = round_trip(registry_broker, unique_topic, serializer, deserializer, [Order(id=i, items=["x"] * i) for i in range(5)])
    assert [(o.id, list(o.items)) for o in read] == [(i, ["x"] * i) for i in range(5)]
    latest = registry.get_latest_version(f"{unique_topic}-value")
    assert latest.schema.schema_type == "PROTOBUF"


V1 = 'syntax = "proto3"; package p; message M { int32 a = 1; string s = 2; oneof o { string x = 3; int64 y = 4; } }'


@pytest.mark.parametrize(
    ("new", "backward", "forward"),
    [
        ('syntax = "proto3"; package p; message M { int32 a = 1; string s = 2; oneof o { string x = 3; int64 y = 4; } bool b = 5; }', True, True),  # field added
        ('syntax = "proto3"; package p; message M { int32 a = 1; oneof o { string x = 3; int64 y = 4; } }', True, True),  # field removed
        ('syntax = "proto3"; package p; message M { int32 renamed = 1; string s = 2; oneof o { string x = 3; int64 y = 4; } }', True, True),  # renamed
        ('syntax = "proto3"; package p; message M { int64 a = 1; string s = 2; oneof o { string x = 3; int64 y = 4; } }', True, True),  # int32 -> int64: one group
        ('syntax = "proto3"; package p; message M { string a = 1; string s = 2; oneof o { string x = 3; int64 y = 4; } }', False, False),  # int32 -> string
        ('syntax = "proto3"; package p; message M { int32 a = 1; bytes s = 2; oneof o { string x = 3; int64 y = 4; } }', True, True),  # string -> bytes
        ('syntax = "proto3"; package q; message M { int32 a = 1; string s = 2; oneof o { string x = 3; int64 y = 4; } }', False, False),  # package changed
        ('syntax = "proto3"; package p; message M { int32 a = 1; string s = 2; oneof o { string x = 3; int64 y = 4; } } message N { int32 z = 1; }', True, False),  # message added
        ('syntax = "proto3"; package p; message M { int32 a = 1; string s = 2; oneof o { string x = 3; int64 y = 4; bool z = 5; } }', True, False),  # field added to a oneof
        ('syntax = "proto3"; package p; message M { int32 a = 1; string s = 2; oneof o { string x = 3; } }', False, True),  # field removed from a oneof
        ('syntax = "proto3"; package p; message M { int32 a = 1; oneof o { string x = 3; int64 y = 4; string s = 2; } }', False, True),  # field moved into a oneof
    ],
)
def test_protobuf_compatibility_rules(registry_broker: RegistryBroker, subject: str, new: str, backward: bool, forward: bool) -> None:
    with httpx.Client(base_url=registry_broker.url, timeout=30) as http:
        assert http.post(f"/subjects/{subject}/versions", json={"schema": V1, "schemaType": "PROTOBUF"}).status_code == 200
        for level, expected in (("BACKWARD", backward), ("FORWARD", forward)):
            http.put(f"/config/{subject}", json={"compatibility": level}).raise_for_status()
            answer = http.post(f"/compatibility/subjects/{subject}/versions/latest?verbose=true", json={"schema": new, "schemaType": "PROTOBUF"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["is_compatible"] is expected, (level, answer.json())


def test_an_invalid_proto_is_refused(registry_broker: RegistryBroker, subject: str) -> None:
    with httpx.Client(base_url=registry_broker.url, timeout=30) as http:
        answer = http.post(f"/subjects/{subject}/versions", json={"schema": "message {", "schemaType": "PROTOBUF"})
        assert (answer.status_code, answer.json()["error_code"]) == (422, 42201)
        text = http.post(f"/subjects/{subject}/versions", json={"schema": V1, "schemaType": "PROTOBUF"})
        assert text.status_code == 200
        got = http.get(f"/subjects/{subject}/versions/latest").json()
        assert got["schemaType"] == "PROTOBUF" and got["schema"] == V1


def test_a_text_schema_is_served_as_a_descriptor_for_format_serialized(registry_broker: RegistryBroker, subject: str) -> None:
    """What a Java producer registers (text), a Python consumer reads (format=serialized)."""
    import base64

    text = 'syntax = "proto3";\npackage shop;\nmessage Order {\n  int64 id = 1;\n  repeated string items = 2;\n  map<string, int32> counts = 3;\n  optional string note = 4;\n}\n'
    with httpx.Client(base_url=registry_broker.url, timeout=30) as http:
        schema_id = http.post(f"/subjects/{subject}/versions", json={"schema": text, "schemaType": "PROTOBUF"}).json()["id"]
        assert http.get(f"/schemas/ids/{schema_id}").json()["schema"] == text.strip()
        encoded = http.get(f"/schemas/ids/{schema_id}", params={"format": "serialized"}).json()["schema"]
        assert http.get(f"/subjects/{subject}/versions/1", params={"format": "serialized"}).json()["schema"] == encoded
    file = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(encoded))
    file.name = "served_order.proto"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    Served = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))
    message = Served(id=3, items=["x"], counts={"k": 1}, note="")
    assert message.HasField("note")  # proto3 optional kept its presence
    read = order_class().FromString(message.SerializeToString())  # the same wire format for the fields both know
    assert (read.id, list(read.items)) == (3, ["x"])
