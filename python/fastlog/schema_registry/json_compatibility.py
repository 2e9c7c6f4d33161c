"""Whether a JSON Schema (the reader) accepts every document another one (the writer) accepts,
after Confluent's documented rules for JSON Schema compatibility: a change is backward
compatible when the new schema accepts all data the old one did.

Open and closed content models decide what adding or removing a property means: a schema
without `"additionalProperties": false` is open (any other property may appear, of any type),
so a property added to an open reader must accept anything, and a property removed from a
closed reader is a document it would refuse.

Each rule is a function over one keyword family; `read_problems` returns one line per
difference that breaks reading, named as Confluent names it (e.g. `TYPE_NARROWED`,
`REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL`).
"""

from __future__ import annotations

from typing import Any, Optional

Schema = Any  # a dict or a boolean


def read_problems(reader: Schema, writer: Schema, path: str = "#") -> list[str]:
    if reader is True or reader == {}:
        return []
    if writer is False:
        return []
    if reader is False:
        return [f"SCHEMA_NARROWED at {path}: the new schema accepts nothing"]
    if writer is True or writer == {}:
        return [f"SCHEMA_NARROWED at {path}: the old schema accepted anything"]
    if not isinstance(reader, dict) or not isinstance(writer, dict):
        return [] if reader == writer else [f"SCHEMA_CHANGED at {path}"]
    if "$ref" in reader or "$ref" in writer:
        return [] if reader.get("$ref") == writer.get("$ref") else [f"REFERENCE_CHANGED at {path}"]
    problems = _types(reader, writer, path)
    if problems:
        return problems
    for rule in (_enum, _numbers, _strings, _arrays, _objects, _combined):
        problems += rule(reader, writer, path)
    return problems


def _type_set(schema: dict) -> Optional[set[str]]:
    declared = schema.get("type")
    if declared is None:
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def _types(reader: dict, writer: dict, path: str) -> list[str]:
    reader_types, writer_types = _type_set(reader), _type_set(writer)
    if reader_types is None:
        return []
    if writer_types is None:
        return [f"TYPE_NARROWED at {path}: the new schema restricts the type to {sorted(reader_types)}"]
    missing = {t for t in writer_types if t not in reader_types and not (t == "integer" and "number" in reader_types)}
    if missing:
        return [f"TYPE_NARROWED at {path}: {sorted(missing)} no longer accepted"]
    return []


def _enum(reader: dict, writer: dict, path: str) -> list[str]:
    problems = []
    if "enum" in reader:
        if "enum" not in writer:
            problems.append(f"ENUM_ARRAY_NARROWED at {path}: an enum was added")
        elif any(value not in reader["enum"] for value in writer["enum"]):
            problems.append(f"ENUM_ARRAY_NARROWED at {path}")
    if "const" in reader and reader.get("const") != writer.get("const", object()):
        problems.append(f"CONST_CHANGED at {path}")
    return problems


def _narrowed_limit(reader: dict, writer: dict, key: str, lower: bool) -> bool:
    """Whether a limit (a minimum when `lower`, else a maximum) excludes more than before."""
    if key not in reader:
        return False
    if key not in writer:
        return True
    return reader[key] > writer[key] if lower else reader[key] < writer[key]


_NUMBER_LIMITS = {"minimum": True, "exclusiveMinimum": True, "maximum": False, "exclusiveMaximum": False}
_STRING_LIMITS = {"minLength": True, "maxLength": False}
_ARRAY_LIMITS = {"minItems": True, "maxItems": False}
_OBJECT_LIMITS = {"minProperties": True, "maxProperties": False}


def _limits(reader: dict, writer: dict, path: str, limits: dict[str, bool]) -> list[str]:
    return [
        f"{key.upper()}_{'INCREASED' if lower else 'DECREASED'} at {path}"
        for key, lower in limits.items() if _narrowed_limit(reader, writer, key, lower)
    ]


def _numbers(reader: dict, writer: dict, path: str) -> list[str]:
    problems = _limits(reader, writer, path, _NUMBER_LIMITS)
    if "multipleOf" in reader:
        step, old = reader["multipleOf"], writer.get("multipleOf")
        if old is None or not _divides(step, old):
            problems.append(f"MULTIPLE_OF_CHANGED at {path}")
    return problems


def _divides(step: float, value: float) -> bool:
    try:
        quotient = value / step
    except ZeroDivisionError:
        return False
    return abs(quotient - round(quotient)) < 1e-9


def _strings(reader: dict, writer: dict, path: str) -> list[str]:
    problems = _limits(reader, writer, path, _STRING_LIMITS)
    if "pattern" in reader and reader["pattern"] != writer.get("pattern"):
        problems.append(f"PATTERN_{'ADDED' if 'pattern' not in writer else 'CHANGED'} at {path}")
    return problems


def _arrays(reader: dict, writer: dict, path: str) -> list[str]:
    problems = _limits(reader, writer, path, _ARRAY_LIMITS)
    if reader.get("uniqueItems") and not writer.get("uniqueItems"):
        problems.append(f"UNIQUE_ITEMS_ADDED at {path}")
    reader_items, writer_items = reader.get("items", True), writer.get("items", True)
    if isinstance(reader_items, list) or isinstance(writer_items, list):  # tuples: position by position
        reader_list = reader_items if isinstance(reader_items, list) else []
        writer_list = writer_items if isinstance(writer_items, list) else []
        for i in range(max(len(reader_list), len(writer_list))):
            r = reader_list[i] if i < len(reader_list) else reader.get("additionalItems", True)
            w = writer_list[i] if i < len(writer_list) else writer.get("additionalItems", True)
            problems += read_problems(r, w, f"{path}/items/{i}")
    else:
        problems += read_problems(reader_items, writer_items, f"{path}/items")
    return problems


def _open(schema: dict) -> bool:
    return schema.get("additionalProperties", True) is not False


def _objects(reader: dict, writer: dict, path: str) -> list[str]:
    problems = _limits(reader, writer, path, _OBJECT_LIMITS)
    reader_properties, writer_properties = reader.get("properties", {}), writer.get("properties", {})
    reader_extra, writer_extra = reader.get("additionalProperties", True), writer.get("additionalProperties", True)
    for name, written in writer_properties.items():
        if name in reader_properties:
            problems += read_problems(reader_properties[name], written, f"{path}/properties/{name}")
        elif not _open(reader):
            problems.append(f"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL at {path}/properties/{name}")
        else:
            problems += read_problems(reader_extra, written, f"{path}/properties/{name}")
    for name, read in reader_properties.items():
        if name not in writer_properties and _open(writer):
            # the old schema let this name hold anything its additionalProperties allow
            if read_problems(read, writer_extra):
                problems.append(f"PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL at {path}/properties/{name}")
    added_required = set(reader.get("required", [])) - set(writer.get("required", []))
    for name in sorted(added_required):
        if isinstance(reader_properties.get(name), dict) and "default" in reader_properties[name]:
            continue  # old data without it reads with the default
        kind = "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL" if name not in writer_properties else "REQUIRED_ATTRIBUTE_ADDED"
        problems.append(f"{kind} at {path}/required/{name}")
    if _open(writer) and not _open(reader):
        problems.append(f"ADDITIONAL_PROPERTIES_REMOVED at {path}")
    elif isinstance(reader_extra, dict) and reader_extra:
        problems += [p.replace("SCHEMA_", "ADDITIONAL_PROPERTIES_", 1) for p in read_problems(reader_extra, writer_extra, f"{path}/additionalProperties")]
    return problems


def _combined(reader: dict, writer: dict, path: str) -> list[str]:
    problems = []
    for keyword in ("oneOf", "anyOf"):
        if keyword not in reader:
            continue
        written = writer.get(keyword, [writer_without(writer, keyword)])
        for i, branch in enumerate(written):
            if not any(not read_problems(r, branch) for r in reader[keyword]):
                problems.append(f"COMBINED_TYPE_SUBSCHEMAS_CHANGED at {path}/{keyword}/{i}")
    if "allOf" in reader:
        writer_all = writer.get("allOf", [])
        for i, branch in enumerate(reader["allOf"]):
            if not any(not read_problems(branch, w) for w in writer_all or [writer_without(writer, "allOf")]):
                problems.append(f"COMBINED_TYPE_SUBSCHEMAS_CHANGED at {path}/allOf/{i}")
    return problems


def writer_without(schema: dict, keyword: str) -> dict:
    return {k: v for k, v in schema.items() if k != keyword}
