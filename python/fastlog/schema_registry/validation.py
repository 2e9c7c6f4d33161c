"""Broker-side schema validation (Confluent Server's `confluent.value.schema.validation` and
`confluent.key.schema.validation`): a record produced to such a topic must carry, in the
serializers' wire format, the magic byte 0 and the id of a schema registered under the topic's
subject (`<topic>-value`, `<topic>-key`: the serializers' default TopicNameStrategy). A batch
with a record that does not is refused whole with INVALID_RECORD, naming the records. A null
value (a tombstone) or key passes.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Optional

from fastlog.records import CorruptRecordsError, decode_batches

if TYPE_CHECKING:
    from fastlog.schema_registry.registry import SchemaRegistry

MAGIC = 0
SCHEMA_ID = struct.Struct(">bI")


def schema_id(data: bytes) -> Optional[int]:
    """The id in the serializers' 5-byte header, or None when there is none."""
    if len(data) < SCHEMA_ID.size:
        return None
    magic, number = SCHEMA_ID.unpack_from(data)
    return number if magic == MAGIC else None


def registered(registry: "SchemaRegistry", subject: str, number: int) -> bool:
    versions = registry.state.subjects.get(subject, {})
    return any(e.id == number and not e.deleted for e in versions.values())


def unframed(registry: "SchemaRegistry", topic: str, records: bytes, keys: bool, values: bool) -> list[tuple[int, str, Optional[int]]]:
    """(index in its batch, why, id) of each record that fails; empty when all pass. Records
    that cannot be read are left to the append, which refuses them with its own error."""
    try:
        batches = decode_batches(records)
    except CorruptRecordsError:
        return []
    failing = []
    for batch in batches:
        if batch.is_control:
            continue
        for index, record in enumerate(batch.records):
            for part, data, checked in (("key", record.key, keys), ("value", record.value, values)):
                if not checked or data is None:
                    continue
                number = schema_id(data)
                subject = f"{topic}-{part}"
                if number is None:
                    failing.append((index, f"the {part} does not start with a schema id (magic byte 0 and 4 bytes)", None))
                elif not registered(registry, subject, number):
                    failing.append((index, f"schema id {number} of the {part} is not registered under {subject}", number))
    return failing


async def refusal(registry: Optional["SchemaRegistry"], topic: str, records: bytes, keys: bool, values: bool) -> Optional[tuple[str, list[tuple[int, str]]]]:
    """None when every record passes, else (message, [(record index, why)]). An id not known
    yet may have been registered a moment ago through another registry: the topic is read up
    to its end once before the answer."""
    if registry is None:
        return "schema validation is on for this topic but this broker runs no schema registry (schema.registry.listeners)", []
    failing = unframed(registry, topic, records, keys, values)
    if any(number is not None for _, _, number in failing):
        try:
            await registry.catch_up()
        except Exception:  # the registry cannot read its topic now: decide on what it has
            pass
        failing = unframed(registry, topic, records, keys, values)
    if not failing:
        return None
    return f"{len(failing)} record(s) failed schema validation: {failing[0][1]}", [(index, why) for index, why, _ in failing]
