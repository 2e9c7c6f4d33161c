"""`fastlog topics create|list|describe|alter|delete` (Kafka's kafka-topics.sh)."""

from __future__ import annotations

import argparse
from typing import Any, Optional

from fastlog.client import RESOURCE_TOPIC, Client, KafkaError, UnsupportedByBroker
from fastlog.protocol import ErrorCode
from fastlog.tools import add_common, command, connect, key_value, positive_int, print_json, print_table

# DescribeConfigs config_source: DYNAMIC_TOPIC_CONFIG is a topic's own override.
DYNAMIC_TOPIC_CONFIG = 1


def register(commands: "argparse._SubParsersAction") -> None:
    topics = commands.add_parser(
        "topics",
        help="create, list, describe, alter and delete topics",
        description="Create, list, describe, alter and delete topics.",
    )
    sub = topics.add_subparsers(dest="topics_command", metavar="ACTION", required=True)

    create = command(sub, "create", do_create, full_name="topics create", help="create a topic", description="Create a topic.")
    create.add_argument("--topic", required=True, help="topic name")
    create.add_argument("--partitions", type=positive_int, default=None, help="partition count (default: the broker's num.partitions)")
    create.add_argument("--replication-factor", type=positive_int, default=None, help="replicas per partition (default: the broker's)")
    create.add_argument("--config", type=key_value, action="append", default=[], metavar="KEY=VALUE", help="a topic config, e.g. retention.ms=3600000 (repeatable)")
    create.add_argument("--if-not-exists", action="store_true", help="succeed when the topic already exists")
    add_common(create)

    list_ = command(sub, "list", do_list, full_name="topics list", help="list topics", description="List topics.")
    list_.add_argument("--exclude-internal", action="store_true", help="leave out internal topics (__consumer_offsets ...)")
    add_common(list_)

    describe = command(
        sub,
        "describe",
        do_describe,
        full_name="topics describe",
        help="describe topics: partitions, leaders, offsets, size on disk",
        description="Describe topics: config overrides, and per partition the leader, replicas, "
        "earliest and latest offsets, and size on disk (from DescribeLogDirs).",
    )
    describe.add_argument("--topic", action="append", default=None, help="topic to describe (repeatable; default: all)")
    describe.add_argument("--exclude-internal", action="store_true", help="leave out internal topics")
    add_common(describe)

    alter = command(
        sub, "alter", do_alter, full_name="topics alter", help="add partitions or change configs", description="Add partitions to a topic or change its configs."
    )
    alter.add_argument("--topic", required=True, help="topic name")
    alter.add_argument("--partitions", type=positive_int, help="the new (larger) partition count")
    alter.add_argument("--config", type=key_value, action="append", default=[], metavar="KEY=VALUE", help="set a topic config (repeatable)")
    alter.add_argument("--delete-config", action="append", default=[], metavar="KEY", help="remove a topic config override (repeatable)")
    add_common(alter)

    delete = command(sub, "delete", do_delete, full_name="topics delete", help="delete topics", description="Delete topics.")
    delete.add_argument("--topic", action="append", required=True, help="topic to delete (repeatable)")
    delete.add_argument("--if-exists", action="store_true", help="succeed when a topic does not exist")
    add_common(delete)


def do_create(args: argparse.Namespace) -> int:
    with connect(args) as client:
        try:
            client.create_topic(args.topic, args.partitions or -1, args.replication_factor or -1, dict(args.config))
        except KafkaError as e:
            if not (args.if_not_exists and e.code == ErrorCode.TOPIC_ALREADY_EXISTS):
                raise
            created = False
        else:
            created = True
        info = client.topic(args.topic)
    result = {"topic": args.topic, "created": created, "partitions": len(info.partitions), "topic_id": str(info.id)}
    if args.json:
        print_json(result)
    elif created:
        print(f"Created topic {args.topic} ({len(info.partitions)} partitions).")
    else:
        print(f"Topic {args.topic} already exists.")
    return 0


def replication_factor(info: Any) -> int:
    return max((len(p.replicas) for p in info.partitions.values()), default=0)


def do_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        cluster = client.metadata()
    topics = [t for name, t in sorted(cluster.topics.items()) if not (args.exclude_internal and t.internal)]
    if args.json:
        print_json([{"topic": t.name, "partitions": len(t.partitions), "replication_factor": replication_factor(t), "internal": t.internal} for t in topics])
    else:
        print_table([(t.name, len(t.partitions), replication_factor(t), "yes" if t.internal else "") for t in topics], ["TOPIC", "PARTITIONS", "REPLICATION-FACTOR", "INTERNAL"])
    return 0


def describe_topic(client: Client, name: str, sizes: dict) -> dict:
    info = client.topic(name)
    offsets = client.offsets_of(name)
    overrides = {
        e.name: e.value for e in client.describe_configs(RESOURCE_TOPIC, name) if e.config_source == DYNAMIC_TOPIC_CONFIG and not e.is_sensitive
    }
    partitions = []
    for index, p in info.partitions.items():
        earliest, latest = offsets[index]
        partitions.append(
            {
                "partition": index,
                "leader": p.leader,
                "replicas": p.replicas,
                "isr": p.isr,
                "earliest_offset": earliest,
                "latest_offset": latest,
                "messages": max(0, latest - earliest),
                "size_bytes": sizes.get((name, index)),
            }
        )
    return {
        "topic": name,
        "topic_id": str(info.id),
        "internal": info.internal,
        "partition_count": len(info.partitions),
        "replication_factor": replication_factor(info),
        "configs": overrides,
        "size_bytes": sum(p["size_bytes"] or 0 for p in partitions) if sizes else None,
        "partitions": partitions,
    }


def do_describe(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.topic:
            names = list(dict.fromkeys(args.topic))
            for name in names:
                client.topic(name)  # unknown topic: fail before any output
        else:
            cluster = client.metadata()
            names = [n for n, t in sorted(cluster.topics.items()) if not (args.exclude_internal and t.internal)]
        try:
            sizes = client.log_dir_sizes(names) if names else {}
        except UnsupportedByBroker:
            sizes = {}  # a broker without DescribeLogDirs: sizes unknown
        described = [describe_topic(client, name, sizes) for name in names]
    if args.json:
        print_json(described)
        return 0
    for i, topic in enumerate(described):
        if i:
            print()
        configs = ",".join(f"{k}={v}" for k, v in sorted(topic["configs"].items()))
        print(
            f"Topic: {topic['topic']}  TopicId: {topic['topic_id']}  PartitionCount: {topic['partition_count']}  "
            f"ReplicationFactor: {topic['replication_factor']}  Size: {human_bytes(topic['size_bytes'])}  Configs: {configs}"
        )
        rows = [
            (
                p["partition"],
                p["leader"],
                ",".join(map(str, p["replicas"])),
                ",".join(map(str, p["isr"])),
                p["earliest_offset"],
                p["latest_offset"],
                p["messages"],
                p["size_bytes"],
            )
            for p in topic["partitions"]
        ]
        print_table(rows, ["PARTITION", "LEADER", "REPLICAS", "ISR", "EARLIEST-OFFSET", "LATEST-OFFSET", "MESSAGES", "SIZE-BYTES"])
    return 0


def human_bytes(size: Optional[int]) -> str:
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def do_alter(args: argparse.Namespace) -> int:
    if args.partitions is None and not args.config and not args.delete_config:
        raise ValueError("nothing to alter: give --partitions, --config or --delete-config")
    done = []
    with connect(args) as client:
        client.topic(args.topic)
        if args.config or args.delete_config:
            client.alter_configs(RESOURCE_TOPIC, args.topic, dict(args.config), args.delete_config)
            done.append("configs")
        if args.partitions is not None:
            client.create_partitions(args.topic, args.partitions)
            done.append("partitions")
    if args.json:
        print_json({"topic": args.topic, "altered": done})
    else:
        print(f"Altered topic {args.topic}: {' and '.join(done)}.")
    return 0


def do_delete(args: argparse.Namespace) -> int:
    names = list(dict.fromkeys(args.topic))
    deleted = []
    with connect(args) as client:
        existing = client.metadata(names).topics
        for name in names:
            info = existing.get(name)
            if info is None or info.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                if args.if_exists:
                    continue
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, context=f"delete topic {name!r}")
        wanted = [n for n in names if n in existing and not existing[n].error_code]
        if wanted:
            client.delete_topics(wanted)
            deleted = wanted
    if args.json:
        print_json({"deleted": deleted})
    else:
        for name in deleted:
            print(f"Deleted topic {name}.")
    return 0
