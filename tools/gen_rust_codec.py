#!/usr/bin/env python3
"""Generate the Rust codecs of the messages the core handles itself (the Produce fast path)
from Apache Kafka's message schemas.

    python tools/gen_rust_codec.py [--schemas DIR] [--out FILE]

Writes ``rust/src/wire/generated.rs``: one module per message (``produce_request``, ...)
with one Rust struct per schema struct, ``read(reader, version)`` and ``write(writer,
version)`` that branch on the version like Kafka's own generated Java code. Strings, bytes
and records borrow from the frame. The schema model (versions, nullable/tagged/flexible
ranges, defaults) is the one ``tools/gen_protocol.py`` builds for the Python codec, so both
codecs read the same rules from the same files. Only the shapes these messages use are
supported; anything else stops the generator with an error rather than emitting a guess.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_protocol import DEFAULT_SCHEMAS, MAX_VERSION, REPO, load_schemas  # noqa: E402

MESSAGES = ["RequestHeader", "ResponseHeader", "ProduceRequest", "ProduceResponse"]
DEFAULT_OUT = REPO / "rust" / "src" / "wire" / "generated.rs"

FIXED = {"int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64", "uint16": "u16", "float64": "f64", "bool": "bool"}
RUST_KEYWORDS = {"type", "match", "ref", "self", "mod", "move", "fn", "in", "loop", "where", "use", "impl", "struct"}


def rust_name(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()
    return s + "_" if s in RUST_KEYWORDS else s


def module_name(message: str) -> str:
    return rust_name(message)


def cond(versions, var: str = "version") -> str:
    """A Rust condition true for the versions in the range."""
    if versions.empty():
        return "false"
    lo, hi = versions.lo, versions.hi
    if hi >= MAX_VERSION:
        return "true" if lo == 0 else f"{var} >= {lo}"
    if lo == hi:
        return f"{var} == {lo}"
    return f"({lo}..={hi}).contains(&{var})"


class Struct:
    """One schema struct as Rust: its name, whether it borrows from the frame, its fields."""

    def __init__(self, spec, gen: "Generator") -> None:
        self.spec = spec
        self.name = spec.name
        self.gen = gen

    @property
    def borrows(self) -> bool:
        return any(self.gen.field_borrows(f) for f in self.spec.fields)

    @property
    def generics(self) -> str:
        return "<'a>" if self.borrows else ""


class Generator:
    def __init__(self, message) -> None:
        self.msg = message
        self.flexible = message.flexible
        self.structs = {name: Struct(spec, self) for name, spec in message.structs.items()}
        self.structs[message.root.name] = Struct(message.root, self)
        self.lines: list[str] = []

    # -- types -----------------------------------------------------------------------------

    def field_borrows(self, f) -> bool:
        if f.struct is not None:
            return self.structs[f.struct.name].borrows
        return f.elem in ("string", "bytes", "records")

    def nullable(self, f) -> bool:
        return not f.nullable.empty()

    def always_nullable(self, f) -> bool:
        """Nullable in every version that has the field: no per-version test needed."""
        return not f.nullable.empty() and f.nullable.lo <= f.versions.lo and f.nullable.hi >= f.versions.hi

    def elem_type(self, f) -> str:
        if f.struct is not None:
            return f.struct.name + self.structs[f.struct.name].generics
        if f.elem in FIXED:
            return FIXED[f.elem]
        return {"string": "&'a str", "bytes": "&'a [u8]", "records": "&'a [u8]", "uuid": "[u8; 16]"}[f.elem]

    def rust_type(self, f) -> str:
        t = self.elem_type(f)
        if f.is_array:
            t = f"Vec<{t}>"
        elif f.struct is not None and self.nullable(f):
            raise SystemExit(f"{self.msg.name}.{f.name}: nullable structs are not supported by the Rust generator")
        return f"Option<{t}>" if self.nullable(f) else t

    def default(self, f) -> str:
        raw = f.default_raw
        if self.nullable(f) and (raw == "null" or f.elem == "records"):
            return "None"
        if f.is_array:
            value = "Vec::new()"
        elif f.struct is not None:
            value = f"{f.struct.name}::default()"
        elif f.elem in ("int8", "int16", "int32", "int64", "uint16"):
            value = str(int(raw, 0)) if raw else "0"
        elif f.elem == "float64":
            value = repr(float(raw)) if raw else "0.0"
        elif f.elem == "bool":
            value = "true" if raw.lower() == "true" else "false"
        elif f.elem == "string":
            value = '"' + raw.replace("\\", "\\\\").replace('"', '\\"') + '"'
        elif f.elem in ("bytes", "records"):
            value = "&[]"
        elif f.elem == "uuid":
            value = "[0; 16]"
        else:
            raise SystemExit(f"{self.msg.name}.{f.name}: no default for {f.type}")
        return f"Some({value})" if self.nullable(f) else value

    def compact(self, f) -> str:
        """Whether the field uses the compact (flexible) encoding, as a Rust expression."""
        return cond(f.flex_override) if f.flex_override is not None else "flexible"

    # -- reading ---------------------------------------------------------------------------

    def read_elem(self, f, r: str) -> str:
        c = self.compact(f)
        if f.struct is not None:
            return f"{f.struct.name}::read({r}, version)?"
        if f.elem in FIXED or f.elem == "uuid":
            return f"{r}.{FIXED.get(f.elem, 'uuid')}()?"
        kind = "string" if f.elem == "string" else "bytes"
        return f"{r}.{kind}({c})?"

    def read_value(self, f, r: str) -> str:
        c = self.compact(f)
        if f.is_array:
            body = f"{{ let mut v = Vec::with_capacity(n); for _ in 0..n {{ v.push({self.read_elem(f, r)}); }} v }}"
            if not self.nullable(f):
                return f"{{ let n = {r}.count({c})?; {body} }}"
            if self.always_nullable(f):
                return f"match {r}.nullable_count({c})? {{ None => None, Some(n) => Some({body}) }}"
            return (f"if {cond(f.nullable)} {{ match {r}.nullable_count({c})? {{ None => None, Some(n) => Some({body}) }} }} "
                    f"else {{ let n = {r}.count({c})?; Some({body}) }}")
        if not self.nullable(f):
            return self.read_elem(f, r)
        kind = "string" if f.elem == "string" else "bytes"
        if f.elem not in ("string", "bytes", "records"):
            raise SystemExit(f"{self.msg.name}.{f.name}: nullable {f.type} is not supported by the Rust generator")
        if self.always_nullable(f):
            return f"{r}.nullable_{kind}({c})?"
        return f"if {cond(f.nullable)} {{ {r}.nullable_{kind}({c})? }} else {{ Some({r}.{kind}({c})?) }}"

    # -- writing ---------------------------------------------------------------------------

    def write_elem(self, f, v: str, w: str) -> str:
        c = self.compact(f)
        if f.struct is not None:
            return f"{v}.write({w}, version)?;"
        if f.elem == "uuid":
            return f"{w}.uuid(&{v});"
        if f.elem in FIXED:
            return f"{w}.{FIXED[f.elem]}({v});"
        kind = "string" if f.elem == "string" else "bytes"
        return f"{w}.{kind}({v}, {c})?;"

    def write_value(self, f, v: str, w: str) -> str:
        c = self.compact(f)
        null_error = f'return Err(WireError("null in non-nullable {self.msg.name}.{f.name}".into()))'
        if f.is_array:
            elem = self.write_elem(f, "*e" if (f.struct is None) else "e", w)
            loop = f"for e in items {{ {elem} }}"
            if not self.nullable(f):
                return f"{{ let items = &{v}; {w}.count(Some(items.len()), {c})?; {loop} }}"
            if self.always_nullable(f):
                return f"match &{v} {{ None => {w}.count(None, {c})?, Some(items) => {{ {w}.count(Some(items.len()), {c})?; {loop} }} }}"
            return (f"match &{v} {{ None if {cond(f.nullable)} => {w}.count(None, {c})?, None => {null_error}, "
                    f"Some(items) => {{ {w}.count(Some(items.len()), {c})?; {loop} }} }}")
        if not self.nullable(f):
            return self.write_elem(f, v, w)
        kind = "string" if f.elem == "string" else "bytes"
        if self.always_nullable(f):
            return f"{w}.nullable_{kind}({v}, {c})?;"
        return (f"match {v} {{ None if {cond(f.nullable)} => {w}.nullable_{kind}(None, {c})?, None => {null_error}, "
                f"Some(x) => {w}.{kind}(x, {c})? }}")

    # -- structs ---------------------------------------------------------------------------

    def emit(self, line: str = "") -> None:
        self.lines.append(line)

    @staticmethod
    def when(versions, statement: str) -> str:
        test = cond(versions)
        return f"        {statement}" if test == "true" else f"        if {test} {{ {statement} }}"

    def gen_struct(self, s: Struct) -> None:
        fields = s.spec.fields
        g = s.generics
        self.emit("#[derive(Debug, Clone, PartialEq)]")
        self.emit(f"pub struct {s.name}{g} {{")
        for f in fields:
            self.emit(f"    pub {rust_name(f.name)}: {self.rust_type(f)},")
        self.emit("}")
        self.emit()
        self.emit(f"impl{g} Default for {s.name}{g} {{")
        self.emit("    fn default() -> Self {")
        inits = ", ".join(f"{rust_name(f.name)}: {self.default(f)}" for f in fields)
        self.emit(f"        Self {{ {inits} }}")
        self.emit("    }")
        self.emit("}")
        self.emit()
        lifetime = "'a" if s.borrows else "'_"
        flexible = cond(self.flexible)
        regular = [f for f in fields if f.tagged.empty()]
        tagged = sorted((f for f in fields if not f.tagged.empty()), key=lambda f: f.tag)
        self.emit(f"impl{g} {s.name}{g} {{")
        self.emit(f"    pub fn read(r: &mut Reader<{lifetime}>, version: i16) -> Result<Self> {{")
        self.emit(f"        let flexible = {flexible};")
        self.emit("        let mut this = Self::default();")
        for f in regular:
            self.emit(self.when(f.versions, f"this.{rust_name(f.name)} = {self.read_value(f, 'r')};"))
        self.emit("        if flexible {")
        self.emit("            for _ in 0..r.uvarint()? {")
        self.emit("                let (tag, mut t) = r.tagged_field()?;")
        self.emit("                let t = &mut t;")
        self.emit("                match tag {")
        for f in tagged:
            self.emit(f"                    {f.tag} if {cond(f.tagged)} => this.{rust_name(f.name)} = {self.read_value(f, 't')},")
        self.emit("                    _ => {} // unknown tagged fields are skipped")
        self.emit("                }")
        self.emit("            }")
        self.emit("        }")
        self.emit("        Ok(this)")
        self.emit("    }")
        self.emit()
        self.emit("    pub fn write(&self, w: &mut Writer, version: i16) -> Result<()> {")
        self.emit(f"        let flexible = {flexible};")
        for f in regular:
            name = rust_name(f.name)
            self.emit(self.when(f.versions, self.write_value(f, "self." + name, "w")))
            if not f.ignorable and cond(f.versions) != "true":
                self.emit(f"        else if self.{name} != {self.default(f)} {{ return unsupported(\"{s.name}\", \"{name}\", version); }}")
        self.emit("        if flexible {")
        present = {f.name: f"{cond(f.tagged)} && self.{rust_name(f.name)} != {self.default(f)}" for f in tagged}
        self.emit(f"            let tagged = {' + '.join(f'u32::from({p})' for p in present.values()) or '0'};")
        self.emit("            w.uvarint(tagged);")
        for f in tagged:
            body = self.write_value(f, "self." + rust_name(f.name), "w")
            self.emit(f"            if {present[f.name]} {{ w.tagged_field({f.tag}, |w| {{ {body} Ok(()) }})?; }}")
        self.emit("        }")
        self.emit("        Ok(())")
        self.emit("    }")
        self.emit("}")
        self.emit()

    def generate(self) -> list[str]:
        m = self.msg
        self.emit(f"/// {m.name} ({m.path}), versions {m.valid.lo}-{m.valid.hi}.")
        self.emit(f"pub mod {module_name(m.name)} {{")
        self.emit("    use super::super::{unsupported, Reader, Result, WireError, Writer};")
        self.emit()
        self.emit(f"    pub const MIN_VERSION: i16 = {m.valid.lo};")
        self.emit(f"    pub const MAX_VERSION: i16 = {m.valid.hi};")
        flex = "i16::MAX" if self.flexible.empty() else str(self.flexible.lo)
        self.emit(f"    /// The first flexible version (compact encodings, tagged fields).")
        self.emit(f"    pub const FLEXIBLE_FROM: i16 = {flex};")
        self.emit()
        body_start = len(self.lines)
        for s in self.structs.values():
            self.gen_struct(s)
        self.lines[body_start:] = ["    " + line if line else "" for line in self.lines[body_start:]]
        self.emit("}")
        self.emit()
        return self.lines


def render(messages) -> str:
    by_name = {m.name: m for m in messages}
    sources = ", ".join(by_name[name].path for name in MESSAGES)
    out = [
        f"// Generated by tools/gen_rust_codec.py from Apache Kafka's message schemas ({sources}).",
        "// DO NOT EDIT: change the generator and regenerate.",
        "#![allow(unused_variables, unused_mut, unused_imports, clippy::all)]",
        "",
    ]
    for name in MESSAGES:
        out += Generator(by_name[name]).generate()
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schemas", default=str(DEFAULT_SCHEMAS))
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    Path(args.out).write_text(render(load_schemas(args.schemas)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
