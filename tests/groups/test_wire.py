"""Group requests over the wire, in orders and shapes clients should not send: each gets
the right error and leaves the group's state as it was."""

from __future__ import annotations

import pytest

from fastlog import protocol as P
from fastlog.protocol import ErrorCode as E
from tests.broker.wire import WireClient
from tests.conftest import BrokerProcess
from tests.groups.helpers import GROUP_OVERRIDES

JG = P.JoinGroupRequest
PROTOCOLS = [JG.JoinGroupRequestProtocol(name="range", metadata=b"\x00\x01")]


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory):
    process = BrokerProcess(tmp_path_factory.mktemp("wire") / "data", GROUP_OVERRIDES).start()
    yield process
    process.stop()


def join(client, group, member_id="", version=5, session=10_000, protocol_type="consumer", protocols=PROTOCOLS):
    body = JG(group_id=group, session_timeout_ms=session, rebalance_timeout_ms=10_000, member_id=member_id,
              protocol_type=protocol_type, protocols=protocols)
    return client.request(body, version)


def sync(client, group, generation, member_id, assignments=(), version=3):
    a = [P.SyncGroupRequest.SyncGroupRequestAssignment(member_id=m, assignment=x) for m, x in assignments]
    body = P.SyncGroupRequest(group_id=group, generation_id=generation, member_id=member_id, assignments=a)
    return client.request(body, version).error_code


def heartbeat(client, group, generation, member_id):
    return client.request(P.HeartbeatRequest(group_id=group, generation_id=generation, member_id=member_id), 3).error_code


def describe(client, group):
    return client.request(P.DescribeGroupsRequest(groups=[group]), 5).groups[0]


def stable_group(client, group):
    first = join(client, group)
    assert first.error_code == E.MEMBER_ID_REQUIRED and first.member_id
    joined = join(client, group, first.member_id)
    assert (joined.error_code, joined.generation_id, joined.leader) == (0, 1, first.member_id)
    assert sync(client, group, 1, first.member_id, [(first.member_id, b"mine")]) == 0
    return first.member_id


def test_requests_out_of_order_get_errors(group_broker) -> None:
    with WireClient(group_broker.bootstrap) as client:
        assert sync(client, "wire-a", 1, "nobody") == E.UNKNOWN_MEMBER_ID
        assert heartbeat(client, "wire-a", 1, "nobody") == E.UNKNOWN_MEMBER_ID
        assert join(client, "wire-a", "made-up").error_code == E.UNKNOWN_MEMBER_ID
        # v0-v3 joins get no MEMBER_ID_REQUIRED round trip
        old = join(client, "wire-old", version=3)
        assert old.error_code == 0 and old.generation_id == 1 and old.member_id
        member = stable_group(client, "wire-a")
        assert heartbeat(client, "wire-a", 2, member) == E.ILLEGAL_GENERATION
        assert sync(client, "wire-a", 7, member) == E.ILLEGAL_GENERATION
        assert sync(client, "wire-a", 1, "other") == E.UNKNOWN_MEMBER_ID
        assert join(client, "wire-a", protocol_type="connect").error_code == E.INCONSISTENT_GROUP_PROTOCOL
        assert join(client, "wire-a", session=10).error_code == E.INVALID_SESSION_TIMEOUT
        assert join(client, "", version=5).error_code == E.INVALID_GROUP_ID
        commit = P.OffsetCommitRequest(group_id="wire-a", generation_id_or_member_epoch=1, member_id="other", topics=[
            P.OffsetCommitRequest.OffsetCommitRequestTopic(name="__consumer_offsets", partitions=[
                P.OffsetCommitRequest.OffsetCommitRequestPartition(partition_index=0, committed_offset=1)])])
        assert client.request(commit, 8).topics[0].partitions[0].error_code == E.UNKNOWN_MEMBER_ID
        deleted = client.request(P.DeleteGroupsRequest(groups_names=["wire-a", "wire-none"]), 2).results
        assert [r.error_code for r in deleted] == [E.NON_EMPTY_GROUP, E.GROUP_ID_NOT_FOUND]
        # none of it disturbed the group
        group = describe(client, "wire-a")
        assert (group.group_state, [m.member_id for m in group.members]) == ("Stable", [member])
        assert group.members[0].member_assignment == b"mine"
        assert heartbeat(client, "wire-a", 1, member) == 0


def test_a_malformed_group_request_does_not_corrupt_the_group(group_broker) -> None:
    with WireClient(group_broker.bootstrap) as client:
        member = stable_group(client, "wire-b")
        good = client.encode(P.HeartbeatRequest(group_id="wire-b", generation_id=1, member_id=member), 3)
        client.send_frame(good[:-6])  # a member id cut short
        assert client.closed_by_broker()
    with WireClient(group_broker.bootstrap) as client:
        group = describe(client, "wire-b")
        assert (group.group_state, [m.member_id for m in group.members]) == ("Stable", [member])
        assert heartbeat(client, "wire-b", 1, member) == 0


def test_leave_batch_delete_and_describe(group_broker) -> None:
    with WireClient(group_broker.bootstrap) as client:
        member = stable_group(client, "wire-c")
        MI = P.LeaveGroupRequest.MemberIdentity
        left = client.request(P.LeaveGroupRequest(group_id="wire-c", members=[MI(member_id="ghost"), MI(member_id=member)]), 4)
        assert left.error_code == 0 and [m.error_code for m in left.members] == [E.UNKNOWN_MEMBER_ID, 0]
        assert describe(client, "wire-c").group_state == "Empty"
        assert heartbeat(client, "wire-c", 1, member) == E.UNKNOWN_MEMBER_ID
        listed = client.request(P.ListGroupsRequest(states_filter=["empty"]), 4).groups
        assert "wire-c" in [g.group_id for g in listed] and all(g.group_state == "Empty" for g in listed)
        assert client.request(P.DeleteGroupsRequest(groups_names=["wire-c"]), 2).results[0].error_code == 0
        assert describe(client, "wire-c").group_state == "Dead"


def test_find_coordinator_single_and_batched(group_broker) -> None:
    port = int(group_broker.bootstrap.rsplit(":", 1)[1])
    with WireClient(group_broker.bootstrap) as client:
        one = client.request(P.FindCoordinatorRequest(key="g", key_type=0), 3)
        assert (one.error_code, one.port) == (0, port)
        txn = client.request(P.FindCoordinatorRequest(key="t", key_type=1), 3)
        assert (txn.error_code, txn.port) == (0, port)  # __transaction_state is here
        assert client.request(P.FindCoordinatorRequest(key="", key_type=1), 3).error_code == E.INVALID_REQUEST
        assert client.request(P.FindCoordinatorRequest(key="x", key_type=7), 3).error_code == E.INVALID_REQUEST
        many = client.request(P.FindCoordinatorRequest(key_type=0, coordinator_keys=["a", "b"]), 4).coordinators
        assert [(c.key, c.error_code, c.port) for c in many] == [("a", 0, port), ("b", 0, port)]


def test_offset_fetch_multi_group_and_simple_commits(group_broker) -> None:
    OC = P.OffsetCommitRequest
    with WireClient(group_broker.bootstrap) as client:
        for group, offset in (("wire-d1", 5), ("wire-d2", 9)):
            commit = OC(group_id=group, generation_id_or_member_epoch=-1, topics=[OC.OffsetCommitRequestTopic(
                name="__consumer_offsets", partitions=[OC.OffsetCommitRequestPartition(partition_index=1, committed_offset=offset, committed_metadata="m")])])
            assert client.request(commit, 9).topics[0].partitions[0].error_code == 0
        F = P.OffsetFetchRequest
        body = F(groups=[F.OffsetFetchRequestGroup(group_id=g, topics=None) for g in ("wire-d1", "wire-d2", "wire-none")], require_stable=True)
        groups = client.request(body, 8).groups
        found = {g.group_id: [(t.name, p.partition_index, p.committed_offset, p.metadata) for t in g.topics for p in t.partitions] for g in groups}
        assert found == {"wire-d1": [("__consumer_offsets", 1, 5, "m")], "wire-d2": [("__consumer_offsets", 1, 9, "m")], "wire-none": []}
        old = client.request(F(group_id="wire-d1", topics=[F.OffsetFetchRequestTopic(name="__consumer_offsets", partition_indexes=[1, 2])]), 1)
        assert [(p.partition_index, p.committed_offset) for p in old.topics[0].partitions] == [(1, 5), (2, -1)]
        D = P.OffsetDeleteRequest
        deleted = client.request(D(group_id="wire-d1", topics=[D.OffsetDeleteRequestTopic(name="__consumer_offsets", partitions=[D.OffsetDeleteRequestPartition(partition_index=1)])]), 0)
        assert deleted.error_code == 0 and deleted.topics[0].partitions[0].error_code == 0
        assert client.request(F(groups=[F.OffsetFetchRequestGroup(group_id="wire-d1", topics=None)]), 8).groups[0].topics == []
