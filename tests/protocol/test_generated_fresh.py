"""The committed _generated/ package must equal a fresh run of the generator."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas" / "kafka" / "message"
REFERENCE = REPO.parent / "shared" / "kafka-protocol" / "message"
COMMITTED = REPO / "python" / "fastlog" / "protocol" / "_generated"


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="no reference copy of the schemas beside the repo")
def test_vendored_schemas_equal_the_reference():
    names = sorted(p.name for p in REFERENCE.glob("*.json"))
    assert names == sorted(p.name for p in SCHEMAS.glob("*.json"))
    match, mismatch, errors = filecmp.cmpfiles(REFERENCE, SCHEMAS, names, shallow=False)
    assert not mismatch and not errors


def test_generated_code_is_up_to_date(tmp_path):
    out = tmp_path / "gen"
    subprocess.run([sys.executable, str(REPO / "tools" / "gen_protocol.py"),
                    "--schemas", str(SCHEMAS), "--out", str(out)], check=True,
                   capture_output=True)
    fresh = sorted(p.name for p in out.glob("*.py"))
    committed = sorted(p.name for p in COMMITTED.glob("*.py"))
    assert fresh == committed, "module set differs: run tools/gen_protocol.py"
    match, mismatch, errors = filecmp.cmpfiles(out, COMMITTED, fresh, shallow=False)
    assert not mismatch and not errors, f"stale generated modules {mismatch + errors}: run tools/gen_protocol.py"


def test_every_schema_has_a_class():
    import fastlog.protocol as P
    from fastlog.protocol._generated import CLASS_MODULES
    names = {p.stem for p in SCHEMAS.glob("*.json")} if SCHEMAS.is_dir() else set(CLASS_MODULES)
    assert names == set(CLASS_MODULES)
    for name in names:
        assert getattr(P, name).NAME == name


def test_generated_rust_codec_is_up_to_date(tmp_path):
    out = tmp_path / "generated.rs"
    subprocess.run([sys.executable, str(REPO / "tools" / "gen_rust_codec.py"), "--schemas", str(SCHEMAS), "--out", str(out)],
                   check=True, capture_output=True)
    committed = REPO / "rust" / "src" / "wire" / "generated.rs"
    assert out.read_text() == committed.read_text(), "stale rust/src/wire/generated.rs: run tools/gen_rust_codec.py"
