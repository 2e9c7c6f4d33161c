"""`fastlog acls add|list|remove`: the ACLs of a broker's authorizer, as Kafka's
kafka-acls.sh manages them (CreateAcls, DescribeAcls, DeleteAcls).

`add` makes one ACL for each principal x host x operation x resource given; `--producer` and
`--consumer` stand for the operations those roles need, as in kafka-acls.sh. `list` and
`remove` take filters: what is not given matches anything (a departure from kafka-acls.sh,
whose `--remove` takes `*` for an unnamed host and All for an unnamed operation). Arguments
are checked here, before the broker is asked; what the broker refuses is reported with its
error name and message.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Iterable, Optional, Sequence

from fastlog import protocol
from fastlog.client import KafkaError
from fastlog.protocol import ErrorCode
from fastlog.security.acls import CLUSTER_NAME, OPERATIONS_OF, WILDCARD, AclBinding, Operation, PatternType, Permission, ResourceType
from fastlog.tools import ToolError, add_common, command, connect, print_json, print_table

# CreateAcls and DeleteAcls may wait for a cluster's metadata quorum (the broker allows 30 s).
CHANGE_TIMEOUT_SECONDS = 30.0
HEADERS = ["RESOURCE_TYPE", "NAME", "PATTERN", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"]
# kafka-acls.sh's operation names (AclOperation's, in CamelCase); matched ignoring case and `_`.
OPERATION_NAMES = {
    "All": Operation.ALL, "Read": Operation.READ, "Write": Operation.WRITE, "Create": Operation.CREATE, "Delete": Operation.DELETE,
    "Alter": Operation.ALTER, "Describe": Operation.DESCRIBE, "ClusterAction": Operation.CLUSTER_ACTION,
    "DescribeConfigs": Operation.DESCRIBE_CONFIGS, "AlterConfigs": Operation.ALTER_CONFIGS, "IdempotentWrite": Operation.IDEMPOTENT_WRITE,
}
_OPERATION_KEYS = {name.lower(): op for name, op in OPERATION_NAMES.items()}
PRODUCER_OPERATIONS = {
    ResourceType.TOPIC: (Operation.WRITE, Operation.DESCRIBE, Operation.CREATE),
    ResourceType.TRANSACTIONAL_ID: (Operation.WRITE, Operation.DESCRIBE),
}
CONSUMER_OPERATIONS = {
    ResourceType.TOPIC: (Operation.READ, Operation.DESCRIBE),
    ResourceType.GROUP: (Operation.READ,),
}
NO_AUTHORIZER = "the broker has no authorizer (set authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer to use ACLs)"

Resource = tuple[ResourceType, str]


def operation(text: str) -> Operation:
    found = _OPERATION_KEYS.get(text.replace("_", "").replace("-", "").lower())
    if found is None:
        raise argparse.ArgumentTypeError(f"unknown operation {text!r} (one of {', '.join(OPERATION_NAMES)})")
    return found


def principal(text: str) -> str:
    kind, sep, name = text.partition(":")
    if not sep or not kind.strip() or not name.strip():
        raise argparse.ArgumentTypeError(f"expected TYPE:NAME (User:alice, or User:* for everyone), got {text!r}")
    return text.strip()


def register(commands: "argparse._SubParsersAction") -> None:
    acls = commands.add_parser("acls", help="manage ACLs", description="Add, list and remove the ACLs of the broker's authorizer (as kafka-acls.sh).")
    sub = acls.add_subparsers(dest="acls_command", metavar="ACTION", required=True)

    add = command(sub, "add", do_add, full_name="acls add", help="add ACLs",
                  description="Add one ACL for each principal x host x operation x resource given.")
    _add_principals(add, "add")
    _add_operations(add, "add")
    _add_resources(add, ("literal", "prefixed"), "literal")
    add_common(add)

    list_ = command(sub, "list", do_list, full_name="acls list", help="list ACLs",
                    description="List ACLs; with no resource, those of every resource.")
    list_.add_argument("--principal", type=principal, action="append", default=[], help="only this principal's ACLs (repeatable)")
    _add_resources(list_, ("any", "match", "literal", "prefixed"), "any")
    add_common(list_)

    remove = command(sub, "remove", do_remove, full_name="acls remove", help="remove ACLs",
                     description="Remove the ACLs that match: a principal, host or operation not given matches any. "
                     "Prints what was removed.")
    _add_principals(remove, "remove")
    remove.add_argument("--principal", type=principal, action="append", default=[], help="ACLs of this principal, allowed or denied (repeatable)")
    _add_operations(remove, "remove")
    _add_resources(remove, ("any", "match", "literal", "prefixed"), "literal")
    add_common(remove)

    for parser in (add, list_, remove):
        parser.set_defaults(acls_parser=parser)


def _add_principals(parser: argparse.ArgumentParser, action: str) -> None:
    group = parser.add_argument_group("principals")
    group.add_argument("--allow-principal", type=principal, action="append", default=[], metavar="TYPE:NAME", help="User:alice, or User:* for everyone (repeatable)")
    group.add_argument("--deny-principal", type=principal, action="append", default=[], metavar="TYPE:NAME", help="repeatable")
    unnamed = "*" if action == "add" else "any"
    group.add_argument("--allow-host", action="append", default=[], metavar="HOST", help=f"host of the --allow-principals (repeatable; default {unnamed})")
    group.add_argument("--deny-host", action="append", default=[], metavar="HOST", help=f"host of the --deny-principals (repeatable; default {unnamed})")


def _add_operations(parser: argparse.ArgumentParser, action: str) -> None:
    group = parser.add_argument_group("operations")
    unnamed = "All" if action == "add" else "any"
    group.add_argument("--operation", type=operation, action="append", default=[], metavar="OPERATION",
                       help=f"{', '.join(OPERATION_NAMES)} (repeatable; any case; default {unnamed})")
    group.add_argument("--producer", action="store_true", help="a producer's: Write, Describe, Create on the topics (Write, Describe on the transactional ids)")
    group.add_argument("--idempotent", action="store_true", help="with --producer: IdempotentWrite on the cluster too")
    group.add_argument("--consumer", action="store_true", help="a consumer's: Read, Describe on the topics, Read on the groups")


def _add_resources(parser: argparse.ArgumentParser, pattern_types: Sequence[str], default: str) -> None:
    group = parser.add_argument_group("resources")
    group.add_argument("--topic", action="append", default=[], metavar="NAME", help="a topic (repeatable; * for every topic)")
    group.add_argument("--group", action="append", default=[], metavar="NAME", help="a consumer group (repeatable)")
    group.add_argument("--transactional-id", action="append", default=[], metavar="NAME", help="a transactional id (repeatable)")
    group.add_argument("--cluster", action="store_true", help=f"the cluster ({CLUSTER_NAME})")
    group.add_argument("--resource-pattern-type", choices=pattern_types, default=default,
                       help=f"how the names match: {'|'.join(pattern_types)} (default {default})")


def _resources(args: argparse.Namespace) -> list[Resource]:
    found = [(ResourceType.TOPIC, n) for n in args.topic] + [(ResourceType.GROUP, n) for n in args.group]
    found += [(ResourceType.TRANSACTIONAL_ID, n) for n in args.transactional_id]
    if args.cluster:
        found.append((ResourceType.CLUSTER, CLUSTER_NAME))
    return list(dict.fromkeys(found))


def _usage_error(args: argparse.Namespace, message: str) -> None:
    args.acls_parser.error(message)  # exits 2, as argparse does


def _operations_by_resource(args: argparse.Namespace, resources: list[Resource], unnamed: Operation) -> list[tuple[Resource, list[Operation]]]:
    """The operations each resource gets (add) or is filtered on (remove), checked as
    kafka-acls.sh checks them."""
    convenience = args.producer or args.consumer
    if convenience and args.operation:
        _usage_error(args, "--operation cannot be used with --producer or --consumer (they name the operations)")
    if convenience and (args.deny_principal or args.deny_host):
        _usage_error(args, "--deny-principal and --deny-host cannot be used with --producer or --consumer")
    if args.idempotent and not args.producer:
        _usage_error(args, "--idempotent is only used with --producer")
    if args.producer and not args.topic:
        _usage_error(args, "with --producer you must give a --topic")
    if args.consumer and not (args.topic and args.group):
        _usage_error(args, "with --consumer you must give a --topic and a --group")
    out: list[tuple[Resource, list[Operation]]] = []
    if convenience:
        if args.cluster and not args.idempotent:
            _usage_error(args, "--cluster gets no ACLs from --producer or --consumer (use --operation, or --producer --idempotent)")
        for kind, name in resources:
            ops: list[Operation] = []
            if args.producer:
                ops += PRODUCER_OPERATIONS.get(kind, ())
                if kind == ResourceType.CLUSTER:
                    ops.append(Operation.IDEMPOTENT_WRITE)
            if args.consumer:
                ops += CONSUMER_OPERATIONS.get(kind, ())
            if not ops:
                option = "--group" if kind == ResourceType.GROUP else "--transactional-id"
                _usage_error(args, f"{option} gets no ACLs from {'--producer' if args.producer else '--consumer'}")
            out.append(((kind, name), list(dict.fromkeys(ops))))
        if args.idempotent and (ResourceType.CLUSTER, CLUSTER_NAME) not in resources:
            out.append(((ResourceType.CLUSTER, CLUSTER_NAME), [Operation.IDEMPOTENT_WRITE]))
        return out
    ops = list(dict.fromkeys(args.operation)) or [unnamed]
    for kind, name in resources:
        valid = OPERATIONS_OF[kind] + (Operation.ALL,)
        wrong = [op for op in ops if op not in valid and op != Operation.ANY]
        if wrong:
            _usage_error(args, f"{kind.name} does not have operation {_op_name(wrong[0])} (it has {', '.join(_op_name(o) for o in valid)})")
        out.append(((kind, name), ops))
    return out


def _op_name(op: Operation) -> str:
    return next(name for name, o in OPERATION_NAMES.items() if o == op)


def _entries(args: argparse.Namespace, unnamed_host: Optional[str]) -> list[tuple[Optional[str], Optional[str], Permission]]:
    """(principal, host, permission) of each ACL (add) or filter (remove)."""
    if args.allow_host and not args.allow_principal:
        _usage_error(args, "--allow-host needs --allow-principal")
    if args.deny_host and not args.deny_principal:
        _usage_error(args, "--deny-host needs --deny-principal")
    out: list[tuple[Optional[str], Optional[str], Permission]] = []
    for principals, hosts, permission in ((args.allow_principal, args.allow_host, Permission.ALLOW), (args.deny_principal, args.deny_host, Permission.DENY)):
        for p in dict.fromkeys(principals):
            out += [(p, h, permission) for h in (list(dict.fromkeys(h.strip() for h in hosts)) or [unnamed_host])]
    out += [(p, None, Permission.ANY) for p in dict.fromkeys(getattr(args, "principal", []))]
    return out


def _check(code: int, message: Optional[str], context: str) -> None:
    if code == ErrorCode.SECURITY_DISABLED:
        raise ToolError(f"{context}: SECURITY_DISABLED: {NO_AUTHORIZER}")
    if code:
        raise KafkaError(code, message, context)


def _row(acl: AclBinding) -> tuple[str, ...]:
    return (ResourceType(acl.resource_type).name, acl.resource_name, PatternType(acl.pattern_type).name, acl.principal, acl.host,
            Operation(acl.operation).name, Permission(acl.permission).name)


def _print(acls: Iterable[AclBinding], as_json: bool) -> None:
    rows = [_row(acl) for acl in sorted(set(acls))]
    if as_json:
        keys = ["resource_type", "name", "pattern_type", "principal", "host", "operation", "permission"]
        print_json([dict(zip(keys, row)) for row in rows])
    else:
        print_table(rows, HEADERS)


def do_add(args: argparse.Namespace) -> int:
    resources = _resources(args)
    if not resources:
        _usage_error(args, "give a resource: --topic, --group, --transactional-id or --cluster")
    if not (args.allow_principal or args.deny_principal):
        _usage_error(args, "give a principal: --allow-principal or --deny-principal")
    entries = _entries(args, WILDCARD)
    pattern = PatternType[args.resource_pattern_type.upper()]
    wanted = list(dict.fromkeys(
        AclBinding(kind, name, pattern, p, h, op, permission)
        for (kind, name), ops in _operations_by_resource(args, resources, Operation.ALL)
        for p, h, permission in entries
        for op in ops
    ))
    R = protocol.CreateAclsRequest
    creations = [R.AclCreation(resource_type=a.resource_type, resource_name=a.resource_name, resource_pattern_type=a.pattern_type,
                               principal=a.principal, host=a.host, operation=a.operation, permission_type=a.permission) for a in wanted]
    with connect(args) as client:
        response = client.any_connection().request(R(creations=creations), extra_timeout=CHANGE_TIMEOUT_SECONDS)
    if len(response.results) != len(wanted):
        raise ToolError(f"CreateAcls: {len(response.results)} results for {len(wanted)} ACLs")
    added = [a for a, r in zip(wanted, response.results) if not r.error_code]
    failed = [(a, r) for a, r in zip(wanted, response.results) if r.error_code]
    if added:
        _print(added, args.json)
    if failed:
        acl, result = failed[0]
        more = f" (and {len(failed) - 1} more ACLs refused)" if len(failed) > 1 else ""
        if added:
            print(f"added {len(added)} of {len(wanted)} ACLs", file=sys.stderr)
        whole_request = result.error_code in (ErrorCode.SECURITY_DISABLED, ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
        _check(result.error_code, result.error_message, "CreateAcls" if whole_request else f"{acl.describe()}{more}")
    return 0


def _filters(args: argparse.Namespace) -> list[dict[str, Any]]:
    """DeleteAcls filters (as keyword arguments) for `remove`."""
    resources = _resources(args)
    entries = _entries(args, None)
    if not resources and not entries:
        _usage_error(args, "give a resource (--topic, --group, --transactional-id, --cluster) or a principal")
    pattern = PatternType[args.resource_pattern_type.upper()]
    if resources:
        targets = [((kind, name), ops) for (kind, name), ops in _operations_by_resource(args, resources, Operation.ANY)]
    else:
        if args.producer or args.consumer or args.idempotent:
            _usage_error(args, "--producer and --consumer need a resource")
        targets = [((ResourceType.ANY, None), list(dict.fromkeys(args.operation)) or [Operation.ANY])]
    entries = entries or [(None, None, Permission.ANY)]
    filters = [
        dict(resource_type_filter=kind, resource_name_filter=name, pattern_type_filter=pattern, principal_filter=p, host_filter=h,
             operation=op, permission_type=permission)
        for (kind, name), ops in targets for p, h, permission in entries for op in ops
    ]
    return list({tuple(f.values()): f for f in filters}.values())


def do_remove(args: argparse.Namespace) -> int:
    R = protocol.DeleteAclsRequest
    filters = _filters(args)
    with connect(args) as client:
        response = client.any_connection().request(R(filters=[R.DeleteAclsFilter(**f) for f in filters]), extra_timeout=CHANGE_TIMEOUT_SECONDS)
    removed: list[AclBinding] = []
    errors = []
    for result in response.filter_results:
        if result.error_code:
            errors.append(result)
            continue
        for m in result.matching_acls:
            if m.error_code:
                errors.append(m)
            else:
                removed.append(AclBinding(m.resource_type, m.resource_name, m.pattern_type, m.principal, m.host, m.operation, m.permission_type))
    if removed or not errors:
        _print(removed, args.json)
    if not removed and not errors and not args.json:
        print("no ACL matched", file=sys.stderr)
    if errors:
        _check(errors[0].error_code, errors[0].error_message, "DeleteAcls")
    return 0


def do_list(args: argparse.Namespace) -> int:
    R = protocol.DescribeAclsRequest
    pattern = PatternType[args.resource_pattern_type.upper()]
    resources: list[tuple[ResourceType, Optional[str]]] = list(_resources(args)) or [(ResourceType.ANY, None)]
    principals: list[Optional[str]] = list(dict.fromkeys(args.principal)) or [None]
    found: set[AclBinding] = set()
    with connect(args) as client:
        connection = client.any_connection()
        for kind, name in resources:
            for p in principals:
                response = connection.request(R(resource_type_filter=kind, resource_name_filter=name, pattern_type_filter=pattern, principal_filter=p,
                                                host_filter=None, operation=Operation.ANY, permission_type=Permission.ANY))
                _check(response.error_code, response.error_message, "DescribeAcls")
                for resource in response.resources:
                    found.update(AclBinding(resource.resource_type, resource.resource_name, resource.pattern_type, a.principal, a.host, a.operation, a.permission_type)
                                 for a in resource.acls)
    _print(found, args.json)
    return 0
