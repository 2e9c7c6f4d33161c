"""The group state machine in virtual time (trio's MockClock), with no network: joins,
rebalances, session and rebalance timeouts, static membership, errors, and replay."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from fastlog.group_coordinator import GroupCoordinator, GroupState, MemoryStore, partition_for, java_string_hashcode
from fastlog.protocol import ErrorCode as E

SESSION = 10_000
REBALANCE = 30_000


@pytest.fixture
def autojump_clock():
    return trio.testing.MockClock(autojump_threshold=0)


async def start(nursery, store=None, **kwargs) -> GroupCoordinator:
    kwargs.setdefault("initial_rebalance_delay_ms", 0)
    kwargs.setdefault("min_session_timeout_ms", 1000)
    coordinator = GroupCoordinator(store or MemoryStore(), **kwargs)
    await nursery.start(coordinator.run)
    while not coordinator.loaded:
        await trio.sleep(0.001)
    return coordinator


async def join(c, member_id="", group="g", instance=None, protocols=(("range", b"r"),), session=SESSION, rebalance=REBALANCE, v=9):
    return await c.join(group, member_id, instance, "client", "/127.0.0.1", session, rebalance, "consumer", list(protocols), v >= 4, v)


async def join_new(c, **kw):
    """A dynamic member's two-step join (KIP-394)."""
    first = await join(c, **kw)
    assert first.error == E.MEMBER_ID_REQUIRED
    return first.member_id


async def test_single_member_join_sync_heartbeat(autojump_clock, nursery):
    c = await start(nursery)
    member = await join_new(c)
    result = await join(c, member)
    assert result.error == 0 and result.generation == 1 and result.leader == member
    assert [m[0] for m in result.members] == [member] and result.protocol_name == "range"
    sync = await c.sync("g", 1, member, None, "consumer", "range", {member: b"a"})
    assert sync.error == 0 and sync.assignment == b"a"
    assert c.groups["g"].state == GroupState.STABLE
    assert c.heartbeat("g", 1, member, None) == E.NONE
    assert c.heartbeat("g", 0, member, None) == E.ILLEGAL_GENERATION
    assert c.heartbeat("g", 1, "nobody", None) == E.UNKNOWN_MEMBER_ID
    assert c.heartbeat("other", 1, member, None) == E.UNKNOWN_MEMBER_ID


async def test_two_members_rebalance_and_protocol_vote(autojump_clock, nursery):
    c = await start(nursery)
    a = await join_new(c, protocols=[("range", b"ra"), ("roundrobin", b"rr")])
    first = await join(c, a, protocols=[("range", b"ra"), ("roundrobin", b"rr")])
    await c.sync("g", 1, a, None, None, None, {a: b"all"})
    b = await join_new(c)
    results = {}

    async def rejoin(name, member_id, protocols):
        results[name] = await join(c, member_id, protocols=protocols)

    async with trio.open_nursery() as n:
        n.start_soon(rejoin, "b", b, [("roundrobin", b"x"), ("range", b"y")])
        await trio.sleep(1)
        assert c.heartbeat("g", 1, a, None) == E.REBALANCE_IN_PROGRESS
        n.start_soon(rejoin, "a", a, [("range", b"ra"), ("roundrobin", b"rr")])
    assert first.generation == 1
    assert results["a"].generation == results["b"].generation == 2
    assert results["a"].leader == a and len(results["a"].members) == 2 and results["b"].members == []
    # one vote each: the tie goes to the first member's preference
    assert results["a"].protocol_name == "range"
    assert c.groups["g"].state == GroupState.COMPLETING_REBALANCE
    syncs = {}

    async def sync(name, member_id, assignments):
        syncs[name] = await c.sync("g", 2, member_id, None, None, None, assignments)

    async with trio.open_nursery() as n:
        n.start_soon(sync, "b", b, {})
        await trio.sleep(1)
        assert "b" not in syncs  # parked until the leader's SyncGroup
        n.start_soon(sync, "a", a, {a: b"A", b: b"B"})
    assert syncs["a"].assignment == b"A" and syncs["b"].assignment == b"B"
    assert c.groups["g"].state == GroupState.STABLE


async def test_inconsistent_protocol_and_bad_session_timeout(autojump_clock, nursery):
    c = await start(nursery)
    a = await join_new(c)
    await join(c, a)
    assert (await join(c, protocols=[("other", b"")])).error == E.INCONSISTENT_GROUP_PROTOCOL
    assert (await join(c, session=10)).error == E.INVALID_SESSION_TIMEOUT
    assert (await join(c, group="")).error == E.INVALID_GROUP_ID
    assert (await join(c, "unknown-member")).error == E.UNKNOWN_MEMBER_ID


async def test_session_timeout_expires_a_silent_member(autojump_clock, nursery):
    c = await start(nursery)
    a = await join_new(c)
    await join(c, a)
    await c.sync("g", 1, a, None, None, None, {a: b"x"})
    b = await join_new(c)
    async with trio.open_nursery() as n:
        n.start_soon(join, c, b)
        await join(c, a)
    await c.sync("g", 2, a, None, None, None, {})
    # a heartbeats, b stays silent
    for _ in range(15):
        await trio.sleep(1)
        assert c.heartbeat("g", c.groups["g"].generation, a, None) in (E.NONE, E.REBALANCE_IN_PROGRESS)
        if b not in c.groups["g"].members:
            break
    assert b not in c.groups["g"].members
    assert c.groups["g"].state == GroupState.PREPARING_REBALANCE  # a must rejoin
    again = await join(c, a)
    assert again.generation == 3 and [m[0] for m in again.members] == [a]


async def test_rebalance_timeout_removes_members_that_do_not_rejoin(autojump_clock, nursery):
    c = await start(nursery)
    a = await join_new(c, rebalance=5000)
    b = await join_new(c, rebalance=5000)
    async with trio.open_nursery() as n:
        n.start_soon(join, c, b, "g", None, (("range", b"r"),), SESSION, 5000)
        await join(c, a, rebalance=5000)
    await c.sync("g", 1, a, None, None, None, {})
    # a rejoins (as leader it triggers a rebalance); b keeps heartbeating but never rejoins
    start_time = trio.current_time()
    async with trio.open_nursery() as n:
        async def heartbeats():
            while b in c.groups["g"].members:
                c.heartbeat("g", 1, b, None)
                await trio.sleep(1)
        n.start_soon(heartbeats)
        result = await join(c, a, rebalance=5000)
    assert 4.5 <= trio.current_time() - start_time <= 6
    assert result.generation == 2 and [m[0] for m in result.members] == [a]


async def test_initial_rebalance_delay_waits_for_more_members(autojump_clock, nursery):
    c = await start(nursery, initial_rebalance_delay_ms=3000)
    results = []

    async def member():
        member_id = await join_new(c)
        results.append(await join(c, member_id))

    t0 = trio.current_time()
    async with trio.open_nursery() as n:
        n.start_soon(member)
        await trio.sleep(2)
        n.start_soon(member)
    assert trio.current_time() - t0 >= 5  # the second arrival extended the delay
    assert {r.generation for r in results} == {1} and sum(len(r.members) for r in results) == 2


async def test_pending_member_id_expires(autojump_clock, nursery):
    c = await start(nursery)
    pending = await join_new(c, session=2000)
    assert pending in c.groups["g"].pending_members
    await trio.sleep(3)
    assert pending not in c.groups["g"].pending_members


async def test_static_member_replaced_without_rebalance_and_old_id_fenced(autojump_clock, nursery):
    c = await start(nursery)
    first = await join(c, instance="i1")  # static members skip MEMBER_ID_REQUIRED
    assert first.error == 0 and first.generation == 1
    await c.sync("g", 1, first.member_id, "i1", None, None, {first.member_id: b"mine"})
    # restarted with a new member id: same generation, same assignment, no rebalance
    second = await join(c, instance="i1")
    assert second.error == 0 and second.member_id != first.member_id and second.generation == 1
    assert second.skip_assignment  # it was the leader (v9)
    assert c.groups["g"].state == GroupState.STABLE
    sync = await c.sync("g", 1, second.member_id, "i1", None, None, {})
    assert sync.assignment == b"mine"
    assert c.heartbeat("g", 1, first.member_id, "i1") == E.FENCED_INSTANCE_ID
    assert (await c.sync("g", 1, first.member_id, "i1", None, None, {})).error == E.FENCED_INSTANCE_ID
    assert (await join(c, first.member_id, instance="i1")).error == E.FENCED_INSTANCE_ID
    # changed subscription: a rebalance
    third = await join(c, instance="i1", protocols=[("range", b"other topics")])
    assert third.generation == 2 and third.members == [(third.member_id, "i1", b"other topics")]
    # a protocol no member supports is refused
    assert (await join(c, instance="i2", protocols=[("roundrobin", b"")])).error == E.INCONSISTENT_GROUP_PROTOCOL


async def test_leave_commit_and_errors(autojump_clock, nursery):
    c = await start(nursery)
    a = await join_new(c)
    await join(c, a)
    assert (await c.commit_offsets("g", 1, a, None, [("t", 0, 5, -1, "", -1)])) == {("t", 0): E.REBALANCE_IN_PROGRESS}
    await c.sync("g", 1, a, None, None, None, {})
    assert (await c.commit_offsets("g", 1, a, None, [("t", 0, 5, -1, "m", -1)])) == {("t", 0): 0}
    assert (await c.commit_offsets("g", 0, a, None, [("t", 0, 6, -1, "", -1)])) == {("t", 0): E.ILLEGAL_GENERATION}
    assert (await c.commit_offsets("g", 1, "x", None, [("t", 0, 6, -1, "", -1)])) == {("t", 0): E.UNKNOWN_MEMBER_ID}
    assert (await c.commit_offsets("g", -1, "", None, [("t", 0, 6, -1, "", -1)])) == {("t", 0): E.UNKNOWN_MEMBER_ID}
    big = "x" * 5000
    assert (await c.commit_offsets("g", 1, a, None, [("t", 1, 6, -1, big, -1)])) == {("t", 1): E.OFFSET_METADATA_TOO_LARGE}
    assert (await c.delete_groups(["g"])) == {"g": E.NON_EMPTY_GROUP}
    assert await c.leave("g", [("nobody", None), (a, None)]) == (0, [E.UNKNOWN_MEMBER_ID, 0])
    assert c.groups["g"].state == GroupState.EMPTY
    # a simple commit is fine now that the group is empty
    assert (await c.commit_offsets("g", -1, "", None, [("t", 0, 9, -1, "", -1)])) == {("t", 0): 0}
    _, rows = c.fetch_offsets("g", [("t", 0), ("t", 1)])
    assert [(t, p, o and o.offset) for t, p, o, _ in rows] == [("t", 0, 9), ("t", 1, None)]
    assert (await c.delete_groups(["g", "nope"])) == {"g": 0, "nope": E.GROUP_ID_NOT_FOUND}
    assert "g" not in c.groups and "g" not in c.offsets


async def test_replay_rebuilds_groups_and_offsets(autojump_clock, nursery):
    store = MemoryStore()
    c = await start(nursery, store)
    a = await join_new(c)
    await join(c, a)
    await c.sync("g", 1, a, None, None, None, {a: b"assigned"})
    await c.commit_offsets("g", 1, a, None, [("t", 0, 42, 3, "meta", -1)])
    await c.commit_offsets("simple", -1, "", None, [("t", 1, 7, -1, "", -1)])
    await c.commit_offsets("gone", -1, "", None, [("t", 1, 7, -1, "", -1)])
    await c.delete_groups(["gone"])
    await trio.sleep(0.1)
    again = await start(nursery, store)
    group = again.groups["g"]
    assert group.state == GroupState.STABLE and group.generation == 1 and group.leader_id == a
    assert group.members[a].assignment == b"assigned"
    assert again.offsets["g"][("t", 0)].offset == 42 and again.offsets["g"][("t", 0)].leader_epoch == 3
    assert again.groups["simple"].state == GroupState.EMPTY and again.offsets["simple"][("t", 1)].offset == 7
    assert "gone" not in again.groups and "gone" not in again.offsets
    # the loaded member's session runs: silent, it expires and the group empties
    await trio.sleep(SESSION / 1000 + 1)
    assert again.groups["g"].state == GroupState.EMPTY


async def test_loading_answers_load_in_progress(autojump_clock):
    c = GroupCoordinator(MemoryStore())
    assert (await join(c)).error == E.COORDINATOR_LOAD_IN_PROGRESS
    assert c.heartbeat("g", 1, "m", None) == E.COORDINATOR_LOAD_IN_PROGRESS
    assert c.fetch_offsets("g", None)[0] == E.COORDINATOR_LOAD_IN_PROGRESS


async def test_offsets_of_empty_groups_expire(autojump_clock, nursery):
    now = [1_000_000]
    c = await start(nursery, offsets_retention_ms=60_000, wall_clock=lambda: now[0])
    await c.commit_offsets("g", -1, "", None, [("t", 0, 1, -1, "", -1)])
    now[0] += 30_000
    assert await c.expire_offsets() == 0
    now[0] += 31_000
    assert await c.expire_offsets() == 1
    assert "g" not in c.groups and "g" not in c.offsets


def test_partition_for_matches_java():
    assert java_string_hashcode("") == 0
    assert java_string_hashcode("hello") == 99162322
    assert java_string_hashcode("polygenelubricants") == -2147483648
    assert partition_for("polygenelubricants", 50) == 0
    assert partition_for("my-group", 50) == abs(java_string_hashcode("my-group")) % 50


async def test_group_lag_uses_high_watermarks(autojump_clock, nursery):
    from types import SimpleNamespace

    from fastlog.group_coordinator import group_lag

    c = await start(nursery)
    await c.commit_offsets("g", -1, "", None, [("t", 0, 4, -1, "", -1), ("t", 1, 10, -1, "", -1), ("gone", 0, 1, -1, "", -1)])
    watermarks = {("t", 0): 10, ("t", 1): 10}

    def partition(topic, index):
        hw = watermarks.get((topic, index))
        return None if hw is None else SimpleNamespace(log=SimpleNamespace(high_watermark=hw))

    broker = SimpleNamespace(groups=c, logs=SimpleNamespace(partition=partition))
    rows = group_lag(broker, "g")
    assert [(r.topic, r.partition, r.committed, r.log_end, r.lag) for r in rows] == [
        ("gone", 0, 1, -1, None), ("t", 0, 4, 10, 6), ("t", 1, 10, 10, 0)
    ]
