"""The cluster's metadata as every node sees it: the state built by applying, in order, the
records the metadata quorum committed (`controller.py` proposes them, raft-rs orders them).

Records are JSON objects with a `type`:

- `register_broker` {id, host, port, rack}: a broker (re)registers its client endpoint;
- `fence_broker` {id}: the controller stopped hearing from it (`broker.session.timeout.ms`):
  clients are no longer sent to it;
- `unfence_broker` {id}: it is heard from again.

Applying a record is deterministic and never fails: a record this version does not know is
skipped with a log line, so a newer node's records do not stop an older one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Optional

log = logging.getLogger(__name__)


@dataclass
class BrokerRegistration:
    id: int
    host: str
    port: int
    rack: Optional[str]
    fenced: bool = False


class MetadataImage:
    def __init__(self) -> None:
        self.brokers: dict[int, BrokerRegistration] = {}
        self.last_applied = 0  # index of the last record applied

    def live_brokers(self) -> list[BrokerRegistration]:
        return [b for b in sorted(self.brokers.values(), key=lambda b: b.id) if not b.fenced]

    def apply(self, index: int, data: bytes) -> None:
        self.last_applied = index
        try:
            record = json.loads(data)
            handler = getattr(self, f"_apply_{record['type']}", None)
        except (ValueError, KeyError, TypeError):
            log.error("metadata record %d is not readable; skipped: %r", index, data[:200])
            return
        if handler is None:
            log.warning("metadata record %d of unknown type %r skipped", index, record.get("type"))
            return
        handler(record)

    def _apply_register_broker(self, record: dict[str, Any]) -> None:
        broker_id = int(record["id"])
        self.brokers[broker_id] = BrokerRegistration(broker_id, record["host"], int(record["port"]), record.get("rack"))
        log.info("broker %d registered at %s:%d", broker_id, record["host"], record["port"])

    def _apply_fence_broker(self, record: dict[str, Any]) -> None:
        broker = self.brokers.get(int(record["id"]))
        if broker is not None and not broker.fenced:
            broker.fenced = True
            log.warning("broker %d fenced: the controller has not heard from it", broker.id)

    def _apply_unfence_broker(self, record: dict[str, Any]) -> None:
        broker = self.brokers.get(int(record["id"]))
        if broker is not None and broker.fenced:
            broker.fenced = False
            log.info("broker %d unfenced", broker.id)


def encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()
