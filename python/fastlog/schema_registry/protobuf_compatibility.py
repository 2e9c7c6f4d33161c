"""Protobuf schemas: read from `.proto` text (proto-schema-parser) or from a base64 serialized
FileDescriptorProto (what confluent-kafka's ProtobufSerializer registers), brought to one model,
and compared after Confluent's rules for Protobuf compatibility (its diff's compatible changes):

- adding or removing a message type: a reader without a type the writer had cannot read it;
- fields match by number: adding or removing one is compatible unless it is `required`;
  renaming is; a type change is only within a wire-compatible group ({int32, int64, uint32,
  uint64, bool, enum}, {sint32, sint64}, {string, bytes}, {fixed32, sfixed32}, {fixed64,
  sfixed64}); repeated ↔ singular only where both labels are explicit (proto2);
- oneofs: a new field in an existing oneof, a oneof added or removed, and a field moved out of
  a oneof are compatible; a field moved into a oneof, or removed from one that stays, is not;
- enums: any change is compatible; the package must not change.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any, Optional

GROUPS = [{"int32", "int64", "uint32", "uint64", "bool", "enum"}, {"sint32", "sint64"}, {"string", "bytes"},
          {"fixed32", "sfixed32"}, {"fixed64", "sfixed64"}]
SCALARS = {"double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64",
           "sfixed32", "sfixed64", "bool", "string", "bytes"}
NUMERIC = SCALARS - {"string", "bytes"}
BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")
# FieldDescriptorProto.Type numbers → names
DESCRIPTOR_TYPES = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32", 8: "bool",
                    9: "string", 10: "group", 11: "message", 12: "bytes", 13: "uint32", 14: "enum", 15: "sfixed32",
                    16: "sfixed64", 17: "sint32", 18: "sint64"}
LABELS = {1: "optional", 2: "required", 3: "repeated"}


@dataclass
class ProtoField:
    name: str
    kind: str  # a scalar name, "enum", "map", or "message:<Name>"
    label: Optional[str]  # "optional", "required", "repeated", or None (proto3 implicit)
    oneof: Optional[str] = None


@dataclass
class ProtoMessage:
    fields: dict[int, ProtoField] = field(default_factory=dict)
    oneofs: set[str] = field(default_factory=set)


@dataclass
class ProtoFile:
    syntax: str
    package: str
    messages: dict[str, ProtoMessage] = field(default_factory=dict)  # by name within the file
    descriptor: Any = None  # the FileDescriptorProto, when given as one


class ProtoError(ValueError):
    pass


MAX_FIELD_NUMBER = 2**29 - 1


def parse_proto(text: str) -> ProtoFile:
    stripped = text.strip()
    if stripped and BASE64.fullmatch(stripped) and "syntax" not in stripped:
        parsed = _from_descriptor(stripped)
    else:
        parsed = _from_text(text)
    for name, message in parsed.messages.items():
        bad = [n for n in message.fields if not 1 <= n <= MAX_FIELD_NUMBER]
        if bad:
            raise ProtoError(f"message {name}: field number {bad[0]} is outside [1, {MAX_FIELD_NUMBER}]")
    return parsed


# -- from a serialized descriptor -----------------------------------------------------------------


def _from_descriptor(encoded: str) -> ProtoFile:
    from google.protobuf import descriptor_pb2
    from google.protobuf.message import DecodeError

    try:
        proto = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(encoded, validate=False))
    except (binascii.Error, DecodeError, ValueError) as e:
        raise ProtoError(f"not a base64 serialized FileDescriptorProto: {e}") from None
    if not proto.message_type and not proto.enum_type and not proto.name:
        raise ProtoError("an empty FileDescriptorProto")
    out = ProtoFile(proto.syntax or "proto2", proto.package, descriptor=proto)
    for message in proto.message_type:
        _add_descriptor_message(out, message, "", proto.syntax or "proto2")
    return out


def _add_descriptor_message(out: ProtoFile, message: Any, prefix: str, syntax: str) -> None:
    name = prefix + message.name
    maps = {f"{name}.{nested.name}": nested for nested in message.nested_type if nested.options.map_entry}
    model = ProtoMessage()
    real_oneofs = [o.name for o in message.oneof_decl]
    for f in message.field:
        kind = DESCRIPTOR_TYPES.get(f.type, "unknown")
        type_name = f.type_name.lstrip(".")
        if out.package and type_name.startswith(out.package + "."):
            type_name = type_name[len(out.package) + 1:]
        if kind == "message" and type_name in maps:
            kind, label = "map", None
        else:
            label = LABELS.get(f.label)
            if kind in ("message", "group"):
                kind = f"message:{type_name.rsplit('.', 1)[-1]}"
            if syntax == "proto3" and label == "optional" and not f.proto3_optional:
                label = None  # proto3's implicit presence
        oneof = None
        if f.HasField("oneof_index") and not f.proto3_optional:
            oneof = real_oneofs[f.oneof_index]
            model.oneofs.add(oneof)
        model.fields[f.number] = ProtoField(f.name, kind, label, oneof)
    out.messages[name] = model
    for nested in message.nested_type:
        if not nested.options.map_entry:
            _add_descriptor_message(out, nested, name + ".", syntax)


# -- from .proto text -----------------------------------------------------------------------------


def _strict(recognizer: Any) -> None:
    """The parser recovers from syntax errors and prints them; here the first one is raised."""
    from antlr4.error.ErrorListener import ErrorListener

    class Raise(ErrorListener):
        def syntaxError(self, recognizer: Any, offending: Any, line: int, column: int, message: str, e: Any) -> None:
            raise ProtoError(f"line {line}:{column} {message}")

    recognizer.removeErrorListeners()
    recognizer.addErrorListener(Raise())


def parse_text(text: str) -> Any:
    """proto-schema-parser's AST of a `.proto` text; ProtoError at the first syntax error."""
    from proto_schema_parser.parser import Parser

    try:
        return Parser(setup_lexer=_strict, setup_parser=_strict).parse(text)
    except Exception as e:  # ProtoError, or whatever else the parser meets in odd input
        raise ProtoError(f"not a .proto file: {e}") from None


def _from_text(text: str) -> ProtoFile:
    from proto_schema_parser import ast

    parsed = parse_text(text)
    syntax = parsed.syntax or "proto2"
    package = next((e.name for e in parsed.file_elements if isinstance(e, ast.Package)), "")
    out = ProtoFile(syntax, package)
    messages = [e for e in parsed.file_elements if isinstance(e, ast.Message)]
    if not messages and not any(isinstance(e, ast.Enum) for e in parsed.file_elements):
        raise ProtoError("no message or enum is defined")
    file_enums = {e.name for e in parsed.file_elements if isinstance(e, ast.Enum)}
    for message in messages:
        _add_text_message(out, message, "", syntax, ast, file_enums)
    return out


def _add_text_message(out: ProtoFile, message: Any, prefix: str, syntax: str, ast: Any, outer_enums: set[str]) -> None:
    name = prefix + message.name
    model = ProtoMessage()
    enums = outer_enums | {e.name for e in message.elements if isinstance(e, ast.Enum)}

    def add(element: Any, oneof: Optional[str]) -> None:
        if isinstance(element, (ast.MapField, ast.Field)) and element.number in model.fields:
            raise ProtoError(f"message {name}: field number {element.number} is used twice")
        if isinstance(element, ast.MapField):
            model.fields[element.number] = ProtoField(element.name, "map", None, oneof)
        elif isinstance(element, ast.Field):
            kind = element.type if element.type in SCALARS else ("enum" if element.type.rsplit(".", 1)[-1] in enums else f"message:{element.type.rsplit('.', 1)[-1]}")
            label = element.cardinality.value.lower() if element.cardinality else None
            if syntax == "proto2" and label is None:
                label = "optional"
            model.fields[element.number] = ProtoField(element.name, kind, label, oneof)

    for element in message.elements:
        if isinstance(element, ast.OneOf):
            model.oneofs.add(element.name)
            for inner in element.elements:
                add(inner, element.name)
        else:
            add(element, None)
    out.messages[name] = model
    for nested in message.elements:
        if isinstance(nested, ast.Message):
            _add_text_message(out, nested, name + ".", syntax, ast, enums)


# -- compatibility --------------------------------------------------------------------------------


def _same_group(a: str, b: str) -> bool:
    return a == b or any(a in g and b in g for g in GROUPS)


def _kind_matches(reader: ProtoField, writer: ProtoField) -> bool:
    r, w = reader.kind, writer.kind
    if r.startswith("message:") or w.startswith("message:"):
        return r == w or (r.startswith("message:") and w.startswith("message:") and r.split(":")[1] == w.split(":")[1])
    return _same_group(r, w)


def read_problems(reader: ProtoFile, writer: ProtoFile) -> list[str]:
    """Why data written with `writer` cannot be read with `reader` (empty: it can)."""
    problems = []
    if reader.package != writer.package:
        problems.append(f"{{errorType:\"PACKAGE_CHANGED\", description:\"package {writer.package!r} became {reader.package!r}\"}}")
    for name, written in writer.messages.items():
        read = reader.messages.get(name)
        if read is None:
            problems.append(f"{{errorType:\"MESSAGE_REMOVED\", description:\"message {name} is gone\"}}")
            continue
        problems += _message_problems(name, read, written, reader.syntax == writer.syntax == "proto2")
    return problems


def _message_problems(name: str, reader: ProtoMessage, writer: ProtoMessage, explicit_labels: bool) -> list[str]:
    problems = []
    for number, w in writer.fields.items():
        r = reader.fields.get(number)
        where = f"{name}.{w.name} (#{number})"
        if r is None:
            if w.label == "required":
                problems.append(f"{{errorType:\"REQUIRED_FIELD_REMOVED\", description:\"{where}\"}}")
            elif w.oneof is not None and w.oneof in reader.oneofs:
                problems.append(f"{{errorType:\"ONEOF_FIELD_REMOVED\", description:\"{where} left oneof {w.oneof}\"}}")
            continue
        if not _kind_matches(r, w):
            problems.append(f"{{errorType:\"FIELD_KIND_CHANGED\", description:\"{where}: {w.kind} became {r.kind}\"}}")
        if (r.label == "required") != (w.label == "required"):
            problems.append(f"{{errorType:\"REQUIRED_FIELD_CHANGED\", description:\"{where}\"}}")
        elif explicit_labels and (r.label == "repeated") != (w.label == "repeated") and r.kind in NUMERIC | {"enum"}:
            problems.append(f"{{errorType:\"FIELD_NUMERIC_LABEL_CHANGED\", description:\"{where}: {w.label} became {r.label}\"}}")
        if w.oneof is None and r.oneof is not None:
            problems.append(f"{{errorType:\"FIELD_MOVED_TO_EXISTING_ONEOF\", description:\"{where} moved into oneof {r.oneof}\"}}")
    for number, r in reader.fields.items():
        if number not in writer.fields and r.label == "required":
            problems.append(f"{{errorType:\"REQUIRED_FIELD_ADDED\", description:\"{name}.{r.name} (#{number})\"}}")
    return problems


def serialized(proto: ProtoFile, text: str) -> str:
    """The schema as a base64 serialized FileDescriptorProto (`text` converted when it came
    as `.proto` text)."""
    descriptor = proto.descriptor
    if descriptor is None:
        from fastlog.schema_registry.protobuf_descriptor import descriptor_of

        descriptor = descriptor_of(text)
    return base64.standard_b64encode(descriptor.SerializeToString(deterministic=True)).decode("ascii")
