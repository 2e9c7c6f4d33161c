"""A `.proto` text as a FileDescriptorProto: what `?format=serialized` answers for a Protobuf
schema registered as text (Confluent's Java serializer registers text; confluent-kafka's
Python deserializer asks for the serialized descriptor).

Covers what messages carry on the wire: packages, imports, nested messages and enums, scalar,
message and enum fields, labels, oneofs, proto3 `optional`, and maps (as protoc writes them:
a nested `<Name>Entry` message with `map_entry`). Options other than these are left out.
"""

from __future__ import annotations

from typing import Any, Optional

SCALAR_TYPES = {
    "double": 1, "float": 2, "int64": 3, "uint64": 4, "int32": 5, "fixed64": 6, "fixed32": 7, "bool": 8,
    "string": 9, "bytes": 12, "uint32": 13, "sfixed32": 15, "sfixed64": 16, "sint32": 17, "sint64": 18,
}
TYPE_MESSAGE, TYPE_ENUM = 11, 14
LABEL_OPTIONAL, LABEL_REQUIRED, LABEL_REPEATED = 1, 2, 3


def descriptor_of(text: str, name: str = "schema.proto") -> Any:
    """The FileDescriptorProto of a `.proto` text (ProtoError when it does not parse, or
    holds what a descriptor cannot: a number past its range)."""
    from fastlog.schema_registry.protobuf_compatibility import ProtoError

    try:
        return _descriptor_of(text, name)
    except (ValueError, TypeError) as e:
        raise ProtoError(f"cannot be written as a descriptor: {e}") from None


def _descriptor_of(text: str, name: str) -> Any:
    from google.protobuf import descriptor_pb2
    from proto_schema_parser import ast

    from fastlog.schema_registry.protobuf_compatibility import parse_text

    parsed = parse_text(text)
    file = descriptor_pb2.FileDescriptorProto(name=name, syntax=parsed.syntax or "proto2")
    package = next((e.name for e in parsed.file_elements if isinstance(e, ast.Package)), "")
    if package:
        file.package = package
    file.dependency.extend(e.name for e in parsed.file_elements if isinstance(e, ast.Import))
    scope = f".{package}" if package else ""
    kinds = _declared_types(parsed.file_elements, scope, ast)
    for element in parsed.file_elements:
        if isinstance(element, ast.Message):
            _message(file.message_type.add(), element, scope, kinds, file.syntax, ast)
        elif isinstance(element, ast.Enum):
            _enum(file.enum_type.add(), element, ast)
    return file


def _declared_types(elements: list, scope: str, ast: Any) -> dict[str, int]:
    """Full name (".pkg.Outer.Inner") → TYPE_MESSAGE or TYPE_ENUM of every type in the file."""
    kinds: dict[str, int] = {}
    for element in elements:
        if isinstance(element, ast.Message):
            full = f"{scope}.{element.name}"
            kinds[full] = TYPE_MESSAGE
            kinds.update(_declared_types(element.elements, full, ast))
        elif isinstance(element, ast.Enum):
            kinds[f"{scope}.{element.name}"] = TYPE_ENUM
    return kinds


def _resolve(type_name: str, scope: str, kinds: dict[str, int]) -> tuple[str, int]:
    """Protobuf's scoping: the innermost enclosing scope that declares the name wins; a
    type from an import is taken as a message, named as written."""
    if type_name.startswith("."):
        return type_name, kinds.get(type_name, TYPE_MESSAGE)
    parts = scope.split(".")
    while True:
        candidate = ".".join(parts + [type_name])
        if candidate in kinds:
            return candidate, kinds[candidate]
        if len(parts) <= 1:
            return "." + type_name, TYPE_MESSAGE
        parts.pop()


def _enum(out: Any, enum: Any, ast: Any) -> None:
    out.name = enum.name
    for value in enum.elements:
        if isinstance(value, ast.EnumValue):
            out.value.add(name=value.name, number=value.number)


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _message(out: Any, message: Any, scope: str, kinds: dict[str, int], syntax: str, ast: Any) -> None:
    out.name = message.name
    here = f"{scope}.{message.name}"

    def add_field(element: Any, oneof_index: Optional[int]) -> None:
        field = out.field.add(name=element.name, number=element.number)
        if isinstance(element, ast.MapField):
            entry = out.nested_type.add(name=f"{_camel(element.name)}Entry")
            entry.options.map_entry = True
            for number, (name, type_name) in enumerate((("key", element.key_type), ("value", element.value_type)), 1):
                entry_field = entry.field.add(name=name, number=number, label=LABEL_OPTIONAL)
                _set_type(entry_field, type_name, here, kinds)
            field.label, field.type, field.type_name = LABEL_REPEATED, TYPE_MESSAGE, f"{here}.{entry.name}"
            return
        cardinality = element.cardinality.value if element.cardinality else None
        field.label = {"REPEATED": LABEL_REPEATED, "REQUIRED": LABEL_REQUIRED}.get(cardinality or "", LABEL_OPTIONAL)
        _set_type(field, element.type, here, kinds)
        if oneof_index is not None:
            field.oneof_index = oneof_index
        elif syntax == "proto3" and cardinality == "OPTIONAL":  # presence: a synthetic oneof, as protoc makes it
            field.proto3_optional = True
            synthetic.append((field, f"_{element.name}"))

    synthetic: list[tuple[Any, str]] = []
    for element in message.elements:
        if isinstance(element, (ast.Field, ast.MapField)):
            add_field(element, None)
        elif isinstance(element, ast.OneOf):
            index = len(out.oneof_decl)
            out.oneof_decl.add(name=element.name)
            for inner in element.elements:
                if isinstance(inner, (ast.Field, ast.MapField)):
                    add_field(inner, index)
        elif isinstance(element, ast.Message):
            _message(out.nested_type.add(), element, here, kinds, syntax, ast)
        elif isinstance(element, ast.Enum):
            _enum(out.enum_type.add(), element, ast)
    for field, oneof_name in synthetic:  # synthetic oneofs come after the real ones
        field.oneof_index = len(out.oneof_decl)
        out.oneof_decl.add(name=oneof_name)


def _set_type(field: Any, type_name: str, scope: str, kinds: dict[str, int]) -> None:
    if type_name in SCALAR_TYPES:
        field.type = SCALAR_TYPES[type_name]
    else:
        field.type_name, field.type = _resolve(type_name, scope, kinds)
