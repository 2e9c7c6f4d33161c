"""Compatibility levels, built on one question per schema type: can this schema read data
written with that one (`ParsedSchema.read_problems`).

BACKWARD: the new schema reads data written with the previous one (consumers upgrade first).
FORWARD: the previous schema reads data written with the new one (producers upgrade first).
FULL: both. The `_TRANSITIVE` levels check against every earlier live version, the others
against the latest only; NONE checks nothing.
"""

from __future__ import annotations

from typing import Sequence

from fastlog.schema_registry.schema_types import ParsedSchema

DEFAULT_LEVEL = "BACKWARD"
LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE")


def problems(level: str, new: ParsedSchema, earlier: Sequence[ParsedSchema]) -> list[str]:
    """Why `new` breaks `level` against `earlier` (oldest first); empty when it does not."""
    if level == "NONE" or not earlier:
        return []
    against = list(earlier) if level.endswith("_TRANSITIVE") else [earlier[-1]]
    backward = level.startswith(("BACKWARD", "FULL"))
    forward = level.startswith(("FORWARD", "FULL"))
    found: list[str] = []
    for old in reversed(against):
        if backward:
            found += new.read_problems(old)
        if forward:
            found += old.read_problems(new)
    return found
