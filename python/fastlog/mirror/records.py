"""MirrorMaker 2's internal records, in its layout (Kafka's protocol types: a STRING is an int16
length and UTF-8, INT16/32/64 big-endian), so Kafka's tools (RemoteClusterUtils, MM2 itself)
read what fastlog writes and the other way round:

- an offset sync (`mm2-offset-syncs.<target>.internal` on the source): key (topic, partition),
  value (upstream offset, downstream offset): the source record at `upstream` is the target
  record at `downstream`;
- a checkpoint (`<source>.checkpoints.internal` on the target): key (group, remote topic,
  partition), value version 0 then (upstream offset, downstream offset, metadata): the group's
  committed offset on the source and where that is on the target;
- a heartbeat (`heartbeats` on the target): key (source alias, target alias), value version 0
  then a timestamp in milliseconds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VERSION = 0
_I16, _I32, _I64 = struct.Struct(">h"), struct.Struct(">i"), struct.Struct(">q")


def _string(value: str) -> bytes:
    data = value.encode()
    return _I16.pack(len(data)) + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def _take(self, s: struct.Struct) -> int:
        (value,) = s.unpack_from(self.data, self.at)
        self.at += s.size
        return value

    def i16(self) -> int:
        return self._take(_I16)

    def i32(self) -> int:
        return self._take(_I32)

    def i64(self) -> int:
        return self._take(_I64)

    def string(self) -> str:
        size = self.i16()
        if size < 0 or self.at + size > len(self.data):
            raise ValueError("string runs past the record")
        value = self.data[self.at : self.at + size].decode()
        self.at += size
        return value


@dataclass(frozen=True)
class OffsetSync:
    topic: str
    partition: int
    upstream: int
    downstream: int

    def key(self) -> bytes:
        return _string(self.topic) + _I32.pack(self.partition)

    def value(self) -> bytes:
        return _I64.pack(self.upstream) + _I64.pack(self.downstream)

    @classmethod
    def read(cls, key: bytes, value: bytes) -> "OffsetSync":
        k, v = _Reader(key), _Reader(value)
        return cls(k.string(), k.i32(), v.i64(), v.i64())


@dataclass(frozen=True)
class Checkpoint:
    group: str
    topic: str  # the remote (target) topic
    partition: int
    upstream: int
    downstream: int
    metadata: str = ""

    def key(self) -> bytes:
        return _string(self.group) + _string(self.topic) + _I32.pack(self.partition)

    def value(self) -> bytes:
        return _I16.pack(VERSION) + _I64.pack(self.upstream) + _I64.pack(self.downstream) + _string(self.metadata)

    @classmethod
    def read(cls, key: bytes, value: bytes) -> "Checkpoint":
        k, v = _Reader(key), _Reader(value)
        group, topic, partition = k.string(), k.string(), k.i32()
        if v.i16() != VERSION:
            raise ValueError("unknown checkpoint version")
        return cls(group, topic, partition, v.i64(), v.i64(), v.string())


@dataclass(frozen=True)
class Heartbeat:
    source: str
    target: str
    timestamp_ms: int

    def key(self) -> bytes:
        return _string(self.source) + _string(self.target)

    def value(self) -> bytes:
        return _I16.pack(VERSION) + _I64.pack(self.timestamp_ms)

    @classmethod
    def read(cls, key: bytes, value: bytes) -> "Heartbeat":
        k, v = _Reader(key), _Reader(value)
        source, target = k.string(), k.string()
        if v.i16() != VERSION:
            raise ValueError("unknown heartbeat version")
        return cls(source, target, v.i64())
