"""Broker-side schema validation (Confluent Server's `confluent.value.schema.validation` and
`confluent.key.schema.validation`): a record produced to such a topic must carry, in the
serializers' wire format, the magic byte 0 and the id of a schema registered under the topic's
subject (`<topic>-value`, `<topic>-key`: the serializers' default TopicNameStrategy). A batch
with a record that does not is refused whole with INVALID_RECORD, naming the records. A null
value (a tombstone) or key passes.

The Rust core walks the records (`_core.schema_ids`) and hands back each distinct id once, so
the registry is asked once per id, not per record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from fastlog import _core

if TYPE_CHECKING:
    from fastlog.schema_registry.registry import SchemaRegistry

PARTS = ("key", "value")


def registered(registry: "SchemaRegistry", subject: str, number: int) -> bool:
    versions = registry.state.subjects.get(subject, {})
    return any(e.id == number and not e.deleted for e in versions.values())


def failing(registry: "SchemaRegistry", topic: str, found: tuple) -> list[tuple[int, str, bool]]:
    """(record index, why, whether it names an id) of what fails, from `_core.schema_ids`."""
    unframed, ids = found
    out = [(index, f"the {PARTS[part]} does not start with a schema id (magic byte 0 and 4 bytes)", False) for index, part in unframed]
    for part, number, first in ids:
        subject = f"{topic}-{PARTS[part]}"
        if not registered(registry, subject, number):
            out.append((first, f"schema id {number} of the {PARTS[part]} is not registered under {subject}", True))
    return out


CATCH_UP_SECONDS = 2.0  # how long a Produce with an id not known yet waits for the registry


async def refusal(registry: Optional["SchemaRegistry"], topic: str, records: bytes, keys: bool, values: bool,
                  max_batch_bytes: int = 1 << 30) -> Optional[tuple[str, list[tuple[int, str]]]]:
    """None when every record passes, else (message, [(record index, why)]). An id not known
    yet may have been registered a moment ago through another registry: the topic is read up
    to its end once before the answer. Records that cannot be read are left to the append,
    which refuses them with its own error."""
    if registry is None:
        return "schema validation is on for this topic but this broker runs no schema registry (schema.registry.listeners)", []
    try:
        found = _core.schema_ids(records, keys, values, max_batch_bytes)
    except _core.StorageError:
        return None
    problems = failing(registry, topic, found)
    if any(names_id for _, _, names_id in problems):
        try:
            await registry.catch_up(CATCH_UP_SECONDS)
        except Exception:  # the registry cannot read its topic now: decide on what it has
            pass
        problems = failing(registry, topic, found)
    if not problems:
        return None
    problems.sort()
    return f"{len(problems)} record(s) failed schema validation: {problems[0][1]}", [(index, why) for index, why, _ in problems]
