"""Every message at every valid version: encode -> decode -> equal -> same bytes."""

from __future__ import annotations

import random

import pytest

from protocol_values import all_message_classes, random_instance, versions_of

CLASSES = all_message_classes()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_roundtrip_every_version(cls):
    rnd = random.Random(cls.__name__)
    for version in versions_of(cls):
        samples = [cls()] + [random_instance(rnd, cls, version) for _ in range(4)]
        for obj in samples:
            data = obj.encode(version)
            back = cls.decode(data, version)
            assert back == obj, (version, obj, back)
            assert back.encode(version) == data
