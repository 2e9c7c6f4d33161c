"""`fastlog users scram set|delete|list`: SASL/SCRAM users, as `kafka-configs.sh --entity-type
users --alter --add-config 'SCRAM-SHA-256=[iterations=8192,password=...]'` manages them.

The password is salted and hashed here (a fresh random salt, PBKDF2 with the mechanism's
hash); the broker receives and keeps only what SCRAM needs to check a login, never the
password (AlterUserScramCredentials).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from fastlog import protocol
from fastlog.client import KafkaError, error_name
from fastlog.security.scram import CODES, MECHANISM_CODES, new_salt, salted_password
from fastlog.tools import ToolError, add_common, command, connect, print_json, print_table

PASSWORD_ENV = "FASTLOG_SCRAM_PASSWORD"


def register(commands: "argparse._SubParsersAction") -> None:
    users = commands.add_parser("users", help="manage SASL/SCRAM users", description="Manage SASL/SCRAM users (credentials the broker checks logins against).")
    kinds = users.add_subparsers(dest="users_kind", metavar="KIND", required=True)
    scram = kinds.add_parser("scram", help="SCRAM-SHA-256 and SCRAM-SHA-512 credentials", description="SCRAM credentials.")
    sub = scram.add_subparsers(dest="scram_command", metavar="ACTION", required=True)

    set_ = command(sub, "set", do_set, full_name="users scram set", help="create or change a user's credential",
                   description=f"Create or change a user's SCRAM credential. The password is read from --password, ${PASSWORD_ENV}, or the terminal.")
    set_.add_argument("user")
    set_.add_argument("--mechanism", choices=sorted(CODES), default="SCRAM-SHA-256", help="default SCRAM-SHA-256")
    set_.add_argument("--iterations", type=int, default=8192, help="PBKDF2 iterations, 4096-16384 (default 8192)")
    set_.add_argument("--password", help=f"the password (visible to other local users: prefer ${PASSWORD_ENV} or the prompt)")
    add_common(set_, json_output=False)

    delete = command(sub, "delete", do_delete, full_name="users scram delete", help="remove a user's credential", description="Remove a user's SCRAM credential.")
    delete.add_argument("user")
    delete.add_argument("--mechanism", choices=sorted(CODES), default="SCRAM-SHA-256", help="default SCRAM-SHA-256")
    add_common(delete, json_output=False)

    list_ = command(sub, "list", do_list, full_name="users scram list", help="users with SCRAM credentials", description="List the users with SCRAM credentials (mechanism and iterations; never secrets).")
    list_.add_argument("user", nargs="*", help="only these users")
    add_common(list_)


def _password(args: argparse.Namespace) -> str:
    password = args.password or os.environ.get(PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {args.user}: ")
    if not password:
        raise ToolError("empty password")
    return password


def _alter(args: argparse.Namespace, **request: Any) -> None:
    R = protocol.AlterUserScramCredentialsRequest
    with connect(args) as client:
        response = client.controller().request(R(**{"deletions": [], "upsertions": [], **request}))
    for result in response.results:
        if result.error_code:
            raise KafkaError(result.error_code, result.error_message, f"user {result.user}")


def do_set(args: argparse.Namespace) -> int:
    R = protocol.AlterUserScramCredentialsRequest
    salt = new_salt()
    salted = salted_password(args.mechanism, _password(args), salt, args.iterations)
    upsertion = R.ScramCredentialUpsertion(name=args.user, mechanism=CODES[args.mechanism], iterations=args.iterations, salt=salt, salted_password=salted)
    _alter(args, upsertions=[upsertion])
    print(f"set {args.mechanism} credential of {args.user}")
    return 0


def do_delete(args: argparse.Namespace) -> int:
    R = protocol.AlterUserScramCredentialsRequest
    _alter(args, deletions=[R.ScramCredentialDeletion(name=args.user, mechanism=CODES[args.mechanism])])
    print(f"deleted {args.mechanism} credential of {args.user}")
    return 0


def do_list(args: argparse.Namespace) -> int:
    R = protocol.DescribeUserScramCredentialsRequest
    with connect(args) as client:
        response = client.controller().request(R(users=[R.UserName(name=u) for u in args.user] or None))
    if response.error_code:
        raise KafkaError(response.error_code, response.error_message, "DescribeUserScramCredentials")
    rows = []
    for result in response.results:
        if result.error_code:
            rows.append((result.user, error_name(result.error_code), None))
        for info in result.credential_infos:
            rows.append((result.user, MECHANISM_CODES.get(info.mechanism, str(info.mechanism)), info.iterations))
    if args.json:
        print_json([{"user": u, "mechanism": m, "iterations": i} for u, m, i in rows])
    else:
        print_table(rows, ["USER", "MECHANISM", "ITERATIONS"])
    return 0
