"""What the console shows and does, over fastlog's Kafka client: it speaks only the Kafka
protocol, so the same pages work against fastlog or any Kafka-compatible cluster, and a broker
with ACLs checks every action as it would any client's.

Every method is blocking (the client uses blocking sockets); the web layer calls them from a
worker thread, one at a time per `ClusterView` (`Client` is not thread-safe). Bad input
raises `BadRequest`, something missing `NotFound`; a Kafka error passes through as
`KafkaError`, which the web layer turns into an HTTP status.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

from fastlog.client import EARLIEST, LATEST, RESOURCE_TOPIC, Client, ClientError, KafkaError
from fastlog.console.decode import SchemaLookup, render
from fastlog.protocol import ErrorCode
from fastlog.records import Record
from fastlog.tools.groups import RESET_TARGETS, describe_group, plan_reset, refuse_active_group
from fastlog.tools.topics import replication_factor

MAX_MESSAGES = 500  # one page of the message browser
MAX_PRODUCE_BYTES = 1 << 20  # a test message from the console
FETCH_BYTES = 4 << 20  # what one page may read from a partition
LISTED_CONFIGS = ("retention.ms", "retention.bytes", "cleanup.policy")
# DescribeConfigs config_source values, as names a page can show
CONFIG_SOURCES = {1: "topic", 2: "broker", 3: "broker default", 4: "broker", 5: "broker default", 6: "broker default", 7: "client metrics", 8: "group"}


class BadRequest(ValueError):
    """Input the console refuses (HTTP 400), with a message for the page."""


class NotFound(LookupError):
    """A topic, partition, group or subject that does not exist (HTTP 404)."""


def int_param(value: Any, name: str, *, low: int = 0, high: int = (1 << 63) - 1) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {number}")
    return number


class ClusterView:
    def __init__(self, client_factory: Callable[[], Client], schemas: Callable[[], Optional[SchemaLookup]] = lambda: None) -> None:
        """`schemas`: the registry that decodes values in its wire format, if any (asked each time:
        a broker's own registry starts after its console)."""
        self._client_factory = client_factory
        self._client: Optional[Client] = None
        self.schemas = schemas
        self.closed = False  # for good (a logout): no connection is opened again

    @property
    def client(self) -> Client:
        if self.closed:
            raise ClientError("this console session is closed")
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def close(self, *, for_good: bool = True) -> None:
        self.closed = self.closed or for_good
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def call(self, operation: Callable[..., Any], *args: Any) -> Any:
        """Runs `operation(*args)`; a broken connection is dropped so the next call reconnects."""
        try:
            return operation(*args)
        except (KafkaError, BadRequest, NotFound):
            raise
        except Exception:
            self.close(for_good=False)  # reconnects on the next call
            raise

    def sizes(self, topics: Optional[Sequence[str]] = None) -> dict[tuple[str, int], int]:
        """Bytes on disk per partition; empty for a user the cluster does not let describe
        log dirs (cluster Describe), whose pages then show no sizes."""
        try:
            return self.client.log_dir_sizes(topics)
        except KafkaError as e:
            if e.code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED:
                return {}
            raise

    # cluster and topics

    def overview(self) -> dict:
        cluster = self.client.metadata()
        sizes = self.sizes()
        partitions = [p for t in cluster.topics.values() for p in t.partitions.values()]
        return {
            "cluster_id": cluster.cluster_id,
            "controller": cluster.controller_id,
            "brokers": [{"id": node, "host": host, "port": port} for node, (host, port) in sorted(cluster.brokers.items())],
            "topics": sum(1 for t in cluster.topics.values() if not t.internal),
            "internal_topics": sum(1 for t in cluster.topics.values() if t.internal),
            "partitions": len(partitions),
            "size_bytes": sum(sizes.values()) if sizes else None,
            "under_replicated": [f"{p.topic}-{p.index}" for p in partitions if len(p.isr) < len(p.replicas)],
            "offline": [f"{p.topic}-{p.index}" for p in partitions if p.leader < 0],
        }

    def topics(self) -> list[dict]:
        cluster = self.client.metadata()
        names = sorted(cluster.topics)
        keys = [(t, p) for t in names for p in cluster.topics[t].partitions if cluster.topics[t].partitions[p].leader >= 0]
        earliest = self.client.list_offsets(keys, EARLIEST) if keys else {}
        latest = self.client.list_offsets(keys, LATEST) if keys else {}
        sizes = self.sizes()
        configs = self.client.describe_topic_configs(names, LISTED_CONFIGS)
        out = []
        for name in names:
            info = cluster.topics[name]
            parts = [(name, p) for p in info.partitions]
            out.append(
                {
                    "name": name,
                    "internal": info.internal,
                    "partitions": len(info.partitions),
                    "replication_factor": replication_factor(info),
                    "size_bytes": sum(sizes.get(k, 0) for k in parts) if sizes else None,
                    "messages": sum(max(0, latest.get(k, 0) - earliest.get(k, 0)) for k in parts),
                    "end_offsets": sum(latest.get(k, 0) for k in parts),
                    **{key.replace(".", "_"): configs.get(name, {}).get(key) for key in LISTED_CONFIGS},
                }
            )
        return out

    def topic_info(self, name: str) -> Any:
        try:
            return self.client.topic(name)
        except KafkaError as e:
            if e.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                raise NotFound(f"no topic {name!r}") from None
            raise

    def topic(self, name: str) -> dict:
        info = self.topic_info(name)
        keys = [(name, p) for p, part in info.partitions.items() if part.leader >= 0]
        earliest = self.client.list_offsets(keys, EARLIEST) if keys else {}
        latest = self.client.list_offsets(keys, LATEST) if keys else {}
        sizes = self.sizes([name])
        partitions = [
            {
                "partition": index,
                "leader": p.leader,
                "replicas": p.replicas,
                "isr": p.isr,
                "start_offset": earliest.get((name, index)),
                "end_offset": latest.get((name, index)),
                "size_bytes": sizes.get((name, index)),
            }
            for index, p in info.partitions.items()
        ]
        configs = [
            {
                "name": e.name,
                "value": None if e.is_sensitive else e.value,
                "source": CONFIG_SOURCES.get(e.config_source, "default"),
                "read_only": e.read_only,
                "sensitive": e.is_sensitive,
            }
            for e in sorted(self.client.describe_configs(RESOURCE_TOPIC, name), key=lambda e: e.name)
        ]
        return {
            "name": name,
            "id": str(info.id),
            "internal": info.internal,
            "replication_factor": replication_factor(info),
            "partitions": partitions,
            "configs": configs,
        }

    def alter_topic_configs(self, name: str, set_: dict, delete: Sequence[str], validate_only: bool) -> dict:
        if not isinstance(set_, dict) or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in set_.items()):
            raise BadRequest("set must map config names to string values")
        if not isinstance(delete, list) or not all(isinstance(k, str) and k for k in delete):
            raise BadRequest("delete must be a list of config names")
        if not set_ and not delete:
            raise BadRequest("nothing to change")
        self.topic_info(name)
        self.client.alter_configs(RESOURCE_TOPIC, name, set_, delete, validate_only=validate_only)
        return {"topic": name, "validated_only": validate_only, "set": set_, "deleted": delete}

    # messages

    def messages(self, name: str, partition: int, *, offset: Optional[int] = None, timestamp: Optional[int] = None,
                 limit: int = 50) -> dict:
        """Up to `limit` records of one partition: from `offset`, or from the first at or after
        `timestamp` (ms), or else the newest ones."""
        info = self.topic_info(name)
        if partition not in info.partitions:
            raise NotFound(f"topic {name!r} has no partition {partition}")
        key = (name, partition)
        start, end = self.client.list_offsets([key], EARLIEST)[key], self.client.list_offsets([key], LATEST)[key]
        if timestamp is not None:
            found = self.client.list_offsets([key], timestamp)[key]
            first = end if found < 0 else found
        elif offset is not None:
            first = min(max(offset, start), end)
        else:
            first = max(start, end - limit)
        records: list[Record] = []
        position = first
        deadline = time.monotonic() + 5
        while position < end and len(records) < limit and time.monotonic() < deadline:
            fetched = self.client.fetch({key: position}, max_wait_ms=0, partition_max_bytes=FETCH_BYTES, max_bytes=FETCH_BYTES)[key]
            if fetched.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                break
            if fetched.error_code:
                raise KafkaError(fetched.error_code, context=f"fetch {name}-{partition}")
            fresh = [r for r in fetched.records if r.offset >= position]
            if not fresh:
                if fetched.next_offset > position:  # control batches or compacted gaps only
                    position = fetched.next_offset
                    continue
                break
            records += fresh[: limit - len(records)]
            position = records[-1].offset + 1
        return {
            "topic": name,
            "partition": partition,
            "start_offset": start,
            "end_offset": end,
            "first_offset": first,
            "next_offset": position,
            "messages": [self.message(partition, r, self.schemas()) for r in records],
        }

    @staticmethod
    def message(partition: int, record: Record, schemas: Optional[SchemaLookup]) -> dict:
        return {
            "partition": partition,
            "offset": record.offset,
            "timestamp": record.timestamp,
            "key": render(record.key, schemas),
            "value": render(record.value, schemas),
            "headers": [{"key": k, "value": render(v, None)} for k, v in record.headers],
        }

    def produce(self, name: str, partition: Optional[int], key: Optional[str], value: Optional[str], headers: list) -> dict:
        info = self.topic_info(name)
        if partition is None:
            partition = min(info.partitions)
        elif partition not in info.partitions:
            raise NotFound(f"topic {name!r} has no partition {partition}")
        for item in (key, value):
            if item is not None and not isinstance(item, str):
                raise BadRequest("key and value must be strings or null")
        if not isinstance(headers, list) or not all(isinstance(h, dict) and isinstance(h.get("key"), str) and isinstance(h.get("value", ""), (str, type(None))) for h in headers):
            raise BadRequest("headers must be a list of {key, value} strings")
        key_bytes = None if key is None else key.encode()
        value_bytes = None if value is None else value.encode()
        size = len(key_bytes or b"") + len(value_bytes or b"")
        if size > MAX_PRODUCE_BYTES:
            raise BadRequest(f"a test message may hold at most {MAX_PRODUCE_BYTES} bytes, got {size}")
        record = Record(
            offset=0,
            timestamp=int(time.time() * 1000),
            key=key_bytes,
            value=value_bytes,
            headers=[(h["key"], None if h.get("value") is None else h["value"].encode()) for h in headers],
        )
        offset = self.client.produce({(name, partition): [record]})[(name, partition)]
        return {"topic": name, "partition": partition, "offset": offset}

    # consumer groups

    def groups(self) -> list[dict]:
        listed = sorted(self.client.list_groups(), key=lambda g: g.group_id)
        return [
            {"group": g.group_id, "protocol_type": g.protocol_type, "state": getattr(g, "group_state", "") or ""}
            for g in listed
        ]

    def group(self, group_id: str) -> dict:
        try:
            return describe_group(self.client, group_id)
        except KafkaError as e:
            if e.code == ErrorCode.GROUP_ID_NOT_FOUND:
                raise NotFound(f"no group {group_id!r}") from None
            raise

    def reset_group(self, group_id: str, topic: Optional[str], to: str, value: int, execute: bool) -> dict:
        if to not in RESET_TARGETS:
            raise BadRequest(f"to must be one of {', '.join(RESET_TARGETS)}, got {to!r}")
        refuse_active_group(self.client, group_id)
        if topic:
            keys = [(topic, p) for p in self.topic_info(topic).partitions]
        else:
            keys = sorted({(c.topic, c.partition) for c in self.client.committed_offsets(group_id) if c.offset >= 0})
            if not keys:
                raise BadRequest(f"group {group_id!r} has no committed offsets; pick a topic")
        current = {(c.topic, c.partition): c.offset for c in self.client.committed_offsets(group_id, keys)}
        planned = plan_reset(self.client, keys, to, value)
        if execute:
            self.client.commit_offsets(group_id, planned)
        return {
            "group": group_id,
            "executed": execute,
            "offsets": [
                {"topic": t, "partition": p, "current_offset": current.get((t, p), -1), "new_offset": planned[(t, p)]}
                for t, p in keys
            ],
        }

    # the history's samples

    def sample(self) -> dict:
        """Cumulative counts now, for the charts: messages in the log (end offsets summed)
        per topic, bytes on disk, and each group's committed offsets and lag."""
        cluster = self.client.metadata()
        keys = [(t.name, p) for t in cluster.topics.values() if not t.internal for p, part in t.partitions.items() if part.leader >= 0]
        latest = self.client.list_offsets(keys, LATEST) if keys else {}
        per_topic: dict[str, int] = {}
        for (topic, _), offset in latest.items():
            per_topic[topic] = per_topic.get(topic, 0) + offset
        lag: dict[str, int] = {}
        consumed = 0
        for listed in self.client.list_groups()[:MAX_SAMPLED_GROUPS]:
            try:
                committed = self.client.committed_offsets(listed.group_id)
            except KafkaError:
                continue
            total = 0
            for c in committed:
                if c.offset >= 0 and (c.topic, c.partition) in latest:
                    consumed += c.offset
                    total += max(0, latest[(c.topic, c.partition)] - c.offset)
            lag[listed.group_id] = total
        return {
            "time": time.time(),
            "topic_offsets": per_topic,
            "produced": sum(per_topic.values()),
            "consumed": consumed,
            "size_bytes": sum(self.sizes().values()),
            "lag": lag,
        }


MAX_SAMPLED_GROUPS = 200  # groups whose lag the history follows
