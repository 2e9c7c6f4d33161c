"""`fastlog quotas list|set|delete`: client quotas, as `kafka-configs.sh --entity-type
users|clients|ips --alter --add-config 'producer_byte_rate=1048576'` manages them
(DescribeClientQuotas, AlterClientQuotas).

An entity is `--user NAME` or `--user-default`, `--client-id NAME` or `--client-default`, a
user and a client id together, or `--ip IP` / `--ip-default`. Keys: producer_byte_rate,
consumer_byte_rate (bytes/s), request_percentage (percent of one thread),
controller_mutation_rate (partitions/s), and for IPs connection_creation_rate.
"""

from __future__ import annotations

import argparse
from typing import Optional

from fastlog.tools import ToolError, add_common, command, connect, print_json, print_table

USER, CLIENT_ID, IP = "user", "client-id", "ip"


def register(commands: "argparse._SubParsersAction") -> None:
    quotas = commands.add_parser("quotas", help="client quotas (bytes/s, request time, mutations, connections)",
                                 description="List, set and delete client quotas of users, client ids and IPs.")
    sub = quotas.add_subparsers(dest="quotas_command", metavar="ACTION", required=True)

    list_ = command(sub, "list", do_list, full_name="quotas list", help="show quotas",
                    description="Show the quotas set, all of them or those of the entity named.")
    add_entity(list_, required=False)
    add_common(list_)

    set_ = command(sub, "set", do_set, full_name="quotas set", help="set quotas of an entity",
                   description="Set quotas of an entity: --add-config 'producer_byte_rate=1048576,consumer_byte_rate=2097152'.")
    add_entity(set_, required=True)
    set_.add_argument("--add-config", required=True, metavar="KEY=VALUE[,KEY=VALUE]", help="quotas to set")
    set_.add_argument("--validate-only", action="store_true", help="check with the broker, change nothing")
    add_common(set_, json_output=False)

    delete = command(sub, "delete", do_delete, full_name="quotas delete", help="remove quotas of an entity",
                     description="Remove quotas of an entity: --delete-config producer_byte_rate[,KEY...].")
    add_entity(delete, required=True)
    delete.add_argument("--delete-config", required=True, metavar="KEY[,KEY]", help="quotas to remove")
    add_common(delete, json_output=False)


def add_entity(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_argument_group("entity" + ("" if required else " (default: every quota)"))
    user = group.add_mutually_exclusive_group()
    user.add_argument("--user", metavar="NAME", help="a user (principal name)")
    user.add_argument("--user-default", action="store_true", help="the default of every user")
    client = group.add_mutually_exclusive_group()
    client.add_argument("--client-id", metavar="NAME", help="a client id")
    client.add_argument("--client-default", action="store_true", help="the default of every client id")
    ip = group.add_mutually_exclusive_group()
    ip.add_argument("--ip", metavar="IP", help="an IP address (connection_creation_rate)")
    ip.add_argument("--ip-default", action="store_true", help="the default of every IP")


def entity_of(args: argparse.Namespace) -> list[tuple[str, Optional[str]]]:
    entity: list[tuple[str, Optional[str]]] = []
    for entity_type, name, default in ((USER, args.user, args.user_default), (CLIENT_ID, args.client_id, args.client_default), (IP, args.ip, args.ip_default)):
        if name is not None and not name:
            raise ToolError(f"an empty {entity_type} name: use --{entity_type.split('-')[0]}-default for the default")
        if name is not None or default:
            entity.append((entity_type, name))
    return entity


def shown(entity: list[tuple[str, Optional[str]]]) -> str:
    return ", ".join(f"{t}={'<default>' if n is None else n}" for t, n in entity)


def do_list(args: argparse.Namespace) -> int:
    entity = entity_of(args)
    components = [(t, 1 if n is None else 0, n) for t, n in entity]
    with connect(args) as client:
        found = client.describe_client_quotas(components, strict=bool(entity))
    rows = [{"entity": {t: n for t, n in e}, "quotas": values} for e, values in found]
    if args.json:
        print_json(rows)
    else:
        print_table([(shown(e), key, format_value(value)) for e, values in found for key, value in sorted(values.items())], ["ENTITY", "QUOTA", "VALUE"])
    return 0


def format_value(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def do_set(args: argparse.Namespace) -> int:
    entity = required_entity(args)
    values: dict[str, Optional[float]] = {}
    for item in filter(None, (part.strip() for part in args.add_config.split(","))):
        key, sep, raw = item.partition("=")
        try:
            values[key.strip()] = float(raw)
        except ValueError:
            raise ToolError(f"--add-config {item!r} is not KEY=NUMBER") from None
        if not sep:
            raise ToolError(f"--add-config {item!r} is not KEY=NUMBER")
    if not values:
        raise ToolError("--add-config names no quota")
    with connect(args) as client:
        client.alter_client_quotas([(entity, values)], validate_only=args.validate_only)
    print(f"{'Valid' if args.validate_only else 'Set'}: {shown(entity)}: " + ", ".join(f"{k}={format_value(v)}" for k, v in values.items() if v is not None))
    return 0


def do_delete(args: argparse.Namespace) -> int:
    entity = required_entity(args)
    keys = [k.strip() for k in args.delete_config.split(",") if k.strip()]
    if not keys:
        raise ToolError("--delete-config names no quota")
    with connect(args) as client:
        client.alter_client_quotas([(entity, dict.fromkeys(keys))])
    print(f"Removed: {shown(entity)}: {', '.join(keys)}")
    return 0


def required_entity(args: argparse.Namespace) -> list[tuple[str, Optional[str]]]:
    entity = entity_of(args)
    if not entity:
        raise ToolError("name an entity: --user/--user-default, --client-id/--client-default, or --ip/--ip-default")
    return entity
