"""The built-in authorizer's rules (`fastlog.security.acls`), without a broker: Kafka's
StandardAuthorizer decisions (super users, DENY over ALLOW, implied DESCRIBE and
DESCRIBE_CONFIGS, ALL, the `User:*` and `*` host wildcards, LITERAL `*` and PREFIXED names,
allow.everyone.if.no.acl.found), authorized-operations bit fields, KIP-679's
authorizeByResourceType, ACL filters, binding validation, the decision cache, the local
store's file and the broker configuration keys."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable, Optional

import pytest
import trio

from fastlog.config import BrokerConfig, ConfigError
from fastlog.metrics import Metrics
from fastlog.security.acls import (
    CLUSTER_NAME,
    FILE_NAME,
    OPERATIONS_OF,
    AclBinding,
    AclFilter,
    Authorizer,
    LocalAclStore,
    Operation,
    PatternType,
    Permission,
    ResourceType,
    authorizer_for,
    invalid_binding,
    operations_bits,
)

O, R, P = Operation, ResourceType, PatternType
ALLOW, DENY = Permission.ALLOW, Permission.DENY
HOST = "127.0.0.1"
OTHER_HOST = "10.0.0.1"
TOPIC_OPERATIONS = OPERATIONS_OF[R.TOPIC]


def acl(operation: int, name: str = "payments", *, principal: str = "User:alice", host: str = "*", permission: int = ALLOW,
        resource_type: int = R.TOPIC, pattern: int = P.LITERAL) -> AclBinding:
    return AclBinding(resource_type, name, pattern, principal, host, operation, permission)


class FakeStore:
    """What the authorizer reads of a store: `version` and `bindings()`; counts the reads."""

    def __init__(self, acls: Iterable[AclBinding] = ()) -> None:
        self.acls = frozenset(acls)
        self.version = 0
        self.reads = 0

    def bindings(self) -> frozenset[AclBinding]:
        self.reads += 1
        return self.acls

    def replace(self, acls: Iterable[AclBinding]) -> None:
        self.acls = frozenset(acls)
        self.version += 1


def authorizer(*acls: AclBinding, super_users: Iterable[str] = ("User:admin",), allow_if_no_acl: bool = False, on_denied=None) -> Authorizer:
    return Authorizer(FakeStore(acls), super_users, allow_if_no_acl, on_denied)


def allowed(a: Authorizer, operation: int, name: str = "payments", *, principal: str = "alice", host: str = HOST,
            resource_type: int = R.TOPIC) -> bool:
    return a.authorize(principal, host, operation, resource_type, name)


# -- super users and resources without ACLs ----------------------------------------------------


def test_super_user_is_allowed_everything_even_against_deny() -> None:
    a = authorizer(acl(O.ALL, principal="User:admin", permission=DENY), acl(O.ALL, "*", principal="User:*", permission=DENY))
    for op in TOPIC_OPERATIONS:
        assert allowed(a, op, principal="admin")
    assert allowed(a, O.CLUSTER_ACTION, CLUSTER_NAME, principal="admin", resource_type=R.CLUSTER)
    assert allowed(a, O.READ, "any-group", principal="admin", resource_type=R.GROUP)
    assert not allowed(a, O.READ)


def test_several_super_users() -> None:
    a = authorizer(super_users=("User:admin", "User:broker"))
    assert allowed(a, O.WRITE, principal="admin") and allowed(a, O.WRITE, principal="broker")
    assert not allowed(a, O.WRITE, principal="alice")
    # The super user is matched as a whole principal, not a name prefix or another case.
    assert not allowed(a, O.WRITE, principal="admin2") and not allowed(a, O.WRITE, principal="Admin")


@pytest.mark.parametrize("allow_if_no_acl", [False, True])
def test_resource_without_acls_follows_allow_everyone_if_no_acl_found(allow_if_no_acl: bool) -> None:
    a = authorizer(acl(O.READ, "other-topic"), allow_if_no_acl=allow_if_no_acl)
    for op in TOPIC_OPERATIONS:
        assert allowed(a, op, "payments") is allow_if_no_acl
    assert allowed(a, O.READ, "some-group", resource_type=R.GROUP) is allow_if_no_acl
    assert allowed(a, O.CREATE, CLUSTER_NAME, resource_type=R.CLUSTER) is allow_if_no_acl


def test_acls_on_the_resource_for_someone_else_deny_even_when_allow_everyone() -> None:
    """allow.everyone.if.no.acl.found only opens resources with no ACL at all: one ACL for bob
    closes the topic to alice."""
    a = authorizer(acl(O.WRITE, principal="User:bob"), allow_if_no_acl=True)
    assert allowed(a, O.WRITE, principal="bob")
    assert not allowed(a, O.WRITE, principal="alice")
    assert not allowed(a, O.READ, principal="alice")
    assert allowed(a, O.WRITE, "another-topic", principal="alice")


# -- ALLOW, DENY and implied operations --------------------------------------------------------


def test_allow_grants_its_operation_only() -> None:
    a = authorizer(acl(O.WRITE))
    assert allowed(a, O.WRITE)
    for op in (O.READ, O.CREATE, O.DELETE, O.ALTER, O.DESCRIBE_CONFIGS, O.ALTER_CONFIGS):
        assert not allowed(a, op), Operation(op).name


def test_deny_wins_over_allow() -> None:
    a = authorizer(acl(O.ALL), acl(O.WRITE, permission=DENY))
    assert not allowed(a, O.WRITE)
    for op in (O.READ, O.DESCRIBE, O.DELETE, O.ALTER, O.CREATE, O.DESCRIBE_CONFIGS, O.ALTER_CONFIGS):
        assert allowed(a, op), Operation(op).name


def test_deny_of_one_operation_wins_over_allow_of_the_same() -> None:
    a = authorizer(acl(O.READ), acl(O.READ, permission=DENY))
    assert not allowed(a, O.READ)
    # ... and DESCRIBE, implied by the ALLOW of READ, is not taken away by the DENY of READ.
    assert allowed(a, O.DESCRIBE)


def test_deny_all_denies_every_operation() -> None:
    a = authorizer(acl(O.ALL), acl(O.READ), acl(O.ALL, permission=DENY))
    for op in TOPIC_OPERATIONS:
        assert not allowed(a, op), Operation(op).name


def test_deny_from_a_wildcard_acl_wins_over_a_personal_allow() -> None:
    a = authorizer(acl(O.WRITE), acl(O.WRITE, "*", principal="User:*", permission=DENY))
    assert not allowed(a, O.WRITE)


def test_deny_of_describe_is_not_implied_by_deny_of_read() -> None:
    a = authorizer(acl(O.DESCRIBE), acl(O.READ, permission=DENY))
    assert allowed(a, O.DESCRIBE)
    assert not allowed(a, O.READ)


def test_deny_of_describe_wins_over_an_implying_allow() -> None:
    a = authorizer(acl(O.READ), acl(O.DESCRIBE, permission=DENY))
    assert allowed(a, O.READ)
    assert not allowed(a, O.DESCRIBE)


@pytest.mark.parametrize("granted", [O.READ, O.WRITE, O.DELETE, O.ALTER, O.DESCRIBE, O.ALL])
def test_describe_is_implied_by_read_write_delete_alter(granted: Operation) -> None:
    assert allowed(authorizer(acl(granted)), O.DESCRIBE)


@pytest.mark.parametrize("granted", [O.CREATE, O.DESCRIBE_CONFIGS, O.ALTER_CONFIGS, O.IDEMPOTENT_WRITE])
def test_describe_is_not_implied_by_other_operations(granted: Operation) -> None:
    assert not allowed(authorizer(acl(granted)), O.DESCRIBE)


@pytest.mark.parametrize("granted, implied", [(O.ALTER_CONFIGS, True), (O.DESCRIBE_CONFIGS, True), (O.ALL, True),
                                              (O.ALTER, False), (O.DESCRIBE, False), (O.WRITE, False)])
def test_describe_configs_is_implied_by_alter_configs_only(granted: Operation, implied: bool) -> None:
    assert allowed(authorizer(acl(granted)), O.DESCRIBE_CONFIGS) is implied


def test_implication_goes_one_way() -> None:
    a = authorizer(acl(O.DESCRIBE), acl(O.DESCRIBE_CONFIGS))
    for op in (O.READ, O.WRITE, O.DELETE, O.ALTER, O.ALTER_CONFIGS):
        assert not allowed(a, op), Operation(op).name


def test_all_allows_every_operation_of_every_resource_type() -> None:
    a = authorizer(acl(O.ALL), acl(O.ALL, "g", resource_type=R.GROUP), acl(O.ALL, CLUSTER_NAME, resource_type=R.CLUSTER))
    for resource_type, name in ((R.TOPIC, "payments"), (R.GROUP, "g"), (R.CLUSTER, CLUSTER_NAME)):
        for op in OPERATIONS_OF[resource_type]:
            assert allowed(a, op, name, resource_type=resource_type), (resource_type.name, Operation(op).name)


# -- principals and hosts ----------------------------------------------------------------------


def test_acl_is_for_its_principal_only() -> None:
    a = authorizer(acl(O.WRITE, principal="User:alice"))
    assert allowed(a, O.WRITE, principal="alice")
    assert not allowed(a, O.WRITE, principal="bob")
    assert not allowed(a, O.WRITE, principal="alice2")
    assert not allowed(a, O.WRITE, principal="ANONYMOUS")


def test_wildcard_principal_matches_everyone() -> None:
    a = authorizer(acl(O.WRITE, principal="User:*"))
    for user in ("alice", "bob", "ANONYMOUS"):
        assert allowed(a, O.WRITE, principal=user)
    assert not allowed(a, O.READ, principal="bob")


def test_literal_star_principal_name_is_not_a_prefix_wildcard() -> None:
    """Only `User:*` exactly is the wildcard; `User:al*` names a user called `al*`."""
    a = authorizer(acl(O.WRITE, principal="User:al*"))
    assert not allowed(a, O.WRITE, principal="alice")


def test_host_specific_acl() -> None:
    a = authorizer(acl(O.WRITE, principal="User:alice", host=HOST), acl(O.WRITE, principal="User:bob", host=OTHER_HOST))
    assert allowed(a, O.WRITE, principal="alice", host=HOST)
    assert not allowed(a, O.WRITE, principal="alice", host=OTHER_HOST)
    assert not allowed(a, O.WRITE, principal="bob", host=HOST)
    assert allowed(a, O.WRITE, principal="bob", host=OTHER_HOST)


def test_wildcard_host_matches_every_host() -> None:
    a = authorizer(acl(O.WRITE, host="*"))
    assert allowed(a, O.WRITE, host=HOST) and allowed(a, O.WRITE, host=OTHER_HOST) and allowed(a, O.WRITE, host="::1")


def test_host_specific_deny() -> None:
    a = authorizer(acl(O.WRITE), acl(O.WRITE, host=OTHER_HOST, permission=DENY))
    assert allowed(a, O.WRITE, host=HOST)
    assert not allowed(a, O.WRITE, host=OTHER_HOST)


# -- resource names ----------------------------------------------------------------------------


def test_literal_acl_names_one_resource() -> None:
    a = authorizer(acl(O.WRITE, "order"))
    assert allowed(a, O.WRITE, "order")
    for other in ("orders", "orde", "Order", "order-eu", ""):
        assert not allowed(a, O.WRITE, other), other


def test_literal_star_names_every_resource_of_its_type() -> None:
    a = authorizer(acl(O.READ, "*"))
    for name in ("payments", "orders-eu", "*", "x"):
        assert allowed(a, O.READ, name), name
    assert not allowed(a, O.READ, "payments", resource_type=R.GROUP)
    assert not allowed(a, O.WRITE, "payments")


def test_prefixed_acl() -> None:
    a = authorizer(acl(O.WRITE, "orders-", pattern=P.PREFIXED))
    assert allowed(a, O.WRITE, "orders-eu")
    assert allowed(a, O.WRITE, "orders-")
    assert allowed(a, O.WRITE, "orders-eu-west-1")
    for other in ("order", "orders", "Orders-eu", "my-orders-eu", "orders_eu"):
        assert not allowed(a, O.WRITE, other), other


def test_prefixed_deny_wins_over_literal_allow() -> None:
    a = authorizer(acl(O.WRITE, "orders-eu"), acl(O.WRITE, "orders-", pattern=P.PREFIXED, permission=DENY))
    assert not allowed(a, O.WRITE, "orders-eu")


def test_literal_deny_wins_over_prefixed_allow_for_its_name_only() -> None:
    a = authorizer(acl(O.WRITE, "orders-", pattern=P.PREFIXED), acl(O.WRITE, "orders-eu", permission=DENY))
    assert not allowed(a, O.WRITE, "orders-eu")
    assert allowed(a, O.WRITE, "orders-us")


def test_acls_of_one_resource_type_do_not_apply_to_another() -> None:
    a = authorizer(acl(O.ALL, "payments", resource_type=R.TOPIC))
    assert allowed(a, O.READ, "payments", resource_type=R.TOPIC)
    assert not allowed(a, O.READ, "payments", resource_type=R.GROUP)
    assert not allowed(a, O.WRITE, "payments", resource_type=R.TRANSACTIONAL_ID)


def test_group_and_cluster_acls() -> None:
    a = authorizer(
        acl(O.READ, "app-", resource_type=R.GROUP, pattern=P.PREFIXED),
        acl(O.IDEMPOTENT_WRITE, CLUSTER_NAME, resource_type=R.CLUSTER),
    )
    assert allowed(a, O.READ, "app-1", resource_type=R.GROUP)
    assert allowed(a, O.DESCRIBE, "app-1", resource_type=R.GROUP)
    assert not allowed(a, O.DELETE, "app-1", resource_type=R.GROUP)
    assert not allowed(a, O.READ, "other", resource_type=R.GROUP)
    assert allowed(a, O.IDEMPOTENT_WRITE, CLUSTER_NAME, resource_type=R.CLUSTER)
    assert not allowed(a, O.CREATE, CLUSTER_NAME, resource_type=R.CLUSTER)
    assert not allowed(a, O.DESCRIBE, CLUSTER_NAME, resource_type=R.CLUSTER)


# -- authorized operations ---------------------------------------------------------------------


def test_authorized_operations_bits() -> None:
    a = authorizer(acl(O.READ), acl(O.ALTER_CONFIGS))
    assert a.authorized_operations("alice", HOST, R.TOPIC, "payments") == operations_bits([O.READ, O.DESCRIBE, O.ALTER_CONFIGS, O.DESCRIBE_CONFIGS])
    assert a.authorized_operations("bob", HOST, R.TOPIC, "payments") == 0
    assert operations_bits([O.READ, O.DESCRIBE]) == (1 << 3) | (1 << 8)


def test_authorized_operations_of_all_minus_a_deny() -> None:
    a = authorizer(acl(O.ALL), acl(O.WRITE, permission=DENY))
    expected = operations_bits(op for op in TOPIC_OPERATIONS if op != O.WRITE)
    assert a.authorized_operations("alice", HOST, R.TOPIC, "payments") == expected


@pytest.mark.parametrize("resource_type, name", [(R.TOPIC, "t"), (R.GROUP, "g"), (R.CLUSTER, CLUSTER_NAME), (R.TRANSACTIONAL_ID, "tx")])
def test_super_user_has_every_operation_of_the_type(resource_type: ResourceType, name: str) -> None:
    a = authorizer()
    assert a.authorized_operations("admin", HOST, resource_type, name) == operations_bits(OPERATIONS_OF[resource_type])


def test_authorized_operations_of_a_group_and_the_cluster() -> None:
    a = authorizer(acl(O.READ, "g", resource_type=R.GROUP), acl(O.DESCRIBE, CLUSTER_NAME, resource_type=R.CLUSTER))
    assert a.authorized_operations("alice", HOST, R.GROUP, "g") == operations_bits([O.READ, O.DESCRIBE])
    assert a.authorized_operations("alice", HOST, R.CLUSTER, CLUSTER_NAME) == operations_bits([O.DESCRIBE])


def test_authorized_operations_without_acls_follow_allow_everyone() -> None:
    assert authorizer(allow_if_no_acl=True).authorized_operations("alice", HOST, R.TOPIC, "t") == operations_bits(TOPIC_OPERATIONS)
    assert authorizer(allow_if_no_acl=False).authorized_operations("alice", HOST, R.TOPIC, "t") == 0


# -- authorizeByResourceType (KIP-679) ---------------------------------------------------------


def any_write(a: Authorizer, principal: str = "alice", host: str = HOST) -> bool:
    return a.authorize_any(principal, host, O.WRITE, R.TOPIC)


def test_authorize_any_without_acls() -> None:
    assert not any_write(authorizer())
    assert any_write(authorizer(allow_if_no_acl=True))
    assert any_write(authorizer(), principal="admin")


def test_authorize_any_allowed_by_one_topic() -> None:
    assert any_write(authorizer(acl(O.WRITE, "t1")))
    assert any_write(authorizer(acl(O.ALL, "t1")))
    assert any_write(authorizer(acl(O.WRITE, "orders-", pattern=P.PREFIXED)))
    assert any_write(authorizer(acl(O.WRITE, "*")))
    assert any_write(authorizer(acl(O.WRITE, "t1", principal="User:*")))


def test_authorize_any_needs_the_operation_itself() -> None:
    assert not any_write(authorizer(acl(O.READ, "t1"), acl(O.DESCRIBE, "t2"), acl(O.CREATE, "t3")))


def test_authorize_any_ignores_other_principals_and_hosts() -> None:
    assert not any_write(authorizer(acl(O.WRITE, "t1", principal="User:bob")))
    assert not any_write(authorizer(acl(O.WRITE, "t1", host=OTHER_HOST)))
    assert any_write(authorizer(acl(O.WRITE, "t1", host=HOST)))
    assert not any_write(authorizer(acl(O.WRITE, "t1", resource_type=R.GROUP)))


def test_authorize_any_denied_where_every_allow_is_denied() -> None:
    assert not any_write(authorizer(acl(O.WRITE, "t1"), acl(O.WRITE, "t1", permission=DENY)))
    assert not any_write(authorizer(acl(O.WRITE, "t1"), acl(O.ALL, "t1", permission=DENY)))
    assert not any_write(authorizer(acl(O.WRITE, "t1"), acl(O.WRITE, "*", permission=DENY)))
    assert not any_write(authorizer(acl(O.WRITE, "t1"), acl(O.WRITE, "*", principal="User:*", permission=DENY)))
    assert not any_write(authorizer(acl(O.WRITE, "orders-eu"), acl(O.WRITE, "orders-", pattern=P.PREFIXED, permission=DENY)))
    assert not any_write(authorizer(acl(O.WRITE, "orders-eu", pattern=P.PREFIXED), acl(O.WRITE, "orders-", pattern=P.PREFIXED, permission=DENY)))


def test_authorize_any_allowed_where_some_allow_is_not_denied() -> None:
    assert any_write(authorizer(acl(O.WRITE, "t1"), acl(O.WRITE, "t2"), acl(O.WRITE, "t1", permission=DENY)))
    # A PREFIXED allow covers names its LITERAL deny does not.
    assert any_write(authorizer(acl(O.WRITE, "orders-", pattern=P.PREFIXED), acl(O.WRITE, "orders-eu", permission=DENY)))
    # A deny of another operation, or for someone else, takes nothing away.
    assert any_write(authorizer(acl(O.WRITE, "t1"), acl(O.READ, "t1", permission=DENY)))
    assert any_write(authorizer(acl(O.WRITE, "t1"), acl(O.WRITE, "t1", principal="User:bob", permission=DENY)))


def test_authorize_any_with_allow_everyone_goes_on_to_the_patterns() -> None:
    """allow.everyone.if.no.acl.found: the wildcard topic has an ACL (for bob), so alice is not
    allowed there; her own ALLOW on one topic still lets her write somewhere (Kafka goes on to
    the patterns when the wildcard check is not ALLOWED)."""
    a = authorizer(acl(O.WRITE, "*", principal="User:bob"), acl(O.WRITE, "a"), allow_if_no_acl=True)
    assert a.authorize_any("alice", HOST, O.WRITE, R.TOPIC)
    assert not a.authorize_any("carol", HOST, O.WRITE, R.TOPIC)


def test_a_decision_made_on_old_acls_is_not_cached_for_new_ones() -> None:
    """A decision is stored in the cache of the ACLs it was made on: a revocation landing while
    another thread decides is not undone by that thread's answer."""
    store = FakeStore([acl(O.WRITE)])
    a = Authorizer(store, (), False)
    _, index, old_decisions = a._current()
    store.replace([])  # WRITE revoked
    assert not allowed(a, O.WRITE)
    old_decisions[("alice", HOST, O.WRITE, R.TOPIC, "payments")] = True  # a late answer on the old ACLs
    assert not allowed(a, O.WRITE)


def test_authorize_any_with_allow_everyone_and_acls_for_others() -> None:
    """Kafka's StandardAuthorizer.authorizeByResourceType, with allow.everyone.if.no.acl.found
    set, only authorizes the operation on the LITERAL `*` resource (the interface's default
    tries a `hardcode` resource, AclAuthorizer answers ALLOWED outright): an ACL for bob on
    one topic does not stop alice being allowed on the others, a DENY on `*` does."""
    assert any_write(authorizer(acl(O.WRITE, "t1", principal="User:bob"), allow_if_no_acl=True))
    assert not any_write(authorizer(acl(O.WRITE, "*", permission=DENY), allow_if_no_acl=True))


# -- the decision cache ------------------------------------------------------------------------


def test_decisions_are_cached_until_the_store_version_changes() -> None:
    store = FakeStore([acl(O.WRITE)])
    a = Authorizer(store, (), False)
    assert a.authorize("alice", HOST, O.WRITE, R.TOPIC, "payments")
    reads = store.reads
    for _ in range(100):
        assert a.authorize("alice", HOST, O.WRITE, R.TOPIC, "payments")
        assert not a.authorize("bob", HOST, O.WRITE, R.TOPIC, "payments")
    assert store.reads == reads, "the ACLs were read again although their version did not change"

    store.replace([acl(O.WRITE, principal="User:bob")])
    assert not a.authorize("alice", HOST, O.WRITE, R.TOPIC, "payments")
    assert a.authorize("bob", HOST, O.WRITE, R.TOPIC, "payments")

    store.replace([])
    assert not a.authorize("bob", HOST, O.WRITE, R.TOPIC, "payments")
    assert not a.authorize_any("bob", HOST, O.WRITE, R.TOPIC)
    store.replace([acl(O.WRITE, "t9", principal="User:bob")])
    assert a.authorize_any("bob", HOST, O.WRITE, R.TOPIC)


def test_cached_decision_is_per_principal_host_operation_and_resource() -> None:
    a = authorizer(acl(O.WRITE, host=HOST))
    assert allowed(a, O.WRITE, host=HOST)
    assert not allowed(a, O.WRITE, host=OTHER_HOST)
    assert not allowed(a, O.READ, host=HOST)
    assert not allowed(a, O.WRITE, "payments2", host=HOST)
    assert not allowed(a, O.WRITE, "payments", resource_type=R.GROUP)
    assert allowed(a, O.WRITE, host=HOST)


def test_authorized_operations_follow_a_change() -> None:
    store = FakeStore([acl(O.READ)])
    a = Authorizer(store, (), False)
    assert a.authorized_operations("alice", HOST, R.TOPIC, "payments") == operations_bits([O.READ, O.DESCRIBE])
    store.replace([acl(O.READ), acl(O.READ, permission=DENY)])
    assert a.authorized_operations("alice", HOST, R.TOPIC, "payments") == operations_bits([O.DESCRIBE])


# -- denials: counted always, logged now and then ----------------------------------------------


def test_log_denied_counts_every_denial_and_logs_once_a_while(caplog: pytest.LogCaptureFixture) -> None:
    counted: list[tuple[str, str]] = []
    a = authorizer(on_denied=lambda op, rt: counted.append((op, rt)))
    with caplog.at_level(logging.INFO, logger="fastlog.security.acls"):
        for _ in range(3):
            a.log_denied("bob", f"{HOST}:5555", O.WRITE, R.TOPIC, "payments", "Produce")
        a.log_denied("bob", f"{HOST}:5555", O.READ, R.GROUP, "g", "JoinGroup")
    assert counted == [("WRITE", "TOPIC")] * 3 + [("READ", "GROUP")]
    lines = [r.getMessage() for r in caplog.records if r.name == "fastlog.security.acls"]
    assert len(lines) == 2, lines
    assert "User:bob" in lines[0] and "WRITE" in lines[0] and "payments" in lines[0] and "Produce" in lines[0]
    assert "READ" in lines[1] and "GROUP" in lines[1]


def test_refusals_not_logged_are_counted_into_the_next_line(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import fastlog.security.acls as acls_module

    clock = [1000.0]
    monkeypatch.setattr(acls_module.time, "monotonic", lambda: clock[0])
    a = authorizer()
    with caplog.at_level(logging.INFO, logger="fastlog.security.acls"):
        for _ in range(4):
            a.log_denied("bob", f"{HOST}:5555", O.WRITE, R.TOPIC, "payments", "Produce")
        clock[0] += acls_module.DENIAL_LOG_SECONDS
        a.log_denied("bob", f"{HOST}:5555", O.WRITE, R.TOPIC, "payments", "Produce")
    lines = [r.getMessage() for r in caplog.records if r.name == "fastlog.security.acls"]
    assert len(lines) == 2 and "more" not in lines[0], lines
    assert lines[1].endswith("and 3 more since 10 s ago"), lines


# -- filters (DescribeAcls, DeleteAcls) --------------------------------------------------------


def acl_filter(resource_type: int = R.ANY, name: Optional[str] = None, pattern: int = P.ANY, principal: Optional[str] = None,
               host: Optional[str] = None, operation: int = O.ANY, permission: int = Permission.ANY) -> AclFilter:
    return AclFilter(resource_type, name, pattern, principal, host, operation, permission)


LITERAL_ORDERS = acl(O.WRITE, "orders-eu")
PREFIXED_ORDERS = acl(O.WRITE, "orders-", pattern=P.PREFIXED)
LITERAL_STAR = acl(O.READ, "*", principal="User:bob", host=HOST, permission=DENY)
GROUP_ACL = acl(O.READ, "orders-eu", resource_type=R.GROUP)
ALL_ACLS = [LITERAL_ORDERS, PREFIXED_ORDERS, LITERAL_STAR, GROUP_ACL]


def matched(f: AclFilter) -> list[AclBinding]:
    return [a for a in ALL_ACLS if f.matches(a)]


def test_filter_any_matches_everything() -> None:
    assert matched(acl_filter()) == ALL_ACLS


def test_filter_fields() -> None:
    assert matched(acl_filter(resource_type=R.GROUP)) == [GROUP_ACL]
    assert matched(acl_filter(resource_type=R.TOPIC)) == [LITERAL_ORDERS, PREFIXED_ORDERS, LITERAL_STAR]
    assert matched(acl_filter(principal="User:bob")) == [LITERAL_STAR]
    assert matched(acl_filter(host=HOST)) == [LITERAL_STAR]
    assert matched(acl_filter(host="*")) == [LITERAL_ORDERS, PREFIXED_ORDERS, GROUP_ACL]
    assert matched(acl_filter(operation=O.READ)) == [LITERAL_STAR, GROUP_ACL]
    assert matched(acl_filter(permission=DENY)) == [LITERAL_STAR]
    assert matched(acl_filter(permission=ALLOW)) == [LITERAL_ORDERS, PREFIXED_ORDERS, GROUP_ACL]


def test_filter_by_pattern_type_and_exact_name() -> None:
    assert matched(acl_filter(pattern=P.LITERAL)) == [LITERAL_ORDERS, LITERAL_STAR, GROUP_ACL]
    assert matched(acl_filter(pattern=P.PREFIXED)) == [PREFIXED_ORDERS]
    assert matched(acl_filter(name="orders-eu")) == [LITERAL_ORDERS, GROUP_ACL]
    assert matched(acl_filter(name="orders-eu", pattern=P.PREFIXED)) == []
    assert matched(acl_filter(name="orders-", pattern=P.PREFIXED)) == [PREFIXED_ORDERS]
    # LITERAL and ANY filters compare names exactly: `*` is a name like any other there.
    assert matched(acl_filter(resource_type=R.TOPIC, name="*")) == [LITERAL_STAR]


def test_filter_match_finds_the_acls_that_apply_to_a_resource() -> None:
    """PatternType.MATCH: the literal ACL of the name, the literal `*` and the prefixes."""
    assert matched(acl_filter(resource_type=R.TOPIC, name="orders-eu", pattern=P.MATCH)) == [LITERAL_ORDERS, PREFIXED_ORDERS, LITERAL_STAR]
    assert matched(acl_filter(resource_type=R.TOPIC, name="orders-us", pattern=P.MATCH)) == [PREFIXED_ORDERS, LITERAL_STAR]
    assert matched(acl_filter(resource_type=R.TOPIC, name="order", pattern=P.MATCH)) == [LITERAL_STAR]
    assert matched(acl_filter(name=None, pattern=P.MATCH)) == ALL_ACLS


@pytest.mark.parametrize("f", [
    acl_filter(resource_type=0), acl_filter(resource_type=99), acl_filter(pattern=0), acl_filter(pattern=9),
    acl_filter(operation=0), acl_filter(operation=42), acl_filter(permission=0), acl_filter(permission=7),
])
def test_invalid_filters(f: AclFilter) -> None:
    assert f.invalid()


def test_valid_filters() -> None:
    assert acl_filter().invalid() is None
    assert acl_filter(R.TOPIC, "t", P.MATCH, "User:a", "*", O.READ, ALLOW).invalid() is None


# -- which ACLs may be created -----------------------------------------------------------------


@pytest.mark.parametrize("binding", [
    acl(O.READ), acl(O.ALL, "*"), acl(O.WRITE, "orders-", pattern=P.PREFIXED), acl(O.READ, principal="User:*"),
    acl(O.IDEMPOTENT_WRITE, CLUSTER_NAME, resource_type=R.CLUSTER), acl(O.READ, "g", resource_type=R.GROUP, permission=DENY),
    acl(O.WRITE, "tx", resource_type=R.TRANSACTIONAL_ID, host=HOST), acl(O.READ, principal="Group:ops"),
])
def test_valid_bindings(binding: AclBinding) -> None:
    assert invalid_binding(binding) is None, binding.describe()


@pytest.mark.parametrize("binding", [
    acl(O.READ, resource_type=R.ANY), acl(O.READ, resource_type=R.UNKNOWN), acl(O.READ, resource_type=42),
    acl(O.READ, pattern=P.ANY), acl(O.READ, pattern=P.MATCH), acl(O.READ, pattern=P.UNKNOWN),
    acl(O.ANY), acl(O.UNKNOWN), acl(99),
    acl(O.READ, permission=Permission.ANY), acl(O.READ, permission=Permission.UNKNOWN),
    acl(O.READ, ""),
    acl(O.ALTER, "my-cluster", resource_type=R.CLUSTER),
    acl(O.WRITE, "*", pattern=P.PREFIXED),
    acl(O.READ, principal="alice"), acl(O.READ, principal="User:"), acl(O.READ, principal=":alice"),
    acl(O.READ, host=""),
])
def test_invalid_bindings(binding: AclBinding) -> None:
    assert invalid_binding(binding)


def test_binding_json_round_trip_and_describe() -> None:
    binding = acl(O.WRITE, "orders-", pattern=P.PREFIXED, host=HOST, permission=DENY)
    assert AclBinding.from_json(binding.to_json()) == binding
    text = binding.describe()
    for word in ("DENY", "User:alice", HOST, "WRITE", "TOPIC", "PREFIXED", "orders-"):
        assert word in text


# -- the single node's store -------------------------------------------------------------------


def test_local_store_persists_changes(tmp_path: Path) -> None:
    store = LocalAclStore(tmp_path)
    assert store.bindings() == frozenset() and store.version == 0
    first, second, third = acl(O.WRITE), acl(O.READ, "g", resource_type=R.GROUP), acl(O.ALL, "orders-", pattern=P.PREFIXED, permission=DENY)

    trio.run(store.change, [first, second], [], 5.0)
    assert store.bindings() == {first, second}
    assert store.version == 1
    path = tmp_path / FILE_NAME
    assert path.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, "acls.json is readable by others"
    assert LocalAclStore(tmp_path).bindings() == {first, second}

    trio.run(store.change, [third], [first], 5.0)
    assert store.bindings() == {second, third}
    assert store.version == 2
    reopened = LocalAclStore(tmp_path)
    assert reopened.bindings() == {second, third}

    # Adding what exists and removing what does not change nothing but the version.
    trio.run(store.change, [second], [first], 5.0)
    assert LocalAclStore(tmp_path).bindings() == {second, third}
    assert not list(tmp_path.glob("*.tmp"))


def test_concurrent_changes_of_the_local_store_are_all_kept(tmp_path: Path) -> None:
    """40 CreateAcls at once (each its own connection's task): each change starts from the one
    before, so none is lost, in memory or in acls.json."""
    store = LocalAclStore(tmp_path)
    wanted = [AclBinding(ResourceType.TOPIC, f"t{i}", PatternType.LITERAL, "User:a", "*", Operation.READ, Permission.ALLOW) for i in range(40)]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for acl in wanted:
                nursery.start_soon(store.change, [acl], [], 5.0)

    trio.run(main)
    assert store.bindings() == frozenset(wanted)
    assert LocalAclStore(tmp_path).bindings() == frozenset(wanted)


def test_authorizer_follows_the_local_store(tmp_path: Path) -> None:
    store = LocalAclStore(tmp_path)
    a = Authorizer(store, (), False)
    assert not a.authorize("alice", HOST, O.WRITE, R.TOPIC, "payments")
    trio.run(store.change, [acl(O.WRITE)], [], 5.0)
    assert a.authorize("alice", HOST, O.WRITE, R.TOPIC, "payments")
    trio.run(store.change, [acl(O.WRITE, permission=DENY)], [], 5.0)
    assert not a.authorize("alice", HOST, O.WRITE, R.TOPIC, "payments")
    trio.run(store.change, [], [acl(O.WRITE, permission=DENY)], 5.0)
    assert a.authorize("alice", HOST, O.WRITE, R.TOPIC, "payments")


@pytest.mark.parametrize("text", ["not json", "{}", '{"acls": [[1, 2]]}', '{"acls": 5}'])
def test_local_store_refuses_an_unreadable_file(tmp_path: Path, text: str) -> None:
    (tmp_path / FILE_NAME).write_text(text)
    with pytest.raises(ConfigError, match=FILE_NAME):
        LocalAclStore(tmp_path)


# -- configuration -----------------------------------------------------------------------------


def broker_with(tmp_path: Path, *overrides: str) -> tuple[SimpleNamespace, BrokerConfig]:
    config = BrokerConfig.load(None, [f"log.dirs={tmp_path}", *overrides])
    broker = SimpleNamespace(controller=None, logs=SimpleNamespace(data_dir=tmp_path), metrics=Metrics())
    return broker, config


def test_no_authorizer_by_default(tmp_path: Path) -> None:
    assert authorizer_for(*broker_with(tmp_path)) is None


@pytest.mark.parametrize("name", ["org.apache.kafka.metadata.authorizer.StandardAuthorizer", "kafka.security.authorizer.AclAuthorizer"])
def test_standard_authorizer_configured(tmp_path: Path, name: str) -> None:
    broker, config = broker_with(tmp_path, f"authorizer.class.name={name}", "super.users=User:admin; User:ops")
    a = authorizer_for(broker, config)
    assert a is not None
    assert a.super_users == {"User:admin", "User:ops"}
    assert a.allow_if_no_acl is False
    assert isinstance(a.store, LocalAclStore)
    assert a.authorize("ops", HOST, O.ALTER, R.CLUSTER, CLUSTER_NAME)
    assert not a.authorize("alice", HOST, O.DESCRIBE, R.TOPIC, "t")
    a.log_denied("alice", f"{HOST}:1", O.DESCRIBE, R.TOPIC, "t", "Metadata")
    assert broker.metrics.authorization_denials == {("DESCRIBE", "TOPIC"): 1}


def test_allow_everyone_if_no_acl_found_configured(tmp_path: Path) -> None:
    a = authorizer_for(*broker_with(tmp_path, "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                                    "allow.everyone.if.no.acl.found=true"))
    assert a is not None and a.allow_if_no_acl is True and a.super_users == frozenset()
    assert a.authorize("alice", HOST, O.WRITE, R.TOPIC, "t")


@pytest.mark.parametrize("overrides, message", [
    (["authorizer.class.name=com.example.RangerAuthorizer"], "built-in authorizer"),
    (["authorizer.class.name=fastlog", "super.users=admin"], "super.users"),
])
def test_bad_authorizer_configuration(tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        authorizer_for(*broker_with(tmp_path, *overrides))
