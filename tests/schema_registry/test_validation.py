"""Broker-side schema validation (confluent.value.schema.validation / confluent.key.schema.
validation on a topic): records not framed with an id registered under the topic's subject are
refused with INVALID_RECORD, whatever the client; framed ones, tombstones and other topics pass."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from kafka import KafkaProducer
from kafka.errors import KafkaError as KafkaPythonError

from tests.schema_registry.conftest import RegistryBroker

SCHEMA = json.dumps({"type": "record", "name": "Checked", "fields": [{"name": "n", "type": "int"}]})


def create(broker: RegistryBroker, topic: str, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=configs)])[topic].result(30)


def produce(broker: RegistryBroker, topic: str, value, key=None) -> KafkaError | None:
    """The delivery error of one record (None: stored)."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0, "enable.idempotence": False})
    errors: list = []
    producer.produce(topic, value=value, key=key, on_delivery=lambda e, m: errors.append(e))
    assert producer.flush(30) == 0
    return errors[0]


def framed(broker: RegistryBroker, topic: str, subject_topic: str | None = None) -> bytes:
    serializer = AvroSerializer(SchemaRegistryClient({"url": broker.url}), SCHEMA)
    return serializer({"n": 1}, SerializationContext(subject_topic or topic, MessageField.VALUE))


def test_values_must_carry_a_registered_schema_id(registry_broker: RegistryBroker, unique_topic: str) -> None:
    create(registry_broker, unique_topic, **{"confluent.value.schema.validation": "true"})
    assert produce(registry_broker, unique_topic, framed(registry_broker, unique_topic)) is None
    refused = produce(registry_broker, unique_topic, b"plain bytes")
    assert refused is not None and refused.code() == KafkaError.INVALID_RECORD
    # a schema id registered under another topic's subject only
    other = framed(registry_broker, f"{unique_topic}-other")
    assert produce(registry_broker, unique_topic, other[:1] + (99_999).to_bytes(4, "big") + other[5:]).code() == KafkaError.INVALID_RECORD
    assert produce(registry_broker, unique_topic, None, key=b"k") is None  # a tombstone passes


def test_keys_are_checked_only_when_asked(registry_broker: RegistryBroker, unique_topic: str) -> None:
    create(registry_broker, unique_topic, **{"confluent.key.schema.validation": "true"})
    assert produce(registry_broker, unique_topic, b"any value") is None  # no key: passes
    assert produce(registry_broker, unique_topic, b"any value", key=b"plain key").code() == KafkaError.INVALID_RECORD


def test_turned_on_and_off_with_alter_configs(registry_broker: RegistryBroker, unique_topic: str) -> None:
    create(registry_broker, unique_topic)
    assert produce(registry_broker, unique_topic, b"plain") is None
    admin = AdminClient({"bootstrap.servers": registry_broker.bootstrap})

    def set_validation(value: str) -> None:
        entry = ConfigEntry("confluent.value.schema.validation", value, incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource("topic", unique_topic, incremental_configs=[entry])
        admin.incremental_alter_configs([resource])[resource].result(30)

    set_validation("true")
    assert produce(registry_broker, unique_topic, b"plain").code() == KafkaError.INVALID_RECORD
    set_validation("false")
    assert produce(registry_broker, unique_topic, b"plain") is None


def test_kafka_python_gets_invalid_record(registry_broker: RegistryBroker, unique_topic: str) -> None:
    create(registry_broker, unique_topic, **{"confluent.value.schema.validation": "true"})
    producer = KafkaProducer(bootstrap_servers=registry_broker.bootstrap, retries=0)
    try:
        with pytest.raises(KafkaPythonError) as refused:
            producer.send(unique_topic, b"not framed").get(timeout=30)
        assert "InvalidRecord" in type(refused.value).__name__ or "INVALID_RECORD" in str(refused.value).upper()
        assert producer.send(unique_topic, framed(registry_broker, unique_topic)).get(timeout=30).offset >= 0
    finally:
        producer.close()


def test_a_broker_without_the_registry_refuses_with_a_reason(fresh_broker, unique_topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": fresh_broker.bootstrap})
    admin.create_topics([NewTopic(unique_topic, 1, 1, config={"confluent.value.schema.validation": "true"})])[unique_topic].result(30)
    producer = Producer({"bootstrap.servers": fresh_broker.bootstrap, "retries": 0})
    errors: list = []
    producer.produce(unique_topic, value=b"\x00\x00\x00\x00\x01x", on_delivery=lambda e, m: errors.append(e))
    producer.flush(30)
    assert errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD
    assert "runs no schema registry" in fresh_broker.log_text()


def test_bad_batches_to_a_validated_topic_get_an_error_and_the_broker_goes_on(registry_broker: RegistryBroker, unique_topic: str) -> None:
    """Bytes the validation walks before any other check: a batch length past the request's
    end, a record count no bytes could hold, a header cut short, a compressed batch of
    thousands of distinct ids. Each partition is refused (CORRUPT_MESSAGE or INVALID_RECORD)
    and the broker still answers."""
    import struct

    from fastlog import protocol
    from fastlog.records import Compression, Record, encode_batch
    from tests.broker.wire import WireClient

    create(registry_broker, unique_topic, **{"confluent.value.schema.validation": "true"})
    good = encode_batch([Record(0, 0, None, b"\x00\x00\x00\x00\x01x")])
    long = bytearray(good)
    struct.pack_into(">i", long, 8, 2**31 - 1)  # batch length
    many = bytearray(good[:61])
    struct.pack_into(">i", many, 8, 49)
    struct.pack_into(">i", many, 57, 2**31 - 1)  # record count
    ids = encode_batch([Record(i, 0, None, b"\x00" + i.to_bytes(4, "big")) for i in range(20_000)], compression=Compression.ZSTD)
    P = protocol.ProduceRequest
    with WireClient(registry_broker.bootstrap) as client:
        for records in (bytes(long), bytes(many), good[:30], ids):
            request = P(acks=1, timeout_ms=5000, topic_data=[P.TopicProduceData(name=unique_topic, partition_data=[P.PartitionProduceData(index=0, records=records)])])
            answer = client.request(request, 9)
            code = answer.responses[0].partition_responses[0].error_code
            assert code in (protocol.ErrorCode.CORRUPT_MESSAGE, protocol.ErrorCode.INVALID_RECORD), code
    assert produce(registry_broker, unique_topic, framed(registry_broker, unique_topic)) is None
