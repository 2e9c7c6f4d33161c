"""The committed codec of `__consumer_offsets` records equals a fresh run of the generator
over fastlog's coordinator schemas, and its records round-trip."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from fastlog.coordinator_records import GroupMetadataValue, GroupRecord, OffsetCommitValue, OffsetRecord
from fastlog.coordinator_records import decode_record, group_record, offset_record

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas" / "fastlog" / "coordinator"
COMMITTED = REPO / "python" / "fastlog" / "coordinator_records" / "_generated"


def test_generated_coordinator_records_are_up_to_date(tmp_path):
    out = tmp_path / "gen"
    subprocess.run([sys.executable, str(REPO / "tools" / "gen_protocol.py"), "--schemas", str(SCHEMAS), "--out", str(out)],
                   check=True, capture_output=True)
    fresh = sorted(p.name for p in out.glob("*.py"))
    assert fresh == sorted(p.name for p in COMMITTED.glob("*.py")), "run tools/gen_coordinator_records.sh"
    _, mismatch, errors = filecmp.cmpfiles(out, COMMITTED, fresh, shallow=False)
    assert not mismatch and not errors, f"stale {mismatch + errors}: run tools/gen_coordinator_records.sh"


def test_offset_record_layout_is_kafkas():
    key, value = offset_record("g", "t", 3, OffsetCommitValue(offset=5, leader_epoch=2, metadata="m", commit_timestamp=7))
    # key version 1: group, topic (int16-length strings), partition
    assert key == b"\x00\x01" + b"\x00\x01g" + b"\x00\x01t" + b"\x00\x00\x00\x03"
    # value version 3: offset, leader epoch, metadata, commit timestamp
    assert value == b"\x00\x03" + (5).to_bytes(8, "big") + (2).to_bytes(4, "big") + b"\x00\x01m" + (7).to_bytes(8, "big")
    assert decode_record(key, value) == OffsetRecord("g", "t", 3, OffsetCommitValue(offset=5, leader_epoch=2, metadata="m", commit_timestamp=7))
    assert decode_record(key, None) == OffsetRecord("g", "t", 3, None)
    # an explicit expiry is written as value version 1
    _, v1 = offset_record("g", "t", 3, OffsetCommitValue(offset=5, metadata="", commit_timestamp=7, expire_timestamp=9))
    assert v1[:2] == b"\x00\x01" and decode_record(key, v1).value.expire_timestamp == 9


def test_group_record_round_trip():
    M = GroupMetadataValue.MemberMetadata
    value = GroupMetadataValue(protocol_type="consumer", generation=4, protocol="range", leader="a", current_state_timestamp=11,
                               members=[M(member_id="a", group_instance_id="i", client_id="c", client_host="/h",
                                          rebalance_timeout=1, session_timeout=2, subscription=b"s", assignment=b"x")])
    key, data = group_record("g", value)
    assert key == b"\x00\x02\x00\x01g" and data[:2] == b"\x00\x03"
    assert decode_record(key, data) == GroupRecord("g", value)
    assert decode_record(key, None) == GroupRecord("g", None)
    assert decode_record(b"\x00\x05xyz", b"") is None  # newer record kinds are skipped
