"""The built-in authorizer against real clients: a broker with PLAINTEXT (principal
User:ANONYMOUS) and SASL_PLAINTEXT (PLAIN users admin, alice, bob, carol) listeners,
`authorizer.class.name=StandardAuthorizer`, `super.users=User:admin` and
`allow.everyone.if.no.acl.found=false`. ACLs are made and removed by admin with
confluent-kafka's CreateAcls and DeleteAcls, so the ACL APIs are exercised too.

The matrix: produce, consume (topic READ and group READ), offset commit and fetch, admin
operations, Metadata (what a listing shows, what a named topic answers, auto-creation),
idempotent producers (IDEMPOTENT_WRITE, or WRITE on some topic), LITERAL against PREFIXED
names, DENY over ALLOW, super users, `User:*`, host-specific ACLs, authorized-operations
fields, kafka-python (this environment's and 2.0.2) refused a write, the denial metric and
ACLs kept across a restart. Exact error codes where a client does not report them (or
reports them ambiguously) are read with fastlog's own client over PLAINTEXT, as ANONYMOUS.

Each test uses its own topics and groups and removes the ACLs it made, so the tests do not
depend on each other's order; every client call is bounded.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from fastlog import protocol
from fastlog.client import Client, KafkaError
from fastlog.protocol import ErrorCode
from fastlog.records import Record
from tests.conftest import BrokerProcess, free_port
from tests.security.conftest import JAAS_FILE

pytestmark = pytest.mark.timeout(60)

USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
ANONYMOUS = None  # a client on the PLAINTEXT listener
TIMEOUT = 15.0  # the most any one client call may take
CLUSTER = "kafka-cluster"
OTHER_HOST = "10.0.0.1"
KAFKA_PYTHON_2 = Path(__file__).resolve().parents[2] / ".cache" / "clients" / "python" / "kafka-python-2.0.2" / "bin" / "python"
LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
TOPIC, GROUP, BROKER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.BROKER  # confluent's BROKER is Kafka's CLUSTER
Op = AclOperation
ONE_RECORD = [Record(0, 0, None, b"x")]  # for fastlog's client


@dataclass
class AclBroker:
    process: BrokerProcess
    plaintext_port: int
    sasl_port: int
    metrics_port: int
    admin: AdminClient = field(init=False)

    def __post_init__(self) -> None:
        self.admin = AdminClient(self.conf("admin"))

    def conf(self, user: Optional[str], **extra: Any) -> dict:
        """A confluent-kafka configuration for `user` over SASL_PLAINTEXT (None: PLAINTEXT)."""
        bounded = {"socket.timeout.ms": 10_000, "socket.connection.setup.timeout.ms": 10_000}
        if user is None:
            return {"bootstrap.servers": f"127.0.0.1:{self.plaintext_port}", **bounded, **extra}
        return {
            "bootstrap.servers": f"127.0.0.1:{self.sasl_port}", "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": user, "sasl.password": USERS[user], **bounded, **extra,
        }

    def raw(self) -> Client:
        """fastlog's client on the PLAINTEXT listener: principal User:ANONYMOUS."""
        return Client(f"127.0.0.1:{self.plaintext_port}", timeout=TIMEOUT)

    def log_tail(self) -> str:
        return self.process.log_text()[-3000:]


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclBroker]:
    tmp = tmp_path_factory.mktemp("acls")
    jaas = tmp / "jaas.conf"
    jaas.write_text(JAAS_FILE % "\n".join(f'    user_{u}="{p}"' for u, p in USERS.items()))
    plaintext, sasl, metrics = free_port(), free_port(), free_port()
    process = BrokerProcess(tmp / "data", {
        "listeners": f"PLAINTEXT://127.0.0.1:{plaintext},SASL_PLAINTEXT://127.0.0.1:{sasl}",
        "sasl.enabled.mechanisms": "PLAIN",
        "java.security.auth.login.config": str(jaas),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin",
        "allow.everyone.if.no.acl.found": "false",
        "metrics.port": str(metrics),
        "connection.failed.authentication.delay.ms": "20",
    })
    process.port = plaintext
    process.start()
    try:
        yield AclBroker(process, plaintext, sasl, metrics)
    finally:
        process.stop()


# -- ACLs ----------------------------------------------------------------------------------------


def binding(principal: str, resource_type: ResourceType, name: str, operation: AclOperation, *, allow: bool = True,
            pattern: ResourcePatternType = LITERAL, host: str = "*") -> AclBinding:
    permission = AclPermissionType.ALLOW if allow else AclPermissionType.DENY
    return AclBinding(resource_type, name, pattern, principal, host, operation, permission)


def exact_filter(b: AclBinding) -> AclBindingFilter:
    return AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)


def error_name(future: Any, timeout: float = TIMEOUT) -> Optional[str]:
    """None when the admin future succeeds, else Kafka's name of its error."""
    try:
        future.result(timeout=timeout)
    except KafkaException as e:
        return e.args[0].name()
    return None


class Acls:
    """ACLs a test makes as admin; removed when the test ends."""

    def __init__(self, broker: AclBroker) -> None:
        self.broker = broker
        self.made: list[AclBinding] = []

    def add(self, *bindings: AclBinding) -> None:
        futures = self.broker.admin.create_acls(list(bindings))
        self.made += bindings
        for b, future in futures.items():
            assert error_name(future) is None, f"admin could not create {b}"

    def allow(self, principal: Optional[str], resource_type: ResourceType, name: str, *operations: AclOperation,
              pattern: ResourcePatternType = LITERAL, host: str = "*") -> None:
        self.add(*(binding(user_principal(principal), resource_type, name, op, pattern=pattern, host=host) for op in operations))

    def deny(self, principal: Optional[str], resource_type: ResourceType, name: str, *operations: AclOperation,
             pattern: ResourcePatternType = LITERAL, host: str = "*") -> None:
        self.add(*(binding(user_principal(principal), resource_type, name, op, allow=False, pattern=pattern, host=host) for op in operations))

    def remove_all(self) -> None:
        if not self.made:
            return
        futures = self.broker.admin.delete_acls([exact_filter(b) for b in self.made])
        for f, future in futures.items():
            assert error_name(future) is None, f"admin could not delete {f}"
        self.made = []


def user_principal(user: Optional[str]) -> str:
    if user is None:
        return "User:ANONYMOUS"
    return user if user.startswith("User:") else f"User:{user}"


@pytest.fixture
def acls(acl_broker: AclBroker) -> Iterator[Acls]:
    made = Acls(acl_broker)
    try:
        yield made
    finally:
        made.remove_all()


# -- clients -------------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_topic(broker: AclBroker, prefix: str = "acl", partitions: int = 1, records: int = 0) -> str:
    """A topic admin makes (and fills with `records` records)."""
    name = unique(prefix)
    for future in broker.admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=TIMEOUT).values():
        assert error_name(future) is None, f"admin could not create {name}"
    if records:
        outcome = produce(broker, "admin", name, records)
        assert outcome.delivered == records, outcome
    return name


def topic_exists(broker: AclBroker, name: str) -> bool:
    return name in broker.admin.list_topics(timeout=TIMEOUT).topics


@dataclass
class Outcome:
    delivered: int
    errors: list[str]  # Kafka's names of the errors in the failed records' delivery reports

    def refused_with(self, name: str) -> bool:
        return name in self.errors


def produce(broker: AclBroker, user: Optional[str], topic: str, count: int = 1, **extra: Any) -> Outcome:
    """Produces `count` records with confluent-kafka as `user`; what became of them."""
    failed: list[Any] = []
    delivered: list[Any] = []

    def on_delivery(err: Any, msg: Any) -> None:
        (delivered if err is None else failed).append(err or msg)

    producer = Producer(broker.conf(user, **{
        "message.timeout.ms": 8000, "topic.metadata.propagation.max.ms": 1000, "retry.backoff.ms": 100,
        **extra,
    }))
    for i in range(count):
        producer.produce(topic, f"value-{i}".encode(), on_delivery=on_delivery)
    left = producer.flush(TIMEOUT)
    assert left == 0, f"{left} records neither delivered nor failed within {TIMEOUT}s"
    return Outcome(len(delivered), [e.name() for e in failed])


def produce_idempotent(broker: AclBroker, user: str, topic: str, count: int = 1) -> tuple[str, int]:
    """Produces with an idempotent confluent-kafka producer: (the fatal error's text, or "",
    the topic's end offset afterwards). A refused producer id is a fatal error, which
    confluent-kafka 2.16 raises from flush() as a bare KafkaError (no exception class) and with
    which it cannot run Python callbacks (SystemError), hence no delivery callback here."""
    producer = Producer(broker.conf(user, **{"enable.idempotence": True, "message.timeout.ms": 8000}))
    for i in range(count):
        producer.produce(topic, f"value-{i}".encode())
    fatal = ""
    try:
        left = producer.flush(TIMEOUT)
    except:  # noqa: E722 -- see above: what is raised is not an exception class
        raised = sys.exc_info()[1]
        fatal = " / ".join(str(e) for e in (raised, getattr(raised, "__context__", None)) if e is not None)
        producer.purge()
        left = producer.flush(TIMEOUT)
    assert left == 0, f"{left} records neither delivered nor failed within {TIMEOUT}s"
    return fatal, end_offset(broker, topic)


def end_offset(broker: AclBroker, topic: str) -> int:
    """The sum of the topic's partitions' end offsets, as admin sees them."""
    partitions = broker.admin.list_topics(topic, timeout=TIMEOUT).topics[topic].partitions
    consumer = Consumer(broker.conf("admin", **{"group.id": unique("watermarks")}))
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)[1] for p in partitions)
    finally:
        consumer.close()


def consume(broker: AclBroker, user: Optional[str], topic: str, group: str, count: int, timeout: float = 10.0) -> tuple[list[str], list[str]]:
    """Reads up to `count` records of `topic` in `group` (subscribed); (values, error names).
    Stops at the first authorization error."""
    errors: list[str] = []
    consumer = Consumer(broker.conf(user, **{
        "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False, "session.timeout.ms": 6000,
        "error_cb": lambda e: errors.append(e.name()),
    }))
    values: list[str] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(values) < count and time.monotonic() < deadline and not any("AUTHORIZATION" in e for e in errors):
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                errors.append(message.error().name())
            else:
                values.append(message.value().decode())
    finally:
        consumer.close()
    return values, errors


def raw_error(call: Callable[[], Any]) -> Optional[str]:
    """None when fastlog's client call succeeds, else the Kafka error's name."""
    try:
        call()
    except KafkaError as e:
        return e.name
    return None


def metadata_topic(client: Client, topic: str, *, auto_create: bool = False) -> Any:
    """The Metadata response's entry for one named topic (sent as ANONYMOUS)."""
    M = protocol.MetadataRequest
    response = client.any_connection().request(M(topics=[M.MetadataRequestTopic(name=topic)], allow_auto_topic_creation=auto_create))
    [entry] = [t for t in response.topics if t.name == topic]
    return entry


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# -- the ACL APIs ----------------------------------------------------------------------------------


def test_acl_apis_create_describe_delete(acl_broker: AclBroker) -> None:
    admin = acl_broker.admin
    name = unique("api")
    made = [
        binding("User:alice", TOPIC, name, Op.WRITE),
        binding("User:bob", TOPIC, f"{name}-", Op.READ, pattern=PREFIXED, allow=False, host=OTHER_HOST),
        binding("User:*", GROUP, name, Op.DESCRIBE),
    ]
    for b, future in admin.create_acls(made).items():
        assert error_name(future) is None, b
    try:
        everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, Op.ANY, AclPermissionType.ANY)
        assert set(made) <= set(admin.describe_acls(everything).result(timeout=TIMEOUT))
        of_topic = AclBindingFilter(TOPIC, name, ResourcePatternType.ANY, None, None, Op.ANY, AclPermissionType.ANY)
        assert admin.describe_acls(of_topic).result(timeout=TIMEOUT) == [made[0]]
        # MATCH: every ACL that applies to the topic `<name>-eu`, the prefixed one among them.
        applying = AclBindingFilter(TOPIC, f"{name}-eu", ResourcePatternType.MATCH, None, None, Op.ANY, AclPermissionType.ANY)
        assert admin.describe_acls(applying).result(timeout=TIMEOUT) == [made[1]]
        denials = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:bob", None, Op.ANY, AclPermissionType.DENY)
        assert made[1] in admin.describe_acls(denials).result(timeout=TIMEOUT)
        # Creating an ACL that exists succeeds and keeps one copy.
        assert error_name(admin.create_acls([made[0]])[made[0]]) is None
        assert admin.describe_acls(of_topic).result(timeout=TIMEOUT) == [made[0]]
    finally:
        deleted = {f: future.result(timeout=TIMEOUT) for f, future in admin.delete_acls([exact_filter(b) for b in made]).items()}
    assert sorted(map(str, (b for bs in deleted.values() for b in bs))) == sorted(map(str, made))
    assert not set(made) & set(admin.describe_acls(everything).result(timeout=TIMEOUT))
    # A filter that matches nothing deletes nothing, without an error.
    nothing = AclBindingFilter(TOPIC, unique("none"), ResourcePatternType.ANY, None, None, Op.ANY, AclPermissionType.ANY)
    assert [f.result(timeout=TIMEOUT) for f in admin.delete_acls([nothing]).values()] == [[]]


def test_invalid_acl_is_refused(acl_broker: AclBroker) -> None:
    b = binding("User:alice", TOPIC, "*", Op.WRITE, pattern=PREFIXED)
    assert error_name(acl_broker.admin.create_acls([b])[b]) == "INVALID_REQUEST"
    cluster = binding("User:alice", BROKER, "my-cluster", Op.ALTER)
    assert error_name(acl_broker.admin.create_acls([cluster])[cluster]) == "INVALID_REQUEST"


def test_acl_apis_need_cluster_alter_and_describe(acl_broker: AclBroker, acls: Acls) -> None:
    topic = unique("api-auth")
    acls.allow("bob", TOPIC, topic, Op.READ)  # an ACL alice must not see
    alice = AdminClient(acl_broker.conf("alice"))
    wanted = binding("User:alice", TOPIC, topic, Op.ALL)
    of_topic = AclBindingFilter(TOPIC, topic, ResourcePatternType.ANY, None, None, Op.ANY, AclPermissionType.ANY)

    assert error_name(alice.create_acls([wanted])[wanted]) == "CLUSTER_AUTHORIZATION_FAILED"
    assert [error_name(f) for f in alice.delete_acls([of_topic]).values()] == ["CLUSTER_AUTHORIZATION_FAILED"]
    # librdkafka drops DescribeAcls' error code, so a refused listing reads as an empty one: it
    # must at least show nothing. The code itself, over the wire:
    assert alice.describe_acls(of_topic).result(timeout=TIMEOUT) == []
    with acl_broker.raw() as client:
        R = protocol.DescribeAclsRequest
        answer = client.any_connection().request(R(resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1,
                                                    principal_filter=None, host_filter=None, operation=1, permission_type=1))
        assert answer.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED and answer.resources == []
    assert len(acl_broker.admin.describe_acls(of_topic).result(timeout=TIMEOUT)) == 1, "alice's refused DeleteAcls deleted an ACL"

    acls.allow("alice", BROKER, CLUSTER, Op.DESCRIBE)
    assert alice.describe_acls(of_topic).result(timeout=TIMEOUT) == [binding("User:bob", TOPIC, topic, Op.READ)]
    assert error_name(alice.create_acls([wanted])[wanted]) == "CLUSTER_AUTHORIZATION_FAILED"
    acls.allow("alice", BROKER, CLUSTER, Op.ALTER)
    acls.made.append(wanted)  # removed by admin at the end
    assert error_name(alice.create_acls([wanted])[wanted]) is None
    assert wanted in acl_broker.admin.describe_acls(of_topic).result(timeout=TIMEOUT)


# -- produce ---------------------------------------------------------------------------------------


def test_produce_allowed_and_denied(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "produce")
    acls.allow("alice", TOPIC, topic, Op.WRITE)
    allowed = produce(acl_broker, "alice", topic, 3)
    assert (allowed.delivered, allowed.errors) == (3, []), allowed

    denied = produce(acl_broker, "bob", topic, 2)
    assert denied.delivered == 0, f"bob wrote to {topic} without an ACL: {denied}"
    assert denied.refused_with("TOPIC_AUTHORIZATION_FAILED"), denied
    # Nothing of bob's reached the log.
    with acl_broker.raw() as client:
        acls.allow(ANONYMOUS, TOPIC, topic, Op.DESCRIBE)
        assert client.offsets_of(topic)[0][1] == 3


def test_produce_denied_with_produce_request_error_code(acl_broker: AclBroker, acls: Acls) -> None:
    """A Produce request for a topic the principal may DESCRIBE but not WRITE: the partition's
    error is TOPIC_AUTHORIZATION_FAILED (a client that asks Metadata first never sends it)."""
    topic = new_topic(acl_broker, "produce-raw")
    acls.allow(ANONYMOUS, TOPIC, topic, Op.DESCRIBE)
    with acl_broker.raw() as client:
        assert raw_error(lambda: client.produce({(topic, 0): ONE_RECORD})) == "TOPIC_AUTHORIZATION_FAILED"
        assert client.offsets_of(topic)[0][1] == 0
        acls.allow(ANONYMOUS, TOPIC, topic, Op.WRITE)
        assert raw_error(lambda: client.produce({(topic, 0): ONE_RECORD})) is None


def test_produce_to_missing_topic_while_denied(acl_broker: AclBroker) -> None:
    """An unauthorized client cannot learn whether a topic exists, nor create it."""
    topic = unique("missing")
    denied = produce(acl_broker, "bob", topic)
    assert denied.delivered == 0
    assert denied.refused_with("TOPIC_AUTHORIZATION_FAILED"), denied
    assert "UNKNOWN_TOPIC_OR_PART" not in denied.errors and "_UNKNOWN_TOPIC" not in denied.errors, denied
    assert not topic_exists(acl_broker, topic), "a denied producer auto-created the topic"


def test_plaintext_anonymous_needs_acls(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "anonymous")
    denied = produce(acl_broker, ANONYMOUS, topic)
    assert denied.delivered == 0 and denied.refused_with("TOPIC_AUTHORIZATION_FAILED"), denied
    acls.allow(ANONYMOUS, TOPIC, topic, Op.WRITE)
    allowed = produce(acl_broker, ANONYMOUS, topic)
    assert allowed.delivered == 1, allowed


# -- consume and offsets ---------------------------------------------------------------------------


def test_consume_needs_read_on_topic_and_group(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "consume", records=3)
    group = unique("consume-group")
    acls.allow("alice", TOPIC, topic, Op.READ)
    acls.allow("alice", GROUP, group, Op.READ)
    values, errors = consume(acl_broker, "alice", topic, group, 3)
    assert sorted(values) == ["value-0", "value-1", "value-2"], errors

    # carol may read the topic, but has no ACL on her group.
    acls.allow("carol", TOPIC, topic, Op.READ)
    values, errors = consume(acl_broker, "carol", topic, unique("carol-group"), 3)
    assert values == [] and "GROUP_AUTHORIZATION_FAILED" in errors, (values, errors)

    # FindCoordinator needs DESCRIBE on the group, JoinGroup READ.
    described = unique("described-group")
    acls.allow("carol", GROUP, described, Op.DESCRIBE)
    values, errors = consume(acl_broker, "carol", topic, described, 3)
    assert values == [] and "GROUP_AUTHORIZATION_FAILED" in errors, (values, errors)

    # bob may use his group, but not read the topic.
    bob_group = unique("bob-group")
    acls.allow("bob", GROUP, bob_group, Op.READ)
    values, errors = consume(acl_broker, "bob", topic, bob_group, 3)
    assert values == [] and "TOPIC_AUTHORIZATION_FAILED" in errors, (values, errors)


def test_fetch_and_list_offsets(acl_broker: AclBroker, acls: Acls) -> None:
    """Over the wire: ListOffsets needs DESCRIBE, Fetch needs READ."""
    topic = new_topic(acl_broker, "fetch", records=2)
    with acl_broker.raw() as client:
        acls.allow(ANONYMOUS, TOPIC, topic, Op.DESCRIBE)
        client.metadata([topic])  # the client knows the leader from here on
        assert client.list_offsets([(topic, 0)]) == {(topic, 0): 2}
        fetched = client.fetch({(topic, 0): 0})[(topic, 0)]
        assert (fetched.error_code, fetched.records) == (ErrorCode.TOPIC_AUTHORIZATION_FAILED, []), fetched
        acls.allow(ANONYMOUS, TOPIC, topic, Op.READ)
        fetched = client.fetch({(topic, 0): 0})[(topic, 0)]
        assert fetched.error_code == 0 and [r.value for r in fetched.records] == [b"value-0", b"value-1"], fetched
        acls.remove_all()
        assert raw_error(lambda: client.list_offsets([(topic, 0)])) == "TOPIC_AUTHORIZATION_FAILED"
        assert client.fetch({(topic, 0): 0})[(topic, 0)].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED


def test_offset_commit_and_fetch(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "offsets")
    group = unique("offsets-group")
    acls.allow("alice", GROUP, group, Op.READ)
    acls.allow("alice", TOPIC, topic, Op.READ)
    consumer = Consumer(acl_broker.conf("alice", **{"group.id": group, "enable.auto.commit": False}))
    try:
        committed = consumer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
        assert [(p.offset, p.error) for p in committed] == [(2, None)]
        assert [p.offset for p in consumer.committed([TopicPartition(topic, 0)], timeout=TIMEOUT)] == [2]
    finally:
        consumer.close()
    alice = AdminClient(acl_broker.conf("alice"))
    [future] = alice.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])]).values()
    assert [p.offset for p in future.result(timeout=TIMEOUT).topic_partitions] == [2]

    # bob: no ACL on the group.
    bob = AdminClient(acl_broker.conf("bob"))
    [future] = bob.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])]).values()
    assert error_name(future) == "GROUP_AUTHORIZATION_FAILED"

    # The exact answers over the wire, as ANONYMOUS.
    with acl_broker.raw() as client:
        other = unique("raw-group")
        assert raw_error(lambda: client.commit_offsets(other, {(topic, 0): 1})) == "GROUP_AUTHORIZATION_FAILED"
        assert raw_error(lambda: client.committed_offsets(other, [(topic, 0)])) == "GROUP_AUTHORIZATION_FAILED"
        acls.allow(ANONYMOUS, GROUP, other, Op.READ)
        # READ on the group without READ on the topic: the partition is refused.
        assert raw_error(lambda: client.commit_offsets(other, {(topic, 0): 1})) == "TOPIC_AUTHORIZATION_FAILED"
        acls.allow(ANONYMOUS, TOPIC, topic, Op.READ)
        assert raw_error(lambda: client.commit_offsets(other, {(topic, 0): 1})) is None
        assert [(c.topic, c.offset, c.error_code) for c in client.committed_offsets(other, [(topic, 0)])] == [(topic, 1, 0)]


def test_offset_fetch_leaves_out_topics_the_client_may_not_describe(acl_broker: AclBroker, acls: Acls) -> None:
    seen, hidden = new_topic(acl_broker, "seen"), new_topic(acl_broker, "hidden")
    group = unique("fetch-all")
    with acl_broker.raw() as client:
        acls.allow(ANONYMOUS, GROUP, group, Op.READ)
        acls.allow(ANONYMOUS, TOPIC, seen, Op.READ)
        acls.allow(ANONYMOUS, TOPIC, hidden, Op.READ)
        client.commit_offsets(group, {(seen, 0): 1, (hidden, 0): 1})
        acls.remove_all()
        acls.allow(ANONYMOUS, GROUP, group, Op.DESCRIBE)
        acls.allow(ANONYMOUS, TOPIC, seen, Op.DESCRIBE)
        assert [c.topic for c in client.committed_offsets(group)] == [seen]


def test_group_membership_needs_group_read(acl_broker: AclBroker, acls: Acls) -> None:
    """JoinGroup, SyncGroup, Heartbeat and LeaveGroup over the wire with DESCRIBE on the group
    (FindCoordinator passes) but not READ: GROUP_AUTHORIZATION_FAILED; OffsetDelete needs DELETE."""
    group = unique("members")
    acls.allow(ANONYMOUS, GROUP, group, Op.DESCRIBE)
    J, S, H, L = protocol.JoinGroupRequest, protocol.SyncGroupRequest, protocol.HeartbeatRequest, protocol.LeaveGroupRequest
    join = J(group_id=group, session_timeout_ms=10_000, rebalance_timeout_ms=10_000, member_id="", group_instance_id=None,
             protocol_type="consumer", protocols=[J.JoinGroupRequestProtocol(name="range", metadata=b"")])
    sync = S(group_id=group, generation_id=1, member_id="m", group_instance_id=None, protocol_type="consumer", protocol_name="range", assignments=[])
    heartbeat = H(group_id=group, generation_id=1, member_id="m", group_instance_id=None)
    leave = L(group_id=group, members=[L.MemberIdentity(member_id="m", group_instance_id=None)])
    offset_delete = protocol.OffsetDeleteRequest(group_id=group, topics=[])
    with acl_broker.raw() as client:
        coordinator = client.coordinator(group)
        for request, version in ((join, 5), (sync, 3), (heartbeat, 3), (leave, 3), (offset_delete, 0)):
            answer = coordinator.call(request, version)
            assert answer.error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED, (type(request).__name__, answer)
        acls.allow(ANONYMOUS, GROUP, group, Op.READ)
        answer = coordinator.call(join, 5)
        assert answer.error_code in (0, ErrorCode.MEMBER_ID_REQUIRED), answer
        assert coordinator.call(offset_delete, 0).error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED


# -- groups ----------------------------------------------------------------------------------------


def make_group(broker: AclBroker, topic: str) -> str:
    """A group with a committed offset and no members, made by admin."""
    group = unique("group")
    consumer = Consumer(broker.conf("admin", **{"group.id": group, "enable.auto.commit": False}))
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        consumer.close()
    return group


def test_group_listing_describe_and_delete(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "groups")
    mine, theirs = make_group(acl_broker, topic), make_group(acl_broker, topic)
    alice = AdminClient(acl_broker.conf("alice"))

    def listed() -> set[str]:
        return {g.group_id for g in alice.list_consumer_groups(request_timeout=TIMEOUT).result(timeout=TIMEOUT).valid}

    assert not {mine, theirs} & listed()
    [future] = alice.describe_consumer_groups([mine]).values()
    assert error_name(future) == "GROUP_AUTHORIZATION_FAILED"

    acls.allow("alice", GROUP, mine, Op.DESCRIBE)
    assert mine in listed() and theirs not in listed()
    [future] = alice.describe_consumer_groups([mine], include_authorized_operations=True).values()
    assert set(future.result(timeout=TIMEOUT).authorized_operations) == {Op.DESCRIBE}
    [future] = alice.delete_consumer_groups([mine], request_timeout=TIMEOUT).values()
    assert error_name(future) == "GROUP_AUTHORIZATION_FAILED"

    acls.allow("alice", GROUP, mine, Op.DELETE)
    [future] = alice.describe_consumer_groups([mine], include_authorized_operations=True).values()
    assert set(future.result(timeout=TIMEOUT).authorized_operations) == {Op.DESCRIBE, Op.DELETE}
    [future] = alice.delete_consumer_groups([mine], request_timeout=TIMEOUT).values()
    assert error_name(future) is None
    assert mine not in {g.group_id for g in acl_broker.admin.list_consumer_groups().result(timeout=TIMEOUT).valid}

    # DESCRIBE on the cluster lists every group.
    acls.allow("alice", BROKER, CLUSTER, Op.DESCRIBE)
    assert theirs in listed()


# -- admin operations ------------------------------------------------------------------------------


def test_create_topics(acl_broker: AclBroker, acls: Acls) -> None:
    alice = AdminClient(acl_broker.conf("alice"))
    prefix = unique("alice-made") + "-"

    def create(name: str) -> Optional[str]:
        return error_name(alice.create_topics([NewTopic(name, 1, 1)], operation_timeout=TIMEOUT)[name])

    assert create(f"{prefix}one") == "TOPIC_AUTHORIZATION_FAILED"
    assert not topic_exists(acl_broker, f"{prefix}one")
    acls.allow("alice", TOPIC, prefix, Op.CREATE, pattern=PREFIXED)
    assert create(f"{prefix}one") is None
    assert topic_exists(acl_broker, f"{prefix}one")
    other = unique("elsewhere")
    assert create(other) == "TOPIC_AUTHORIZATION_FAILED"
    acls.allow("alice", BROKER, CLUSTER, Op.CREATE)  # CREATE on the cluster: any topic
    assert create(other) is None


def test_delete_topics(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "delete-me")
    alice = AdminClient(acl_broker.conf("alice"))
    assert error_name(alice.delete_topics([topic], operation_timeout=TIMEOUT)[topic]) == "TOPIC_AUTHORIZATION_FAILED"
    assert topic_exists(acl_broker, topic)
    acls.allow("alice", TOPIC, topic, Op.DELETE)
    assert error_name(alice.delete_topics([topic], operation_timeout=TIMEOUT)[topic]) is None
    assert wait_until(lambda: not topic_exists(acl_broker, topic))


def test_describe_configs(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "configs")
    alice = AdminClient(acl_broker.conf("alice"))

    def describe(resource: ConfigResource) -> tuple[Optional[str], dict]:
        [future] = alice.describe_configs([resource], request_timeout=TIMEOUT).values()
        try:
            return None, future.result(timeout=TIMEOUT)
        except KafkaException as e:
            return e.args[0].name(), {}

    assert describe(ConfigResource(TOPIC, topic))[0] == "TOPIC_AUTHORIZATION_FAILED"
    acls.allow("alice", TOPIC, topic, Op.DESCRIBE_CONFIGS)
    error, entries = describe(ConfigResource(TOPIC, topic))
    assert error is None and "retention.ms" in entries

    broker_id = str(min(acl_broker.admin.list_topics(timeout=TIMEOUT).brokers))
    assert describe(ConfigResource(BROKER, broker_id))[0] == "CLUSTER_AUTHORIZATION_FAILED"
    acls.allow("alice", BROKER, CLUSTER, Op.DESCRIBE_CONFIGS)
    error, entries = describe(ConfigResource(BROKER, broker_id))
    assert error is None and entries


def test_alter_configs(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "alter")
    alice = AdminClient(acl_broker.conf("alice"))

    def alter(value: str) -> Optional[str]:
        resource = ConfigResource(TOPIC, topic, incremental_configs=[ConfigEntry("retention.ms", value, incremental_operation=AlterConfigOpType.SET)])
        [future] = alice.incremental_alter_configs([resource], request_timeout=TIMEOUT).values()
        return error_name(future)

    def retention() -> str:
        [future] = acl_broker.admin.describe_configs([ConfigResource(TOPIC, topic)]).values()
        return future.result(timeout=TIMEOUT)["retention.ms"].value

    before = retention()
    assert alter("3600000") == "TOPIC_AUTHORIZATION_FAILED"
    assert retention() == before
    acls.allow("alice", TOPIC, topic, Op.DESCRIBE_CONFIGS)  # may look, not change
    assert alter("3600000") == "TOPIC_AUTHORIZATION_FAILED"
    acls.allow("alice", TOPIC, topic, Op.ALTER_CONFIGS)
    assert alter("3600000") is None
    assert retention() == "3600000"
    # Legacy AlterConfigs (API 33) over the wire needs ALTER_CONFIGS too.
    with acl_broker.raw() as client:
        A = protocol.AlterConfigsRequest
        request = A(resources=[A.AlterConfigsResource(resource_type=2, resource_name=topic, configs=[
            A.AlterableConfig(name="retention.ms", value="7200000")])], validate_only=False)
        answer = client.any_connection().call(request, 1)
        assert [r.error_code for r in answer.responses] == [ErrorCode.TOPIC_AUTHORIZATION_FAILED]


def test_create_partitions(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "grow")
    alice = AdminClient(acl_broker.conf("alice"))

    def grow(total: int) -> Optional[str]:
        return error_name(alice.create_partitions([NewPartitions(topic, total)], operation_timeout=TIMEOUT)[topic])

    assert grow(2) == "TOPIC_AUTHORIZATION_FAILED"
    acls.allow("alice", TOPIC, topic, Op.ALTER)
    assert grow(2) is None
    assert wait_until(lambda: len(acl_broker.admin.list_topics(topic, timeout=TIMEOUT).topics[topic].partitions) == 2)


def test_delete_records(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "trim", records=3)

    def trim() -> Optional[str]:
        alice = AdminClient(acl_broker.conf("alice"))  # librdkafka remembers a topic it was refused
        [future] = alice.delete_records([TopicPartition(topic, 0, 2)], request_timeout=TIMEOUT).values()
        return error_name(future)

    # librdkafka looks the leader up first, and reports the refused Metadata as _NOENT.
    assert trim() is not None
    acls.allow("alice", TOPIC, topic, Op.DESCRIBE)
    assert trim() == "TOPIC_AUTHORIZATION_FAILED"
    with acl_broker.raw() as client:
        acls.allow(ANONYMOUS, TOPIC, topic, Op.DESCRIBE)
        assert client.offsets_of(topic)[0] == (0, 3)
    acls.allow("alice", TOPIC, topic, Op.DELETE)
    assert trim() is None
    [future] = acl_broker.admin.delete_records([TopicPartition(topic, 0, 0)]).values()
    assert future.result(timeout=TIMEOUT).low_watermark == 2


# -- describing: Metadata, DescribeCluster, authorized operations -----------------------------------


def test_list_topics_shows_only_allowed_topics(acl_broker: AclBroker, acls: Acls) -> None:
    visible, hidden = new_topic(acl_broker, "visible"), new_topic(acl_broker, "hidden")
    acls.allow("alice", TOPIC, visible, Op.DESCRIBE)
    alice = AdminClient(acl_broker.conf("alice"))
    listed = alice.list_topics(timeout=TIMEOUT).topics
    assert visible in listed and hidden not in listed
    assert listed[visible].error is None

    named = alice.list_topics(hidden, timeout=TIMEOUT).topics[hidden]
    assert named.error is not None and named.error.name() == "TOPIC_AUTHORIZATION_FAILED", named.error
    missing = unique("nowhere")
    named = alice.list_topics(missing, timeout=TIMEOUT).topics[missing]
    assert named.error is not None and named.error.name() == "TOPIC_AUTHORIZATION_FAILED", named.error

    assert hidden in acl_broker.admin.list_topics(timeout=TIMEOUT).topics  # the super user sees all


def test_metadata_hides_existence_and_auto_creation_needs_create(acl_broker: AclBroker, acls: Acls) -> None:
    """As KafkaApis.handleTopicMetadataRequest: a topic the client may not DESCRIBE is
    TOPIC_AUTHORIZATION_FAILED whether it exists or not (and is left out of a listing); one it
    may DESCRIBE that does not exist is UNKNOWN_TOPIC_OR_PARTITION, or, when the request asks
    for auto-creation, TOPIC_AUTHORIZATION_FAILED unless it may CREATE the topic or on the
    cluster."""
    existing = new_topic(acl_broker, "exists")
    missing, creatable, by_cluster = unique("not-there"), unique("auto"), unique("auto-cluster")
    with acl_broker.raw() as client:
        assert metadata_topic(client, existing).error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        assert metadata_topic(client, missing).error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        assert metadata_topic(client, missing, auto_create=True).error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        assert not topic_exists(acl_broker, missing)
        listing = client.any_connection().request(protocol.MetadataRequest(topics=None, allow_auto_topic_creation=False))
        assert existing not in {t.name for t in listing.topics}

        # May describe (WRITE implies it), may not create.
        acls.allow(ANONYMOUS, TOPIC, creatable, Op.WRITE)
        assert metadata_topic(client, creatable).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert metadata_topic(client, creatable, auto_create=True).error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        assert not topic_exists(acl_broker, creatable)
        acls.allow(ANONYMOUS, TOPIC, creatable, Op.CREATE)
        assert metadata_topic(client, creatable, auto_create=True).error_code in (0, ErrorCode.LEADER_NOT_AVAILABLE)
        assert wait_until(lambda: topic_exists(acl_broker, creatable))

        acls.allow(ANONYMOUS, TOPIC, by_cluster, Op.DESCRIBE)
        acls.allow(ANONYMOUS, BROKER, CLUSTER, Op.CREATE)
        assert metadata_topic(client, by_cluster, auto_create=True).error_code in (0, ErrorCode.LEADER_NOT_AVAILABLE)
        assert wait_until(lambda: topic_exists(acl_broker, by_cluster))


def test_producer_auto_create_needs_create(acl_broker: AclBroker, acls: Acls) -> None:
    topic = unique("auto-produce")
    acls.allow("alice", TOPIC, topic, Op.WRITE)
    refused = produce(acl_broker, "alice", topic)
    assert refused.delivered == 0 and refused.refused_with("TOPIC_AUTHORIZATION_FAILED"), refused
    assert not topic_exists(acl_broker, topic)
    acls.allow("alice", TOPIC, topic, Op.CREATE)
    created = produce(acl_broker, "alice", topic)
    assert created.delivered == 1, created


def test_describe_cluster_and_authorized_operations(acl_broker: AclBroker, acls: Acls) -> None:
    """As Kafka's DescribeCluster: anyone may ask; the cluster's authorized operations are
    those allowed when the client may DESCRIBE the cluster, and none otherwise."""
    alice = AdminClient(acl_broker.conf("alice"))
    described = alice.describe_cluster(include_authorized_operations=True, request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    assert described.nodes and not described.authorized_operations
    acls.allow("alice", BROKER, CLUSTER, Op.DESCRIBE, Op.IDEMPOTENT_WRITE)
    described = alice.describe_cluster(include_authorized_operations=True, request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    assert set(described.authorized_operations) == {Op.DESCRIBE, Op.IDEMPOTENT_WRITE}

    admin = acl_broker.admin.describe_cluster(include_authorized_operations=True).result(timeout=TIMEOUT)
    assert set(admin.authorized_operations) == {Op.CREATE, Op.ALTER, Op.DESCRIBE, Op.CLUSTER_ACTION, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS,
                                                Op.IDEMPOTENT_WRITE}


def test_topic_authorized_operations(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "ops")
    acls.allow("alice", TOPIC, topic, Op.READ, Op.ALTER_CONFIGS)
    alice = AdminClient(acl_broker.conf("alice"))
    [future] = alice.describe_topics(TopicCollection([topic]), include_authorized_operations=True, request_timeout=TIMEOUT).values()
    assert set(future.result(timeout=TIMEOUT).authorized_operations) == {Op.READ, Op.DESCRIBE, Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS}

    [future] = acl_broker.admin.describe_topics(TopicCollection([topic]), include_authorized_operations=True).values()
    assert set(future.result(timeout=TIMEOUT).authorized_operations) == {
        Op.READ, Op.WRITE, Op.CREATE, Op.DELETE, Op.ALTER, Op.DESCRIBE, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS}

    bob = AdminClient(acl_broker.conf("bob"))
    [future] = bob.describe_topics(TopicCollection([topic]), request_timeout=TIMEOUT).values()
    assert error_name(future) == "TOPIC_AUTHORIZATION_FAILED"


# -- idempotent producers ----------------------------------------------------------------------------


def test_idempotent_producer_needs_idempotent_write_or_some_topic_write(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "idempotent")
    acls.allow("carol", TOPIC, topic, Op.DESCRIBE)
    fatal, end = produce_idempotent(acl_broker, "carol", topic)
    assert "CLUSTER_AUTHORIZATION_FAILED" in fatal, fatal
    assert end == 0

    acls.allow("carol", TOPIC, topic, Op.WRITE)  # WRITE on a topic is enough (KIP-679)
    assert produce_idempotent(acl_broker, "carol", topic, 2) == ("", 2)
    other = new_topic(acl_broker, "idempotent")
    acls.allow("bob", TOPIC, other, Op.WRITE)
    acls.allow("bob", BROKER, CLUSTER, Op.IDEMPOTENT_WRITE)
    assert produce_idempotent(acl_broker, "bob", other) == ("", 1)


def test_init_producer_id_over_the_wire(acl_broker: AclBroker, acls: Acls) -> None:
    request = protocol.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000, producer_id=-1, producer_epoch=-1)
    with acl_broker.raw() as client:
        connection = client.any_connection()
        version = min(connection.versions[request.API_KEY][1], 4)
        assert connection.call(request, version).error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        acls.allow(ANONYMOUS, BROKER, CLUSTER, Op.IDEMPOTENT_WRITE)
        answer = connection.call(request, version)
        assert answer.error_code == 0 and answer.producer_id >= 0
        acls.remove_all()
        acls.allow(ANONYMOUS, TOPIC, unique("any-topic"), Op.WRITE)
        assert connection.call(request, version).error_code == 0
        acls.deny(ANONYMOUS, TOPIC, "*", Op.WRITE)
        assert connection.call(request, version).error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED


# -- how ACLs match ------------------------------------------------------------------------------------


def test_prefixed_and_literal(acl_broker: AclBroker, acls: Acls) -> None:
    for name in ("orders-", "orders-eu", "order"):
        if not topic_exists(acl_broker, name):
            for future in acl_broker.admin.create_topics([NewTopic(name, 1, 1)]).values():
                assert error_name(future) is None
    acls.allow("alice", TOPIC, "orders-", Op.WRITE, pattern=PREFIXED)
    assert produce(acl_broker, "alice", "orders-eu").delivered == 1
    assert produce(acl_broker, "alice", "orders-").delivered == 1
    refused = produce(acl_broker, "alice", "order")
    assert refused.delivered == 0 and refused.refused_with("TOPIC_AUTHORIZATION_FAILED"), refused

    acls.allow("bob", TOPIC, "order", Op.WRITE)  # LITERAL: that one name
    assert produce(acl_broker, "bob", "order").delivered == 1
    refused = produce(acl_broker, "bob", "orders-eu")
    assert refused.delivered == 0 and refused.refused_with("TOPIC_AUTHORIZATION_FAILED"), refused


def test_literal_wildcard_name(acl_broker: AclBroker, acls: Acls) -> None:
    first, second = new_topic(acl_broker, "star"), new_topic(acl_broker, "star")
    acls.allow("carol", TOPIC, "*", Op.WRITE)
    assert produce(acl_broker, "carol", first).delivered == 1
    assert produce(acl_broker, "carol", second).delivered == 1
    assert produce(acl_broker, "bob", first).delivered == 0


def test_deny_overrides_allow(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "deny", records=2)
    group = unique("deny-group")
    acls.allow("alice", TOPIC, topic, Op.ALL)
    acls.allow("alice", GROUP, group, Op.READ)
    acls.deny("alice", TOPIC, topic, Op.WRITE)
    refused = produce(acl_broker, "alice", topic)
    assert refused.delivered == 0 and refused.refused_with("TOPIC_AUTHORIZATION_FAILED"), refused
    values, errors = consume(acl_broker, "alice", topic, group, 2)
    assert sorted(values) == ["value-0", "value-1"], errors
    alice = AdminClient(acl_broker.conf("alice"))
    [future] = alice.describe_topics(TopicCollection([topic]), include_authorized_operations=True, request_timeout=TIMEOUT).values()
    operations = set(future.result(timeout=TIMEOUT).authorized_operations)
    assert Op.WRITE not in operations and {Op.READ, Op.DESCRIBE, Op.DELETE} <= operations

    # A DENY for everyone beats alice's own ALLOW too.
    acls.deny("User:*", TOPIC, topic, Op.READ)
    values, errors = consume(acl_broker, "alice", topic, group, 1)
    assert values == [] and "TOPIC_AUTHORIZATION_FAILED" in errors, (values, errors)


def test_super_user_needs_no_acls(acl_broker: AclBroker) -> None:
    topic = new_topic(acl_broker, "super", partitions=2, records=3)
    values, errors = consume(acl_broker, "admin", topic, unique("super-group"), 3)
    assert sorted(values) == ["value-0", "value-1", "value-2"], errors
    admin = acl_broker.admin
    assert error_name(admin.create_partitions([NewPartitions(topic, 3)], operation_timeout=TIMEOUT)[topic]) is None
    resource = ConfigResource(TOPIC, topic, incremental_configs=[ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)])
    assert [error_name(f) for f in admin.incremental_alter_configs([resource]).values()] == [None]
    [future] = admin.describe_configs([ConfigResource(TOPIC, topic)]).values()
    assert future.result(timeout=TIMEOUT)["retention.ms"].value == "60000"
    assert produce_idempotent(acl_broker, "admin", topic) == ("", 4)
    assert error_name(admin.delete_topics([topic], operation_timeout=TIMEOUT)[topic]) is None


def test_wildcard_principal(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "everyone")
    acls.allow("User:*", TOPIC, topic, Op.WRITE)
    for user in ("alice", "bob", "carol", ANONYMOUS):
        outcome = produce(acl_broker, user, topic)
        assert outcome.delivered == 1, (user, outcome)


def test_host_specific_acls(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "hosts")
    acls.allow("alice", TOPIC, topic, Op.WRITE, host="127.0.0.1")
    acls.allow("bob", TOPIC, topic, Op.WRITE, host=OTHER_HOST)
    assert produce(acl_broker, "alice", topic).delivered == 1
    refused = produce(acl_broker, "bob", topic)
    assert refused.delivered == 0 and refused.refused_with("TOPIC_AUTHORIZATION_FAILED"), refused
    # A DENY from another host leaves alice's own host alone.
    acls.deny("alice", TOPIC, topic, Op.WRITE, host=OTHER_HOST)
    assert produce(acl_broker, "alice", topic).delivered == 1
    acls.deny("alice", TOPIC, topic, Op.WRITE, host="127.0.0.1")
    assert produce(acl_broker, "alice", topic).delivered == 0


# -- kafka-python ----------------------------------------------------------------------------------------


def kafka_python_producer(broker: AclBroker, user: str) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=f"127.0.0.1:{broker.sasl_port}", security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
        sasl_plain_username=user, sasl_plain_password=USERS[user], max_block_ms=10_000, request_timeout_ms=10_000, retries=0,
    )


def test_kafka_python_refused_a_write(acl_broker: AclBroker, acls: Acls) -> None:
    pytest.importorskip("kafka")
    from kafka.errors import TopicAuthorizationFailedError

    topic = new_topic(acl_broker, "kafka-python")
    producer = kafka_python_producer(acl_broker, "bob")
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topic, b"x").get(timeout=TIMEOUT)
    finally:
        producer.close(timeout=5)
    acls.allow("bob", TOPIC, topic, Op.WRITE)
    producer = kafka_python_producer(acl_broker, "bob")
    try:
        assert producer.send(topic, b"x").get(timeout=TIMEOUT).offset == 0
    finally:
        producer.close(timeout=5)


KAFKA_PYTHON_SCRIPT = """
import json, sys
from kafka import KafkaProducer
o = json.loads(sys.argv[1])
producer = KafkaProducer(bootstrap_servers=o["bootstrap"], security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                         sasl_plain_username=o["user"], sasl_plain_password=o["password"], max_block_ms=3000,
                         request_timeout_ms=10000, api_version_auto_timeout_ms=10000, retries=0)
try:
    producer.send(o["topic"], b"x").get(timeout=15)
    print(json.dumps({"ok": True}))
except Exception as e:
    print(json.dumps({"ok": False, "error": type(e).__name__, "text": str(e)}))
finally:
    producer.close(timeout=5)
"""


def test_kafka_python_2_0_2_refused_a_write(acl_broker: AclBroker) -> None:
    """kafka-python 2.0.2 drops a Metadata answer whose only topic has an error (its
    ClusterMetadata.update_metadata fails the update without noting the topic as
    unauthorized), so it reports the refusal as a metadata timeout; the broker's log says
    what it refused."""
    if not KAFKA_PYTHON_2.exists():
        pytest.fail(f"no virtualenv at {KAFKA_PYTHON_2}: run `bash scripts/clients/python.sh` first")
    topic = new_topic(acl_broker, "kafka-python-2")
    options = {"bootstrap": f"127.0.0.1:{acl_broker.sasl_port}", "user": "carol", "password": USERS["carol"], "topic": topic}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([str(KAFKA_PYTHON_2), "-c", KAFKA_PYTHON_SCRIPT, json.dumps(options)], capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result: rc {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert not result["ok"], "kafka-python 2.0.2 wrote without an ACL"
    assert result["error"] in ("TopicAuthorizationFailedError", "KafkaTimeoutError"), result
    assert "denied: principal User:carol from 127.0.0.1" in acl_broker.process.log_text() and f"TOPIC '{topic}'" in acl_broker.process.log_text()
    with acl_broker.raw() as client:
        assert raw_error(lambda: client.metadata([topic])) is None
        assert client.metadata([topic]).topics[topic].error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED


# -- the denial metric, the log and a restart -------------------------------------------------------------


def denials(broker: AclBroker, operation: str, resource_type: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.metrics_port}/metrics", timeout=TIMEOUT) as answer:
        text = answer.read().decode()
    pattern = re.compile(r'^fastlog_authorization_denials_total\{([^}]*)\} (\S+)$', re.MULTILINE)
    for labels, value in pattern.findall(text):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if found == {"operation": operation, "resource_type": resource_type}:
            return float(value)
    return 0.0


def test_denials_are_counted_and_logged(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "counted")
    acls.allow(ANONYMOUS, TOPIC, topic, Op.DESCRIBE)
    writes, groups = denials(acl_broker, "WRITE", "TOPIC"), denials(acl_broker, "DESCRIBE", "GROUP")
    with acl_broker.raw() as client:
        assert raw_error(lambda: client.produce({(topic, 0): ONE_RECORD})) == "TOPIC_AUTHORIZATION_FAILED"
        # FindCoordinator of a group it may not DESCRIBE.
        assert raw_error(lambda: client.commit_offsets(unique("counted"), {(topic, 0): 0})) == "GROUP_AUTHORIZATION_FAILED"
    assert wait_until(lambda: denials(acl_broker, "WRITE", "TOPIC") >= writes + 1), acl_broker.log_tail()
    assert denials(acl_broker, "DESCRIBE", "GROUP") >= groups + 1
    assert re.search(rf"denied: principal User:ANONYMOUS from 127\.0\.0\.1:\d+ may not WRITE TOPIC '{topic}'", acl_broker.process.log_text()), \
        acl_broker.log_tail()


def test_acls_survive_a_restart(acl_broker: AclBroker, acls: Acls) -> None:
    topic = new_topic(acl_broker, "restart")
    acls.allow("alice", TOPIC, topic, Op.WRITE)
    acls.deny("bob", TOPIC, topic, Op.ALL)
    acl_broker.process.restart()
    acl_broker.admin = AdminClient(acl_broker.conf("admin"))
    of_topic = AclBindingFilter(TOPIC, topic, ResourcePatternType.ANY, None, None, Op.ANY, AclPermissionType.ANY)
    assert set(acl_broker.admin.describe_acls(of_topic).result(timeout=TIMEOUT)) == {
        binding("User:alice", TOPIC, topic, Op.WRITE), binding("User:bob", TOPIC, topic, Op.ALL, allow=False)}
    assert produce(acl_broker, "alice", topic).delivered == 1
    assert produce(acl_broker, "bob", topic).delivered == 0
