"""Compatibility levels, built on one question per schema type: can this schema read data
written with that one (`ParsedSchema.read_problems`).

BACKWARD: the new schema reads data written with the previous one (consumers upgrade first).
FORWARD: the previous schema reads data written with the new one (producers upgrade first).
FULL: both. The `_TRANSITIVE` levels check against every earlier live version, the others
against the latest only; NONE checks nothing.
"""

from __future__ import annotations

from typing import Optional, Sequence

from fastlog.schema_registry.schema_types import ParsedSchema

DEFAULT_LEVEL = "BACKWARD"
LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE")


def first_failure(level: str, new: ParsedSchema, earlier: Sequence[ParsedSchema]) -> Optional[tuple[int, list[str]]]:
    """(index in `earlier`, why) of the newest earlier schema `new` breaks `level` against
    (oldest first in `earlier`; checked newest first, as Confluent stops at the first), or None."""
    if level == "NONE" or not earlier:
        return None
    first = 0 if level.endswith("_TRANSITIVE") else len(earlier) - 1
    backward = level.startswith(("BACKWARD", "FULL"))
    forward = level.startswith(("FORWARD", "FULL"))
    for index in range(len(earlier) - 1, first - 1, -1):
        old = earlier[index]
        found = (new.read_problems(old) if backward else []) + (old.read_problems(new) if forward else [])
        if found:
            return index, found
    return None
