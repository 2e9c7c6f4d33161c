"""`fastlog groups list|describe|reset-offsets|delete` (Kafka's kafka-consumer-groups.sh).

describe shows, per partition with a committed offset, the committed offset, the log end
offset and the lag (log end - committed), and the member it is assigned to when the group
uses the consumer protocol. reset-offsets prints the new offsets and changes nothing unless
`--execute` is given (`--dry-run` is the default), and refuses a group that has members, as
Kafka's tool does.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from fastlog import protocol
from fastlog.client import EARLIEST, LATEST, Client, KafkaError, error_name
from fastlog.protocol import ErrorCode
from fastlog.tools import ToolError, add_common, command, connect, print_json, print_table


def register(commands: "argparse._SubParsersAction") -> None:
    groups = commands.add_parser(
        "groups",
        help="list, describe, reset offsets of and delete consumer groups",
        description="List, describe, reset offsets of and delete consumer groups.",
    )
    sub = groups.add_subparsers(dest="groups_command", metavar="ACTION", required=True)

    list_ = command(sub, "list", do_list, full_name="groups list", help="list groups", description="List the groups of every broker.")
    add_common(list_)

    describe = command(
        sub, "describe", do_describe, full_name="groups describe",
        help="committed offsets, lag and members of groups",
        description="Show each partition's committed offset, log end offset and lag, and the group's members.",
    )
    target = describe.add_mutually_exclusive_group(required=True)
    target.add_argument("--group", action="append", help="group to describe (repeatable)")
    target.add_argument("--all-groups", action="store_true", help="describe every group")
    add_common(describe)

    reset = command(
        sub, "reset-offsets", do_reset, full_name="groups reset-offsets",
        help="move a group's committed offsets (dry run unless --execute)",
        description="Move a group's committed offsets. Prints the plan only, unless --execute is given.",
    )
    reset.add_argument("--group", required=True)
    scope = reset.add_mutually_exclusive_group(required=True)
    scope.add_argument("--topic", action="append", metavar="TOPIC[:P,P...]", help="a topic, or some of its partitions (repeatable)")
    scope.add_argument("--all-topics", action="store_true", help="every topic the group has offsets for")
    to = reset.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="the earliest offset still in the log")
    to.add_argument("--to-latest", action="store_true", help="the log end offset")
    to.add_argument("--to-offset", type=int, metavar="N", help="this offset (kept within earliest..latest)")
    to.add_argument("--to-datetime", type=parse_datetime, metavar="YYYY-MM-DDTHH:mm:SS[.sss][+HH:MM]", help="the first offset at or after this time (local time unless an offset is given)")
    mode = reset.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="only show the new offsets (the default)")
    mode.add_argument("--execute", action="store_true", help="commit the new offsets")
    add_common(reset)

    delete = command(sub, "delete", do_delete, full_name="groups delete", help="delete groups", description="Delete groups (they must have no members).")
    delete.add_argument("--group", action="append", required=True, help="group to delete (repeatable)")
    add_common(delete)


def do_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        groups = sorted(client.list_groups(), key=lambda g: g.group_id)
    if args.json:
        print_json([{"group": g.group_id, "state": g.group_state or None, "protocol_type": g.protocol_type} for g in groups])
    else:
        print_table([(g.group_id, g.group_state or "-", g.protocol_type or "-") for g in groups], ["GROUP", "STATE", "PROTOCOL-TYPE"])
    return 0


def assignments(group: Any) -> dict[tuple[str, int], Any]:
    """(topic, partition) -> member, from the consumer protocol's assignments."""
    out: dict[tuple[str, int], Any] = {}
    if group.protocol_type != "consumer":
        return out
    for member in group.members:
        data = bytes(member.member_assignment or b"")
        if len(data) < 2:
            continue
        version = min(int.from_bytes(data[:2], "big", signed=True), protocol.ConsumerProtocolAssignment.VALID_VERSIONS[1])
        try:
            # as Kafka's ConsumerProtocol: a newer version read as ours, what follows ignored
            assignment = protocol.ConsumerProtocolAssignment.decode(protocol.Reader(data[2:]), version)
        except protocol.CodecError:
            continue
        for topic in assignment.assigned_partitions:
            for index in topic.partitions:
                out[(topic.topic, index)] = member
    return out


def describe_group(client: Client, group_id: str) -> dict:
    group = client.describe_group(group_id)
    if group.group_state == "Dead":
        raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND, context=f"group {group_id!r}")
    committed = [c for c in client.committed_offsets(group_id) if c.offset >= 0]
    assigned = assignments(group)
    keys = sorted({(c.topic, c.partition) for c in committed} | set(assigned))
    ends = end_offsets(client, keys)
    offsets = {(c.topic, c.partition): c.offset for c in committed}
    partitions = []
    for key in keys:
        member = assigned.get(key)
        current = offsets.get(key)
        end = ends.get(key)
        partitions.append(
            {
                "topic": key[0],
                "partition": key[1],
                "current_offset": current,
                "log_end_offset": end,
                "lag": None if current is None or end is None else max(0, end - current),
                "consumer_id": member.member_id if member else None,
                "host": member.client_host if member else None,
                "client_id": member.client_id if member else None,
            }
        )
    return {
        "group": group_id,
        "state": group.group_state,
        "protocol_type": group.protocol_type,
        "protocol": group.protocol_data,
        "members": [{"member_id": m.member_id, "client_id": m.client_id, "host": m.client_host} for m in group.members],
        "total_lag": sum(p["lag"] or 0 for p in partitions),
        "partitions": partitions,
    }


def end_offsets(client: Client, keys: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Log end offsets of the partitions that still exist."""
    if not keys:
        return {}
    topics = client.metadata(sorted({t for t, _ in keys})).topics
    existing = [(t, p) for t, p in keys if t in topics and not topics[t].error_code and p in topics[t].partitions]
    return client.list_offsets(existing, LATEST) if existing else {}


def do_describe(args: argparse.Namespace) -> int:
    with connect(args) as client:
        names = sorted(g.group_id for g in client.list_groups()) if args.all_groups else list(dict.fromkeys(args.group))
        described = [describe_group(client, name) for name in names]
    if args.json:
        print_json(described)
        return 0
    for i, group in enumerate(described):
        if i:
            print()
        print(f"Group: {group['group']}  State: {group['state']}  Members: {len(group['members'])}  Total lag: {group['total_lag']}")
        rows = [
            (group["group"], p["topic"], p["partition"], p["current_offset"], p["log_end_offset"], p["lag"], p["consumer_id"], p["host"], p["client_id"])
            for p in group["partitions"]
        ]
        print_table(rows, ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"])
    return 0


def parse_datetime(text: str) -> int:
    """Milliseconds since the epoch; a time without an offset is local time (as Kafka's tool)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not YYYY-MM-DDTHH:mm:SS[.sss][+HH:MM]") from None
    return int(moment.timestamp() * 1000)


def reset_scope(client: Client, args: argparse.Namespace) -> list[tuple[str, int]]:
    if args.all_topics:
        keys = sorted({(c.topic, c.partition) for c in client.committed_offsets(args.group) if c.offset >= 0})
        if not keys:
            raise ToolError(f"group {args.group!r} has no committed offsets; name topics with --topic")
        return keys
    keys = []
    for item in args.topic:
        name, _, wanted = item.partition(":")
        info = client.topic(name)
        if wanted:
            try:
                indexes = [int(p) for p in wanted.split(",") if p.strip()]
            except ValueError:
                raise ToolError(f"--topic {item!r}: partitions must be integers") from None
            for index in indexes:
                if index not in info.partitions:
                    raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, context=f"partition {name}-{index}")
        else:
            indexes = list(info.partitions)
        keys += [(name, i) for i in indexes]
    return sorted(set(keys))


def new_offsets(client: Client, args: argparse.Namespace, keys: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    if args.to_earliest:
        return plan_reset(client, keys, "earliest")
    if args.to_latest:
        return plan_reset(client, keys, "latest")
    if args.to_offset is not None:
        return plan_reset(client, keys, "offset", args.to_offset)
    return plan_reset(client, keys, "timestamp", args.to_datetime)


RESET_TARGETS = ("earliest", "latest", "offset", "timestamp")


def plan_reset(client: Client, keys: list[tuple[str, int]], to: str, value: int = 0) -> dict[tuple[str, int], int]:
    """Where a reset moves each partition: `to` is one of RESET_TARGETS; an offset is kept
    within earliest..latest, a timestamp (ms) finds the first offset at or after it (latest
    when there is none)."""
    earliest = client.list_offsets(keys, EARLIEST)
    latest = client.list_offsets(keys, LATEST)
    if to == "earliest":
        return earliest
    if to == "latest":
        return latest
    if to == "offset":
        return {k: min(max(value, earliest[k]), latest[k]) for k in keys}
    found = client.list_offsets(keys, value)
    return {k: latest[k] if found[k] < 0 else found[k] for k in keys}


def refuse_active_group(client: Client, group_id: str) -> None:
    """Offsets can be reset only while a group has no members, as Kafka's tool insists."""
    try:
        group = client.describe_group(group_id)
    except KafkaError as e:
        if e.code != ErrorCode.GROUP_ID_NOT_FOUND:
            raise
        return
    if group.members:
        raise ToolError(
            f"group {group_id!r} is {group.group_state} with {len(group.members)} members; "
            "offsets can only be reset while it has none (stop its consumers)"
        )


def do_reset(args: argparse.Namespace) -> int:
    with connect(args) as client:
        refuse_active_group(client, args.group)
        keys = reset_scope(client, args)
        planned = new_offsets(client, args, keys)
        if args.execute:
            client.commit_offsets(args.group, planned)
    rows = [{"group": args.group, "topic": t, "partition": p, "new_offset": planned[(t, p)]} for t, p in keys]
    if args.json:
        print_json({"group": args.group, "executed": bool(args.execute), "offsets": rows})
    else:
        print_table([(r["group"], r["topic"], r["partition"], r["new_offset"]) for r in rows], ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"])
        if not args.execute:
            print("Dry run: nothing changed. Add --execute to commit these offsets.")
    return 0


def do_delete(args: argparse.Namespace) -> int:
    names = list(dict.fromkeys(args.group))
    with connect(args) as client:
        results = client.delete_groups(names)
    failed = {g: code for g, code in results.items() if code}
    if args.json:
        print_json([{"group": g, "error": error_name(code) if code else None} for g, code in results.items()])
    else:
        for group, code in results.items():
            print(f"Deleted group {group}." if not code else f"Group {group} not deleted: {error_name(code)}")
    if failed:
        first = next(iter(failed.items()))
        raise KafkaError(first[1], context=f"delete group {first[0]!r}")
    return 0
