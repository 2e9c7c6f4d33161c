"""Decoders on hostile input: nothing but CodecError may escape, and nothing
allocates without bound (random bytes and mutated valid encodings)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fastlog.protocol as P
from fastlog.protocol import CodecError
from protocol_values import all_message_classes, random_instance, versions_of

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

API_KEYS = sorted(P.API_BY_KEY)


def _try(fn, *args):
    try:
        fn(*args)
    except CodecError:
        pass


@FUZZ
@given(st.binary(max_size=200))
def test_decode_request_random_bytes(data):
    _try(P.decode_request, data)


@FUZZ
@given(st.sampled_from(API_KEYS), st.integers(-2, 20), st.integers(-(2**31), 2**31 - 1),
       st.binary(max_size=300))
def test_decode_request_random_body(api_key, api_version, corr, body):
    import struct
    _try(P.decode_request, struct.pack(">hhi", api_key, api_version, corr) + body)


# valid encodings of every message at every version, mutated
def _corpus():
    rnd = random.Random(1234)
    out = []
    for cls in all_message_classes():
        for v in versions_of(cls):
            out.append((cls, v, random_instance(rnd, cls, v).encode(v)))
    return out


CORPUS = _corpus()


def _mutate(rnd, data):
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.random()
        if not b or op < 0.15:
            b += rnd.randbytes(rnd.randint(1, 8))
        elif op < 0.55:
            b[rnd.randrange(len(b))] = rnd.choice([0, 0x7F, 0x80, 0xFF, rnd.randrange(256)])
        elif op < 0.7:
            i = rnd.randrange(len(b))
            b[i:i + 4] = rnd.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\xff\xff", b"\x80\x80\x80\x80\x80"])
        elif op < 0.85:
            del b[rnd.randrange(len(b)):]
        else:
            i = rnd.randrange(len(b))
            del b[i:i + rnd.randint(1, 3)]
    return bytes(b)


@pytest.mark.parametrize("chunk", range(4))
def test_mutated_valid_encodings(chunk):
    rnd = random.Random(chunk)
    for cls, v, data in CORPUS[chunk::4]:
        for _ in range(6):
            _try(cls.decode, _mutate(rnd, data), v)
        for cut in range(0, len(data), max(1, len(data) // 5)):
            _try(cls.decode, data[:cut], v)


@FUZZ
@given(st.data())
def test_mutated_with_hypothesis(data):
    cls, v, valid = data.draw(st.sampled_from(CORPUS))
    if not valid:
        return
    i = data.draw(st.integers(0, len(valid) - 1))
    repl = data.draw(st.binary(min_size=1, max_size=6))
    _try(cls.decode, valid[:i] + repl + valid[i + len(repl):], v)
