"""Counters the broker keeps about itself (exported by the operator tooling)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Metrics:
    connections_opened: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    bytes_out_pending: int = 0
    messages_in: dict = field(default_factory=lambda: defaultdict(int))
    requests: dict = field(default_factory=lambda: defaultdict(int))
    request_seconds: dict = field(default_factory=lambda: defaultdict(float))

    def observe_request(self, api_key: int, seconds: float) -> None:
        self.requests[api_key] += 1
        self.request_seconds[api_key] += seconds

    def record_produce(self, topic: str, records: int, size: int) -> None:
        self.messages_in[topic] += records
        self.bytes_in += size
