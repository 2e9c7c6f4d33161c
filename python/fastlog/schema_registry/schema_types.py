"""Parsing and comparing schemas of each type the registry accepts.

A `ParsedSchema` has the text the registry stores and compares (`canonical`: the schema as
compact JSON, so whitespace does not make a new version) and answers whether it can read data
written with another schema of its type (`read_problems`). Compatibility levels are built from
that one question in `compatibility.py`.

- AVRO: Apache `avro` parses (named types of referenced schemas first) and its
  `ReaderWriterCompatibilityChecker` applies the Avro specification's schema resolution rules,
  which is what Confluent's registry checks.
- JSON: a JSON Schema document (`jsonschema` checks it against its metaschema); compatibility
  follows Confluent's documented rules for JSON Schema (`json_compatibility.py`).
- PROTOBUF: `.proto` text or a base64 serialized FileDescriptorProto; compatibility follows
  Confluent's rules for Protobuf (`protobuf_compatibility.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from fastlog.schema_registry import errors

AVRO = "AVRO"
JSON = "JSON"
PROTOBUF = "PROTOBUF"
SCHEMA_TYPES = (JSON, PROTOBUF, AVRO)  # as Confluent lists them


@dataclass(frozen=True)
class Reference:
    name: str
    subject: str
    version: int

    def to_json(self) -> dict:
        return {"name": self.name, "subject": self.subject, "version": self.version}


@dataclass
class ParsedSchema:
    schema_type: str
    canonical: str  # what is stored and compared
    parsed: Any  # the type's own parsed form
    read_problems_fn: Callable[["ParsedSchema", "ParsedSchema"], list[str]]

    def read_problems(self, writer: "ParsedSchema") -> list[str]:
        """Why data written with `writer` cannot be read with this schema (empty: it can)."""
        if writer.schema_type != self.schema_type:
            return [f"the schema type changed from {writer.schema_type} to {self.schema_type}"]
        return self.read_problems_fn(self, writer)


def compact_json(document: Any, *, sort_keys: bool = False) -> str:
    return json.dumps(document, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=False)


def parse(schema_type: str, text: str, referenced: Sequence[tuple[str, "ParsedSchema"]] = (), *, normalize: bool = False) -> ParsedSchema:
    """The parsed schema; `referenced` are (name, parsed) of the schemas it references, in
    dependency order. Raises RegistryError 42201 when the text is not a valid schema."""
    try:
        return _parse(schema_type, text, referenced, normalize)
    except RecursionError:
        raise errors.invalid_schema(f"of type {schema_type}, details: nested too deeply") from None


def _parse(schema_type: str, text: str, referenced: Sequence[tuple[str, "ParsedSchema"]], normalize: bool) -> ParsedSchema:
    if schema_type == AVRO:
        return _parse_avro(text, referenced, normalize)
    if schema_type == JSON:
        return _parse_json(text, normalize)
    if schema_type == PROTOBUF:
        return _parse_protobuf(text)
    raise errors.invalid_schema(f"of type {schema_type}: this registry accepts {', '.join(SCHEMA_TYPES)}")


# -- Avro -----------------------------------------------------------------------------------------


def _parse_avro(text: str, referenced: Sequence[tuple[str, ParsedSchema]], normalize: bool) -> ParsedSchema:
    import avro.errors
    import avro.name
    import avro.schema

    document = _json_document(text)
    names = avro.name.Names()
    try:
        for _, reference in referenced:
            avro.schema.make_avsc_object(json.loads(reference.canonical), names)
        schema = avro.schema.make_avsc_object(document, names)
    except (avro.errors.AvroException, TypeError, ValueError, KeyError, AttributeError) as e:
        raise errors.invalid_schema(f"{text[:200]}, details: {e}") from None
    if referenced:  # to_json() would write the referenced types out in full: kept as sent
        canonical = compact_json(document, sort_keys=normalize)
    else:
        canonical = compact_json(_avro_ordered(schema.to_json()), sort_keys=normalize)
    return ParsedSchema(AVRO, canonical, schema, _avro_read_problems)


# Avro's Java library writes a schema's attributes in this order (Schema.toString()), which is
# the identity Confluent compares: the same schema with its keys in another order, extra
# whitespace or {"type": "string"} for "string" is the same schema.
_AVRO_KEY_ORDER = ("type", "name", "namespace", "doc", "fields", "symbols", "items", "values", "size", "default", "order", "aliases")
_AVRO_FIELD_ORDER = ("name", "type", "doc", "default", "order", "aliases")


def _avro_ordered(node: Any, is_field: bool = False) -> Any:
    if isinstance(node, list):
        return [_avro_ordered(item) for item in node]
    if not isinstance(node, dict):
        return node
    order = _AVRO_FIELD_ORDER if is_field else _AVRO_KEY_ORDER
    out = {}
    for key in [k for k in order if k in node] + [k for k in node if k not in order]:
        value = node[key]
        if key == "fields" and isinstance(value, list):
            out[key] = [_avro_ordered(f, is_field=True) for f in value]
        elif key in ("type", "items", "values"):
            out[key] = _avro_ordered(value)
        else:
            out[key] = value
    return out


_AVRO_DESCRIPTIONS = {
    "reader_field_missing_default_value": "The field '{info}' at path '{path}' in the new schema has no default value and is missing in the old schema",
    "type_mismatch": "The type (path '{path}') of a field in the new schema does not match with the old schema",
    "name_mismatch": "The name of the schema has changed (path '{path}')",
    "missing_enum_symbols": "The new schema is missing enum symbols '{info}' at path '{path}' in the old schema",
    "missing_union_branch": "The new schema is missing a type inside a union field at path '{path}' in the old schema",
    "fixed_size_mismatch": "The size of FIXED type field at path '{path}' in the new schema does not match with the old schema",
}


def _avro_read_problems(reader: ParsedSchema, writer: ParsedSchema) -> list[str]:
    """Confluent's entries: {errorType:'...', description:'...', additionalInfo:'...'}."""
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

    result = ReaderWriterCompatibilityChecker().get_compatibility(reader.parsed, writer.parsed)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = [k.value for k in result.incompatibilities or []] or ["type_mismatch"]
    info = ", ".join(sorted(str(m) for m in result.messages or []))
    path = ", ".join(sorted(result.locations or [])) or "/"
    return [
        f"{{errorType:'{kind.upper()}', description:'{_AVRO_DESCRIPTIONS.get(kind, kind).format(info=info, path=path)}', additionalInfo:'{info}'}}"
        for kind in dict.fromkeys(kinds)
    ]


# -- JSON Schema ----------------------------------------------------------------------------------


def _parse_json(text: str, normalize: bool) -> ParsedSchema:
    import jsonschema
    import jsonschema.exceptions

    document = _json_document(text)
    if not isinstance(document, (dict, bool)):
        raise errors.invalid_schema(f"{text[:200]}, details: a JSON Schema is an object or a boolean")
    try:
        jsonschema.validators.validator_for(document, default=jsonschema.Draft7Validator).check_schema(document)
    except jsonschema.exceptions.SchemaError as e:
        raise errors.invalid_schema(f"{text[:200]}, details: {e.message}") from None
    from fastlog.schema_registry.json_compatibility import read_problems

    return ParsedSchema(JSON, compact_json(document, sort_keys=normalize), document, lambda r, w: read_problems(r.parsed, w.parsed))


# -- Protobuf -------------------------------------------------------------------------------------


def _parse_protobuf(text: str) -> ParsedSchema:
    from fastlog.schema_registry import protobuf_compatibility as proto

    try:
        parsed = proto.parse_proto(text)
    except proto.ProtoError as e:
        raise errors.invalid_schema(f"of type PROTOBUF, details: {e}") from None
    return ParsedSchema(PROTOBUF, text.strip(), parsed, lambda r, w: proto.read_problems(r.parsed, w.parsed))


def _json_document(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise errors.invalid_schema(f"{text[:200]}, details: not JSON ({e})") from None


def schema_type_of(value: Optional[str]) -> str:
    return (value or AVRO).upper()
