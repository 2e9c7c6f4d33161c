"""`fastlog schema-registry`: the schema registry alone, against any Kafka-compatible cluster
(it needs only the `_schemas` topic), as Confluent's and Karapace's run; and
`fastlog schemas list|get|register|check|delete`: the registry's REST API from the command
line (`--url`, default http://127.0.0.1:8081, fastlog serve's own registry).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Optional

from fastlog.tools import ToolError, add_common, command, print_json, print_table

DEFAULT_URL = "http://127.0.0.1:8081"
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def register(commands: "argparse._SubParsersAction") -> None:
    standalone = commands.add_parser(
        "schema-registry",
        help="run the schema registry alone against a Kafka-compatible cluster",
        description="Run the schema registry (Confluent's REST API) against the cluster at --bootstrap-server.",
    )
    add_common(standalone, json_output=False)
    standalone.add_argument("--listeners", default=DEFAULT_URL, help=f"http://HOST:PORT, comma-separated (default {DEFAULT_URL})")
    standalone.add_argument("--topic", default="_schemas", help="the schemas topic (default _schemas)")
    standalone.add_argument("--replication-factor", type=int, default=-1, help="of the topic when created (default: live brokers, at most 3)")
    standalone.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    standalone.set_defaults(func=run_standalone)

    parser = commands.add_parser("schemas", help="list, show, register, check and delete schemas in a schema registry")
    actions = parser.add_subparsers(dest="schemas_command", metavar="ACTION", required=True)

    def action(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        sub = command(actions, name, handler, full_name=f"schemas {name}", help=help_text)
        sub.add_argument("--url", default=DEFAULT_URL, help=f"the registry (default {DEFAULT_URL})")
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
        return sub

    action("list", list_subjects, "subjects and their latest versions").add_argument("--deleted", action="store_true", help="soft-deleted ones too")
    get = action("get", get_schema, "a subject's version (default latest), or a schema by --id")
    get.add_argument("subject", nargs="?")
    get.add_argument("--version", default="latest")
    get.add_argument("--id", type=int)
    for name, handler, help_text in (("register", register_schema, "register a schema under a subject"),
                                     ("check", check_schema, "whether a schema is compatible with a subject")):
        sub = action(name, handler, help_text)
        sub.add_argument("subject")
        sub.add_argument("schema", help="a schema file, or - for standard input")
        sub.add_argument("--type", default="AVRO", choices=["AVRO", "JSON", "PROTOBUF"], help="schema type (default AVRO)")
    delete = action("delete", delete_schema, "soft-delete a subject (or one --version); --permanent after that")
    delete.add_argument("subject")
    delete.add_argument("--version")
    delete.add_argument("--permanent", action="store_true")


def run_standalone(args: argparse.Namespace) -> int:
    import trio

    from fastlog import logs, schema_registry
    from fastlog.config import ConfigError, http_listener_addresses

    logs.configure(args.log_level)
    try:
        addresses = http_listener_addresses(args.listeners, "--listeners")
    except ConfigError as e:
        print(f"fastlog schema-registry: {e}", file=sys.stderr)
        return 2
    if not addresses:
        print("fastlog schema-registry: --listeners names no address", file=sys.stderr)
        return 2

    try:
        sockets = schema_registry.bind(addresses)
    except OSError as e:
        print(f"fastlog schema-registry: cannot listen on {args.listeners}: {e}", file=sys.stderr)
        return 1

    async def main() -> None:
        import signal

        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                registry = schema_registry.new_registry(args.bootstrap_server, args.topic, args.replication_factor)
                nursery.start_soon(schema_registry.serve, registry, sockets)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)
    return 0


# -- the REST client side -------------------------------------------------------------------------


def call(url: str, method: str, path: str, body: Optional[dict] = None) -> Any:
    request = urllib.request.Request(
        url.rstrip("/") + path, method=method, headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
        data=None if body is None else json.dumps(body).encode(),
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read())
            raise ToolError(f"{detail.get('message')} (error code {detail.get('error_code')})") from None
        except ValueError:
            raise ToolError(f"HTTP {e.code} from {url}") from None
    except urllib.error.URLError as e:
        raise ToolError(f"cannot reach the schema registry at {url}: {e.reason}") from None


def quote(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


def read_schema(path: str) -> str:
    return sys.stdin.read() if path == "-" else Path(path).read_text()


def list_subjects(args: argparse.Namespace) -> int:
    rows = []
    deleted = "?deleted=true" if args.deleted else ""
    for subject in call(args.url, "GET", "/subjects" + deleted):
        newest = call(args.url, "GET", f"/subjects/{quote(subject)}/versions{deleted}")[-1]  # "latest" is live ones only
        found = call(args.url, "GET", f"/subjects/{quote(subject)}/versions/{newest}{deleted}")
        rows.append({"subject": subject, "version": found["version"], "id": found["id"], "type": found.get("schemaType", "AVRO")})
    if args.json:
        print_json(rows)
    else:
        print_table([[r["subject"], r["version"], r["id"], r["type"]] for r in rows], ["SUBJECT", "VERSION", "ID", "TYPE"])
    return 0


def get_schema(args: argparse.Namespace) -> int:
    if args.id is not None:
        found = call(args.url, "GET", f"/schemas/ids/{args.id}")
    elif args.subject:
        found = call(args.url, "GET", f"/subjects/{quote(args.subject)}/versions/{quote(str(args.version))}")
    else:
        raise ToolError("name a subject or an --id")
    if args.json:
        print_json(found)
    else:
        print(found["schema"])
    return 0


def _schema_body(args: argparse.Namespace) -> dict:
    body: dict[str, Any] = {"schema": read_schema(args.schema)}
    if args.type != "AVRO":
        body["schemaType"] = args.type
    return body


def register_schema(args: argparse.Namespace) -> int:
    answer = call(args.url, "POST", f"/subjects/{quote(args.subject)}/versions", _schema_body(args))
    print_json(answer) if args.json else print(f"registered under {args.subject}: id {answer['id']}")
    return 0


def check_schema(args: argparse.Namespace) -> int:
    answer = call(args.url, "POST", f"/compatibility/subjects/{quote(args.subject)}/versions?verbose=true", _schema_body(args))
    if args.json:
        print_json(answer)
    else:
        print("compatible" if answer["is_compatible"] else "incompatible")
        for message in answer.get("messages", []):
            print(f"  {message}")
    return 0 if answer["is_compatible"] else 1


def delete_schema(args: argparse.Namespace) -> int:
    permanent = "?permanent=true" if args.permanent else ""
    if args.version is not None:
        deleted = [call(args.url, "DELETE", f"/subjects/{quote(args.subject)}/versions/{quote(args.version)}{permanent}")]
    else:
        deleted = call(args.url, "DELETE", f"/subjects/{quote(args.subject)}{permanent}")
    print_json(deleted) if args.json else print(f"deleted {args.subject} versions {', '.join(map(str, deleted))}")
    return 0
