"""Random values for generated message classes, driven by the classes' own
``_SPECS`` metadata (which the generator derives from Kafka's schemas)."""

from __future__ import annotations

import importlib
import random
import sys
import uuid

import fastlog.protocol as P
from fastlog.protocol._generated import APIS, CLASS_MODULES

INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint16": (0, 2**16 - 1),
}
ALPHABET = "abcxyz_-.0123456789ÅéΩ漢🙂"


def all_message_classes():
    return [getattr(P, name) for name in sorted(CLASS_MODULES)]


def struct_class(owner, name):
    return getattr(sys.modules[owner.__module__], name)


def in_range(rng, v):
    return rng is not None and rng[0] <= v <= rng[1]


def random_value(rnd: random.Random, owner, spec, version, depth=0, unknown_tags=True):
    attr, kname, typ, versions, nullable, tagged, tag, ignorable, struct_name = spec
    can_null = in_range(nullable, version)
    if can_null and rnd.random() < 0.2:
        return None
    if typ.startswith("[]"):
        elem = typ[2:]
        n = rnd.randint(0, 3 if depth < 2 else 1)
        return [random_scalar(rnd, owner, elem, struct_name, version, depth + 1, unknown_tags)
                for _ in range(n)]
    return random_scalar(rnd, owner, typ, struct_name, version, depth + 1, unknown_tags)


def random_scalar(rnd, owner, typ, struct_name, version, depth, unknown_tags=True):
    if struct_name is not None:
        return random_instance(rnd, struct_class(owner, struct_name), version, depth, unknown_tags)
    if typ in INT_RANGES:
        lo, hi = INT_RANGES[typ]
        return rnd.choice([lo, hi, 0, -1 if lo < 0 else 1, rnd.randint(lo, hi)])
    if typ == "bool":
        return rnd.random() < 0.5
    if typ == "float64":
        return rnd.choice([0.0, -1.5, 1e300, rnd.uniform(-1e9, 1e9)])
    if typ == "uuid":
        return uuid.UUID(int=rnd.getrandbits(128))
    if typ == "string":
        return "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 12)))
    if typ in ("bytes", "records"):
        return rnd.randbytes(rnd.choice([0, 1, 7, 200]))
    raise AssertionError(typ)


def random_instance(rnd, cls, version, depth=0, unknown_tags=True):
    kwargs = {}
    for spec in cls._SPECS:
        if in_range(spec[3], version):
            kwargs[spec[0]] = random_value(rnd, cls, spec, version, depth, unknown_tags)
    obj = cls(**kwargs)
    flexible = cls.FLEXIBLE_MIN is not None and version >= cls.FLEXIBLE_MIN
    if unknown_tags and flexible and rnd.random() < 0.3:
        obj.unknown_tagged_fields = {rnd.randint(100, 5000): rnd.randbytes(rnd.randint(0, 5))}
    return obj


def versions_of(cls):
    lo, hi = cls.VALID_VERSIONS
    return range(lo, hi + 1)
