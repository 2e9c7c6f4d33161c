"""`fastlog acls add|list|remove` against a broker with the built-in authorizer: what the tool
adds is listed exactly (and seen by librdkafka's DescribeAcls), `--producer`/`--consumer`
expand as kafka-acls.sh's do, `remove` takes only what it names, the ACLs survive a restart,
and refusals (the broker's and the tool's own) come back as messages and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import BrokerProcess, free_port

AUTHORIZER = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "super.users": "User:ANONYMOUS"}
HEADER = ["RESOURCE_TYPE", "NAME", "PATTERN", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"]


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path_factory.mktemp("acls") / "data", AUTHORIZER).start()
    yield process
    process.stop()


def acls(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastlog", "acls", *args, "--bootstrap-server", broker.bootstrap],
                          capture_output=True, text=True, timeout=60)


def ok(broker: BrokerProcess, *args: str) -> str:
    done = acls(broker, *args)
    assert done.returncode == 0, f"fastlog acls {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


def rows(text: str) -> list[list[str]]:
    """A table's rows (without the header) as lists of cells."""
    lines = [line.split() for line in text.strip().splitlines()]
    assert lines[0] == HEADER
    return lines[1:]


def listed(broker: BrokerProcess, *args: str) -> set[tuple[str, ...]]:
    return {tuple(acl.values()) for acl in json.loads(ok(broker, "list", "--json", *args))}


def acl(resource_type: str, name: str, principal: str, operation: str, pattern: str = "LITERAL", host: str = "*", permission: str = "ALLOW") -> tuple[str, ...]:
    return (resource_type, name, pattern, principal, host, operation, permission)


def test_add_then_list(acl_broker: BrokerProcess) -> None:
    added = ok(acl_broker, "add", "--allow-principal", "User:alice", "--operation", "read", "--operation", "DescribeConfigs",
               "--topic", "payments", "--deny-principal", "User:mallory", "--deny-host", "10.0.0.9")
    expected = [
        ["TOPIC", "payments", "LITERAL", "User:alice", "*", "READ", "ALLOW"],
        ["TOPIC", "payments", "LITERAL", "User:alice", "*", "DESCRIBE_CONFIGS", "ALLOW"],
        ["TOPIC", "payments", "LITERAL", "User:mallory", "10.0.0.9", "READ", "DENY"],
        ["TOPIC", "payments", "LITERAL", "User:mallory", "10.0.0.9", "DESCRIBE_CONFIGS", "DENY"],
    ]
    assert rows(added) == expected
    assert rows(ok(acl_broker, "list", "--topic", "payments")) == expected
    assert json.loads(ok(acl_broker, "list", "--topic", "payments", "--principal", "User:alice", "--json")) == [
        {"resource_type": "TOPIC", "name": "payments", "pattern_type": "LITERAL", "principal": "User:alice", "host": "*", "operation": "READ", "permission": "ALLOW"},
        {"resource_type": "TOPIC", "name": "payments", "pattern_type": "LITERAL", "principal": "User:alice", "host": "*", "operation": "DESCRIBE_CONFIGS", "permission": "ALLOW"},
    ]
    # Adding the same ACLs again changes nothing.
    ok(acl_broker, "add", "--allow-principal", "User:alice", "--operation", "Read", "--topic", "payments")
    assert len(listed(acl_broker, "--topic", "payments")) == 4


def test_list_filters(acl_broker: BrokerProcess) -> None:
    ok(acl_broker, "add", "--allow-principal", "User:fil1", "--allow-principal", "User:fil2", "--operation", "Write", "--topic", "fil-a", "--topic", "fil-b")
    ok(acl_broker, "add", "--allow-principal", "User:fil3", "--operation", "Read", "--operation", "Describe", "--group", "fil-a")
    ok(acl_broker, "add", "--allow-principal", "User:fil3", "--operation", "Describe", "--cluster")
    assert listed(acl_broker, "--topic", "fil-a") == {acl("TOPIC", "fil-a", "User:fil1", "WRITE"), acl("TOPIC", "fil-a", "User:fil2", "WRITE")}
    assert listed(acl_broker, "--principal", "User:fil1") == {acl("TOPIC", "fil-a", "User:fil1", "WRITE"), acl("TOPIC", "fil-b", "User:fil1", "WRITE")}
    assert listed(acl_broker, "--principal", "User:fil1", "--principal", "User:fil3", "--topic", "fil-b", "--group", "fil-a") == {
        acl("TOPIC", "fil-b", "User:fil1", "WRITE"), acl("GROUP", "fil-a", "User:fil3", "READ"), acl("GROUP", "fil-a", "User:fil3", "DESCRIBE"),
    }
    assert listed(acl_broker, "--cluster", "--principal", "User:fil3") == {acl("CLUSTER", "kafka-cluster", "User:fil3", "DESCRIBE")}
    assert listed(acl_broker, "--topic", "fil-nothing") == set()
    assert rows(ok(acl_broker, "list", "--principal", "User:nobody")) == []


def test_prefixed(acl_broker: BrokerProcess) -> None:
    ok(acl_broker, "add", "--allow-principal", "User:pre", "--operation", "Read", "--topic", "pre-", "--resource-pattern-type", "prefixed")
    ok(acl_broker, "add", "--allow-principal", "User:pre", "--operation", "Write", "--topic", "pre-x")
    prefixed = acl("TOPIC", "pre-", "User:pre", "READ", pattern="PREFIXED")
    literal = acl("TOPIC", "pre-x", "User:pre", "WRITE")
    assert listed(acl_broker, "--principal", "User:pre") == {prefixed, literal}
    assert listed(acl_broker, "--principal", "User:pre", "--resource-pattern-type", "prefixed") == {prefixed}
    assert listed(acl_broker, "--principal", "User:pre", "--resource-pattern-type", "literal") == {literal}
    # MATCH: the ACLs that apply to a topic's name, whatever their pattern.
    assert listed(acl_broker, "--principal", "User:pre", "--topic", "pre-x", "--resource-pattern-type", "match") == {prefixed, literal}
    assert listed(acl_broker, "--principal", "User:pre", "--topic", "pre-y", "--resource-pattern-type", "match") == {prefixed}
    assert listed(acl_broker, "--principal", "User:pre", "--topic", "pre-y") == set()


def test_producer_and_consumer(acl_broker: BrokerProcess) -> None:
    ok(acl_broker, "add", "--allow-principal", "User:prod", "--producer", "--topic", "orders", "--transactional-id", "tx-1", "--idempotent")
    assert listed(acl_broker, "--principal", "User:prod") == {
        acl("TOPIC", "orders", "User:prod", "WRITE"), acl("TOPIC", "orders", "User:prod", "DESCRIBE"), acl("TOPIC", "orders", "User:prod", "CREATE"),
        acl("TRANSACTIONAL_ID", "tx-1", "User:prod", "WRITE"), acl("TRANSACTIONAL_ID", "tx-1", "User:prod", "DESCRIBE"),
        acl("CLUSTER", "kafka-cluster", "User:prod", "IDEMPOTENT_WRITE"),
    }
    ok(acl_broker, "add", "--allow-principal", "User:cons", "--allow-host", "10.1.1.1", "--consumer", "--topic", "orders", "--group", "billing")
    assert listed(acl_broker, "--principal", "User:cons") == {
        acl("TOPIC", "orders", "User:cons", "READ", host="10.1.1.1"), acl("TOPIC", "orders", "User:cons", "DESCRIBE", host="10.1.1.1"),
        acl("GROUP", "billing", "User:cons", "READ", host="10.1.1.1"),
    }
    # Removing with --consumer takes the consumer's ACLs and leaves the producer's.
    removed = ok(acl_broker, "remove", "--allow-principal", "User:cons", "--consumer", "--topic", "orders", "--group", "billing")
    assert len(rows(removed)) == 3
    assert listed(acl_broker, "--principal", "User:cons") == set()
    assert len(listed(acl_broker, "--principal", "User:prod")) == 6


def test_remove_takes_only_what_it_names(acl_broker: BrokerProcess) -> None:
    ok(acl_broker, "add", "--allow-principal", "User:rm1", "--allow-principal", "User:rm2", "--operation", "Read", "--operation", "Write",
       "--topic", "rm-a", "--topic", "rm-b")
    ok(acl_broker, "add", "--allow-principal", "User:rm1", "--allow-host", "10.2.2.2", "--operation", "Read", "--topic", "rm-a")
    ok(acl_broker, "add", "--deny-principal", "User:rm1", "--operation", "Read", "--topic", "rm-a")
    ok(acl_broker, "add", "--allow-principal", "User:rm1", "--operation", "Read", "--topic", "rm-", "--resource-pattern-type", "prefixed")
    before = listed(acl_broker, "--principal", "User:rm1") | listed(acl_broker, "--principal", "User:rm2")
    assert len(before) == 11

    # One ACL, named in full.
    removed = ok(acl_broker, "remove", "--allow-principal", "User:rm1", "--allow-host", "10.2.2.2", "--operation", "Read", "--topic", "rm-a")
    assert rows(removed) == [["TOPIC", "rm-a", "LITERAL", "User:rm1", "10.2.2.2", "READ", "ALLOW"]]
    gone = {acl("TOPIC", "rm-a", "User:rm1", "READ", host="10.2.2.2")}
    # A principal's ALLOWs of an operation on a literal topic, any host: the DENY and the prefixed ACL stay.
    removed = ok(acl_broker, "remove", "--allow-principal", "User:rm1", "--operation", "Read", "--topic", "rm-a", "--json")
    assert [tuple(a.values()) for a in json.loads(removed)] == [acl("TOPIC", "rm-a", "User:rm1", "READ")]
    gone.add(acl("TOPIC", "rm-a", "User:rm1", "READ"))
    # Every ACL of a principal on a topic.
    removed = ok(acl_broker, "remove", "--principal", "User:rm2", "--topic", "rm-b")
    assert {tuple(r) for r in rows(removed)} == {acl("TOPIC", "rm-b", "User:rm2", "READ"), acl("TOPIC", "rm-b", "User:rm2", "WRITE")}
    gone |= {acl("TOPIC", "rm-b", "User:rm2", "READ"), acl("TOPIC", "rm-b", "User:rm2", "WRITE")}
    after = listed(acl_broker, "--principal", "User:rm1") | listed(acl_broker, "--principal", "User:rm2")
    assert after == before - gone
    assert acl("TOPIC", "rm-a", "User:rm1", "READ", permission="DENY") in after
    assert acl("TOPIC", "rm-", "User:rm1", "READ", pattern="PREFIXED") in after

    # Nothing matches: success, nothing removed.
    nothing = acls(acl_broker, "remove", "--principal", "User:rm-nobody", "--topic", "rm-a")
    assert nothing.returncode == 0 and rows(nothing.stdout) == [] and "no ACL matched" in nothing.stderr
    # Prefixed ACLs by their pattern type; the literal ones stay.
    removed = ok(acl_broker, "remove", "--principal", "User:rm1", "--topic", "rm-", "--resource-pattern-type", "prefixed")
    assert rows(removed) == [["TOPIC", "rm-", "PREFIXED", "User:rm1", "*", "READ", "ALLOW"]]
    # All of a principal's ACLs, whatever the resource.
    removed = ok(acl_broker, "remove", "--principal", "User:rm1")
    assert len(rows(removed)) == 4
    assert listed(acl_broker, "--principal", "User:rm1") == set()
    assert len(listed(acl_broker, "--principal", "User:rm2")) == 2


def test_acls_survive_a_restart(acl_broker: BrokerProcess) -> None:
    ok(acl_broker, "add", "--allow-principal", "User:kept", "--operation", "Alter", "--cluster", "--deny-principal", "User:kept2")
    ok(acl_broker, "add", "--allow-principal", "User:kept", "--operation", "Read", "--group", "kept-", "--resource-pattern-type", "prefixed")
    before = listed(acl_broker)
    assert acl("GROUP", "kept-", "User:kept", "READ", pattern="PREFIXED") in before
    assert (Path(acl_broker.data_dir) / "acls.json").exists()
    acl_broker.restart()
    assert listed(acl_broker) == before


def test_confluent_kafka_sees_them(acl_broker: BrokerProcess) -> None:
    from confluent_kafka.admin import AclBindingFilter, AclOperation, AclPermissionType, AdminClient, ResourcePatternType, ResourceType

    ok(acl_broker, "add", "--allow-principal", "User:rdk", "--consumer", "--topic", "rdk-", "--group", "rdk-group", "--resource-pattern-type", "prefixed")
    admin = AdminClient({"bootstrap.servers": acl_broker.bootstrap})
    wanted = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:rdk", None, AclOperation.ANY, AclPermissionType.ANY)
    found = admin.describe_acls(wanted, request_timeout=30).result(timeout=30)
    seen = {(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type) for b in found}
    P = ResourcePatternType.PREFIXED
    assert seen == {
        (ResourceType.TOPIC, "rdk-", P, "User:rdk", "*", AclOperation.READ, AclPermissionType.ALLOW),
        (ResourceType.TOPIC, "rdk-", P, "User:rdk", "*", AclOperation.DESCRIBE, AclPermissionType.ALLOW),
        (ResourceType.GROUP, "rdk-group", P, "User:rdk", "*", AclOperation.READ, AclPermissionType.ALLOW),
    }


def test_broker_refusal(acl_broker: BrokerProcess) -> None:
    wildcard = acls(acl_broker, "add", "--allow-principal", "User:bad", "--operation", "Read", "--topic", "*", "--resource-pattern-type", "prefixed")
    assert wildcard.returncode == 1
    assert "INVALID_REQUEST" in wildcard.stderr and "PREFIXED pattern cannot be the wildcard" in wildcard.stderr
    assert len(wildcard.stderr.strip().splitlines()) == 1
    empty = acls(acl_broker, "add", "--allow-principal", "User:bad", "--operation", "Read", "--topic", "")
    assert empty.returncode == 1 and "INVALID_REQUEST" in empty.stderr and "empty" in empty.stderr
    assert listed(acl_broker, "--principal", "User:bad") == set()


def test_no_authorizer(broker: BrokerProcess) -> None:
    for args in (["list"], ["add", "--allow-principal", "User:x", "--operation", "Read", "--topic", "t"], ["remove", "--principal", "User:x"]):
        done = acls(broker, *args)
        assert done.returncode == 1, done
        assert "SECURITY_DISABLED" in done.stderr and "no authorizer" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_not_allowed(tmp_path: Path) -> None:
    """A principal without ALTER/DESCRIBE on the cluster is refused (CLUSTER_AUTHORIZATION_FAILED)."""
    process = BrokerProcess(tmp_path / "data", {**AUTHORIZER, "super.users": "User:admin"}).start()
    try:
        for args in (["list"], ["add", "--allow-principal", "User:x", "--operation", "Read", "--topic", "t"]):
            done = acls(process, *args)
            assert done.returncode == 1 and "CLUSTER_AUTHORIZATION_FAILED" in done.stderr, done
    finally:
        process.stop()


@pytest.mark.parametrize(
    "args, reason",
    [
        (["add", "--allow-principal", "User:a", "--operation", "Read"], "give a resource"),
        (["add", "--operation", "Read", "--topic", "t"], "give a principal"),
        (["add", "--allow-principal", "User:a", "--operation", "Frobnicate", "--topic", "t"], "unknown operation 'Frobnicate'"),
        (["add", "--allow-principal", "alice", "--topic", "t"], "expected TYPE:NAME"),
        (["add", "--allow-principal", "User:a", "--operation", "Read", "--cluster"], "CLUSTER does not have operation Read"),
        (["add", "--allow-principal", "User:a", "--topic", "t", "--resource-pattern-type", "match"], "invalid choice"),
        (["add", "--allow-principal", "User:a", "--consumer", "--topic", "t"], "--consumer you must give a --topic and a --group"),
        (["add", "--allow-principal", "User:a", "--producer", "--operation", "Read", "--topic", "t"], "--operation cannot be used"),
        (["add", "--allow-principal", "User:a", "--idempotent", "--topic", "t"], "--idempotent is only used with --producer"),
        (["add", "--allow-host", "1.2.3.4", "--deny-principal", "User:a", "--topic", "t"], "--allow-host needs --allow-principal"),
        (["remove", "--operation", "Read"], "give a resource"),
        (["list", "--principal", "nobody"], "expected TYPE:NAME"),
    ],
)
def test_bad_arguments(args: list[str], reason: str) -> None:
    # Nothing listens at this address: exit code 2, not 1, shows the broker was never asked.
    done = subprocess.run([sys.executable, "-m", "fastlog", "acls", *args, "--bootstrap-server", f"127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert reason in done.stderr and "usage: fastlog acls" in done.stderr
