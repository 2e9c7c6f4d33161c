"""The `_schemas` topic, read and written through fastlog's own Kafka client.

Blocking calls (the client is synchronous): the registry runs them on worker threads. A
client serves one request at a time, so there is one per direction (the reader tails the
topic while writes go on), each behind its own lock.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Optional

from fastlog.client import Client, KafkaError
from fastlog.records import Record
from fastlog.schema_registry.schema_types import compact_json
from fastlog.security.client_side import ClientSecurity

PARTITION = 0
# Confluent's layout: one compacted partition, the order every instance applies.
TOPIC_CONFIGS = {"cleanup.policy": "compact"}


def encode_json(document: Any) -> bytes:
    # Compact, keys in the order given (Confluent's), so compaction matches its keys byte for byte.
    return compact_json(document).encode()


def decode_json(data: Optional[bytes]) -> Any:
    if data is None:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return ...  # not JSON (or nested past reason): skipped (Ellipsis is never a key or value)


class SchemasTopic:
    def __init__(self, bootstrap: str, name: str = "_schemas", replication_factor: int = -1, timeout: float = 10.0,
                 brokers_wait: float = 0.0, security: Optional[ClientSecurity] = None) -> None:
        self.bootstrap = bootstrap
        self.security = security  # TLS and SASL settings of its connections (None: PLAINTEXT)
        self.name = name
        self.replication_factor = replication_factor
        # A cluster that is starting: how long to wait for 3 live brokers before creating the
        # topic with fewer replicas.
        self.brokers_wait = brokers_wait
        self.timeout = timeout
        self._reader: Optional[Client] = None
        self._writer: Optional[Client] = None
        self._locks = {"_reader": threading.Lock(), "_writer": threading.Lock()}

    def _client(self, which: str) -> Client:
        """The client (under its lock, held by the caller)."""
        client = getattr(self, which)
        if client is None:
            client = Client(self.bootstrap, timeout=self.timeout, client_id="fastlog-schema-registry", security=self.security)
            setattr(self, which, client)
        return client

    def close(self) -> None:
        """At the end: closes both clients without waiting for their locks (a call abandoned
        at cancellation may still hold one, blocked in a long-poll, and fails on its own)."""
        for which in ("_reader", "_writer"):
            client = getattr(self, which)
            setattr(self, which, None)
            if client is not None:
                client.close()

    def reset(self, which: str) -> None:
        """Drops a client after an error: the next call connects again."""
        with self._locks[which]:
            client = getattr(self, which)
            setattr(self, which, None)
        if client is not None:
            client.close()

    def ensure(self) -> None:
        """Creates the topic when it does not exist (replication factor -1: the live brokers,
        at most 3, as Confluent's default of 3 where there are fewer)."""
        with self._locks["_writer"]:
            self._ensure(self._client("_writer"))

    def _ensure(self, client: Client) -> None:
        factor = self.replication_factor
        if factor == -1:
            deadline = time.monotonic() + self.brokers_wait
            live = len(client.metadata([]).brokers)
            while live < 3 and time.monotonic() < deadline and not self._exists(client):
                time.sleep(0.2)
                live = len(client.metadata([]).brokers)
            factor = min(3, max(1, live))
        try:
            client.create_topic(self.name, 1, factor, TOPIC_CONFIGS)
        except KafkaError as e:
            if e.name != "TOPIC_ALREADY_EXISTS":
                raise
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:  # metadata spreads after CreateTopics answers
            topic = client.metadata([self.name]).topics.get(self.name)
            if topic is not None and topic.partitions and all(p.leader >= 0 for p in topic.partitions.values()):
                return
            time.sleep(0.05)

    def _exists(self, client: Client) -> bool:
        found = client.metadata([self.name]).topics.get(self.name)
        return found is not None and not found.error_code

    def end_offset(self) -> int:
        key = (self.name, PARTITION)
        with self._locks["_writer"]:
            return self._client("_writer").list_offsets([key])[key]

    def append(self, key: Any, value: Any) -> int:
        """Appends one record (acks=all); returns its offset."""
        record = Record(offset=0, timestamp=int(time.time() * 1000), key=encode_json(key), value=None if value is None else encode_json(value))
        with self._locks["_writer"]:
            return self._client("_writer").produce({(self.name, PARTITION): [record]})[(self.name, PARTITION)]

    def read(self, offset: int, max_wait_ms: int) -> tuple[list[tuple[Any, Any]], int]:
        """(key, value) of the records from `offset` (decoded JSON; Ellipsis where not JSON)
        and the offset to read next."""
        with self._locks["_reader"]:
            fetched = self._client("_reader").fetch({(self.name, PARTITION): offset}, max_wait_ms=max_wait_ms)[(self.name, PARTITION)]
        if fetched.error_code:
            raise KafkaError(fetched.error_code, context=f"fetch {self.name}")
        return [(decode_json(r.key), decode_json(r.value)) for r in fetched.records], fetched.next_offset
