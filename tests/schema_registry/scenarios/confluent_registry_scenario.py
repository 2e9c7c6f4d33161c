"""Run in an old confluent-kafka's own interpreter (argv: bootstrap, registry URL, topic):
register, produce Avro records through AvroSerializer, read them back with AvroDeserializer,
evolve the schema, and see a refusal. Prints one JSON line of results."""

import json
import sys

import confluent_kafka
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

bootstrap, url, topic = sys.argv[1:4]
V1 = {"type": "record", "name": "Old", "fields": [{"name": "n", "type": "int"}]}
V2 = {**V1, "fields": [*V1["fields"], {"name": "s", "type": "string", "default": ""}]}
BAD = {**V1, "fields": [*V1["fields"], {"name": "t", "type": "string"}]}
registry = SchemaRegistryClient({"url": url})
serializer = AvroSerializer(registry, json.dumps(V1))
producer = Producer({"bootstrap.servers": bootstrap})
for n in range(10):
    producer.produce(topic, value=serializer({"n": n}, SerializationContext(topic, MessageField.VALUE)))
assert producer.flush(30) == 0
deserializer = AvroDeserializer(registry)
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "old-client", "auto.offset.reset": "earliest"})
consumer.subscribe([topic])
read = []
for _ in range(300):
    message = consumer.poll(0.1)
    if message is not None and message.error() is None:
        read.append(deserializer(message.value(), SerializationContext(topic, MessageField.VALUE))["n"])
    if len(read) == 10:
        break
consumer.close()
evolved = registry.register_schema(f"{topic}-value", Schema(json.dumps(V2), "AVRO"))
try:
    registry.register_schema(f"{topic}-value", Schema(json.dumps(BAD), "AVRO"))
    refused = None
except SchemaRegistryError as e:
    refused = [e.http_status_code, e.error_code]
print(json.dumps({
    "version": confluent_kafka.version()[0],
    "read": read,
    "versions": registry.get_versions(f"{topic}-value"),
    "evolved_id": evolved,
    "refused": refused,
}))
