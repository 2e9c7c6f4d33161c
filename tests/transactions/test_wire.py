"""Transactions over the wire: each transactional request in the orders and shapes a client (or
a misbehaving one) may send, with every error a client can get, checked byte-exact against a
real broker. What a read_committed reader sees (the last stable offset, aborted transactions)
and what survives a restart (`__transaction_state`, transactional offsets) are checked too."""

from __future__ import annotations

import time
from typing import Optional

import pytest

from fastlog import protocol as P
from fastlog.protocol import ErrorCode as E
from fastlog.records import ControlType, Record, decode_batches, encode_batch, encode_control_batch
from tests.broker.wire import WireClient
from tests.conftest import BrokerProcess

MAX_TIMEOUT_MS = 60_000
OVERRIDES = {
    "transaction.state.log.num.partitions": "4",
    "offsets.topic.num.partitions": "4",
    "transaction.max.timeout.ms": str(MAX_TIMEOUT_MS),
    "group.initial.rebalance.delay.ms": "0",
}
READ_UNCOMMITTED, READ_COMMITTED = 0, 1
APT = P.AddPartitionsToTxnRequest


@pytest.fixture(scope="module")
def txn_broker(tmp_path_factory):
    process = BrokerProcess(tmp_path_factory.mktemp("txn-wire") / "data", OVERRIDES).start()
    yield process
    process.stop()


@pytest.fixture
def wire(txn_broker):
    with WireClient(txn_broker.bootstrap) as client:
        yield client


@pytest.fixture
def topic(wire, unique_topic) -> str:
    create_topic(wire, unique_topic)
    return unique_topic


# -- requests ------------------------------------------------------------------------------------


def create_topic(wire: WireClient, name: str, partitions: int = 1) -> None:
    R = P.CreateTopicsRequest
    body = R(topics=[R.CreatableTopic(name=name, num_partitions=partitions, replication_factor=1, assignments=[], configs=[])],
             timeout_ms=10_000)
    assert wire.request(body, 5).topics[0].error_code == 0


def init(wire: WireClient, tid: str, timeout_ms: int = 30_000, version: int = 4, producer_id: int = -1, epoch: int = -1):
    body = P.InitProducerIdRequest(transactional_id=tid, transaction_timeout_ms=timeout_ms)
    if version >= 3:
        body.producer_id, body.producer_epoch = producer_id, epoch
    answer = wire.request(body, version)
    return answer.error_code, answer.producer_id, answer.producer_epoch


def begin(wire: WireClient, tid: str) -> tuple[int, int]:
    """A fresh producer of `tid`: (producer id, epoch)."""
    error, pid, epoch = init(wire, tid)
    assert error == 0, E(error).name
    return pid, epoch


def add_partitions(wire: WireClient, tid: str, pid: int, epoch: int, partitions: dict, version: int = 3) -> dict:
    """AddPartitionsToTxn v0-v3: {(topic, partition): error name}."""
    body = APT(v3_and_below_transactional_id=tid, v3_and_below_producer_id=pid, v3_and_below_producer_epoch=epoch,
               v3_and_below_topics=[APT.AddPartitionsToTxnTopic(name=t, partitions=ps) for t, ps in partitions.items()])
    answer = wire.request(body, version)
    return {(t.name, r.partition_index): E(r.partition_error_code).name
            for t in answer.results_by_topic_v3_and_below for r in t.results_by_partition}


def add_offsets(wire: WireClient, tid: str, pid: int, epoch: int, group: str) -> str:
    body = P.AddOffsetsToTxnRequest(transactional_id=tid, producer_id=pid, producer_epoch=epoch, group_id=group)
    return E(wire.request(body, 3).error_code).name


def end(wire: WireClient, tid: str, pid: int, epoch: int, commit: bool) -> str:
    body = P.EndTxnRequest(transactional_id=tid, producer_id=pid, producer_epoch=epoch, committed=commit)
    return E(wire.request(body, 3).error_code).name


def txn_batch(pid: int, epoch: int, sequence: int, *values: bytes) -> bytes:
    now = int(time.time() * 1000)
    return encode_batch([Record(i, now, None, v) for i, v in enumerate(values)], producer_id=pid, producer_epoch=epoch,
                        base_sequence=sequence, is_transactional=True)


def produce(wire: WireClient, tid: Optional[str], topic: str, records: bytes, partition: int = 0):
    R = P.ProduceRequest
    body = R(transactional_id=tid, acks=-1, timeout_ms=10_000,
             topic_data=[R.TopicProduceData(name=topic, partition_data=[R.PartitionProduceData(index=partition, records=records)])])
    return wire.request(body, 9).responses[0].partition_responses[0]


def fetch(wire: WireClient, topic: str, isolation: int, offset: int = 0, partition: int = 0):
    R = P.FetchRequest
    body = R(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, isolation_level=isolation,
             topics=[R.FetchTopic(topic=topic, partitions=[R.FetchPartition(partition=partition, fetch_offset=offset, partition_max_bytes=1 << 20)])])
    data = wire.request(body, 11).responses[0].partitions[0]
    assert data.error_code == 0, E(data.error_code).name
    return data


def values_of(data) -> list:
    """The data records a Fetch answered, markers left out."""
    return [r.value for b in decode_batches(data.records or b"") if not b.is_control for r in b.records]


def aborted(data) -> Optional[list]:
    if data.aborted_transactions is None:
        return None
    return [(a.producer_id, a.first_offset) for a in data.aborted_transactions]


def txn_commit_offset(wire: WireClient, tid: str, pid: int, epoch: int, group: str, topic: str, offset: int,
                      version: int = 2, generation: int = -1, member_id: str = "") -> str:
    R = P.TxnOffsetCommitRequest
    body = R(transactional_id=tid, group_id=group, producer_id=pid, producer_epoch=epoch, topics=[
        R.TxnOffsetCommitRequestTopic(name=topic, partitions=[
            R.TxnOffsetCommitRequestPartition(partition_index=0, committed_offset=offset, committed_leader_epoch=-1, committed_metadata="")])])
    if version >= 3:
        body.generation_id, body.member_id = generation, member_id
    return E(wire.request(body, version).topics[0].partitions[0].error_code).name


def stable_group(wire: WireClient, group: str) -> tuple[int, str]:
    """A group with one member, Stable: (generation, member id)."""
    J = P.JoinGroupRequest
    join = J(group_id=group, session_timeout_ms=30_000, rebalance_timeout_ms=10_000, member_id="", protocol_type="consumer",
             protocols=[J.JoinGroupRequestProtocol(name="range", metadata=b"")])
    first = wire.request(join, 5)
    assert first.error_code == E.MEMBER_ID_REQUIRED
    join.member_id = first.member_id
    joined = wire.request(join, 5)
    assert joined.error_code == 0 and joined.leader == first.member_id
    S = P.SyncGroupRequest
    sync = S(group_id=group, generation_id=joined.generation_id, member_id=first.member_id,
             assignments=[S.SyncGroupRequestAssignment(member_id=first.member_id, assignment=b"")])
    assert wire.request(sync, 3).error_code == 0
    return joined.generation_id, first.member_id


def committed(wire: WireClient, group: str, topic: str, require_stable: bool = False) -> tuple[int, str]:
    R = P.OffsetFetchRequest
    body = R(group_id=group, topics=[R.OffsetFetchRequestTopic(name=topic, partition_indexes=[0])], require_stable=require_stable)
    answer = wire.request(body, 7)
    assert answer.error_code == 0, E(answer.error_code).name
    partition = answer.topics[0].partitions[0]
    return partition.committed_offset, E(partition.error_code).name


def describe(wire: WireClient, tid: str):
    return wire.request(P.DescribeTransactionsRequest(transactional_ids=[tid]), 0).transaction_states[0]


# -- InitProducerId ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 4])
def test_init_producer_id_gives_a_new_id_epoch_0_then_the_same_id_with_the_next_epoch(wire, version) -> None:
    tid = f"init-v{version}"
    error, pid, epoch = init(wire, tid, version=version)
    assert (error, epoch) == (0, 0) and pid >= 0
    assert init(wire, tid, version=version) == (0, pid, 1)
    assert init(wire, tid, version=version) == (0, pid, 2)
    # another id, another producer id
    error, other, epoch = init(wire, f"{tid}-other", version=version)
    assert (error, epoch) == (0, 0) and other != pid
    state = describe(wire, tid)
    assert (state.error_code, state.transaction_state, state.producer_id, state.producer_epoch) == (0, "Empty", pid, 2)


def test_a_transaction_timeout_above_the_broker_maximum_is_refused(wire) -> None:
    assert init(wire, "too-long", timeout_ms=MAX_TIMEOUT_MS + 1) == (E.INVALID_TRANSACTION_TIMEOUT, -1, -1)
    assert init(wire, "too-long", timeout_ms=0) == (E.INVALID_TRANSACTION_TIMEOUT, -1, -1)
    assert describe(wire, "too-long").error_code == E.TRANSACTIONAL_ID_NOT_FOUND  # nothing was created
    assert init(wire, "too-long", timeout_ms=MAX_TIMEOUT_MS)[0] == 0


def test_init_producer_id_v3_with_a_stale_producer_is_fenced(wire) -> None:
    pid, epoch = begin(wire, "init-v3-fenced")
    # the current producer re-initialising (KIP-360) gets the next epoch
    assert init(wire, "init-v3-fenced", version=4, producer_id=pid, epoch=epoch) == (0, pid, epoch + 1)
    # the producer it replaced, or a made-up one, is fenced
    assert init(wire, "init-v3-fenced", version=4, producer_id=pid, epoch=epoch) == (E.PRODUCER_FENCED, -1, -1)
    assert init(wire, "init-v3-fenced", version=4, producer_id=pid + 1000, epoch=epoch + 1) == (E.PRODUCER_FENCED, -1, -1)
    state = describe(wire, "init-v3-fenced")
    assert (state.producer_id, state.producer_epoch) == (pid, epoch + 1)


def test_a_new_producer_aborts_the_transaction_its_predecessor_left_open(wire, topic) -> None:
    pid, epoch = begin(wire, "left-open")
    assert add_partitions(wire, "left-open", pid, epoch, {topic: [0]}) == {(topic, 0): "NONE"}
    assert produce(wire, "left-open", topic, txn_batch(pid, epoch, 0, b"orphan")).error_code == 0
    assert fetch(wire, topic, READ_COMMITTED).last_stable_offset == 0
    assert init(wire, "left-open") == (0, pid, epoch + 1)
    data = fetch(wire, topic, READ_COMMITTED)
    assert (data.high_watermark, data.last_stable_offset) == (2, 2)  # the record and its ABORT marker
    assert aborted(data) == [(pid, 0)]
    # the old producer's writes are refused now
    assert produce(wire, "left-open", topic, txn_batch(pid, epoch, 1, b"late")).error_code == E.INVALID_PRODUCER_EPOCH
    assert end(wire, "left-open", pid, epoch, True) == "PRODUCER_FENCED"


def test_clients_older_than_producer_fenced_are_answered_invalid_producer_epoch(wire, topic) -> None:
    # KIP-588: PRODUCER_FENCED (90) came with InitProducerId v4, AddPartitionsToTxn v2,
    # AddOffsetsToTxn v2 and EndTxn v2; older versions get INVALID_PRODUCER_EPOCH (47), which
    # their clients (librdkafka 1.x, aiokafka, Java < 2.7) know as "fenced"
    pid, old = begin(wire, "fenced-old-versions")
    assert init(wire, "fenced-old-versions") == (0, pid, old + 1)
    assert add_partitions(wire, "fenced-old-versions", pid, old + 1, {topic: [0]}) == {(topic, 0): "NONE"}
    fenced = {version: add_partitions(wire, "fenced-old-versions", pid, old, {topic: [0]}, version=version)[(topic, 0)]
              for version in (0, 1, 2, 3)}
    assert fenced == {0: "INVALID_PRODUCER_EPOCH", 1: "INVALID_PRODUCER_EPOCH", 2: "PRODUCER_FENCED", 3: "PRODUCER_FENCED"}
    for version, expected in ((0, "INVALID_PRODUCER_EPOCH"), (1, "INVALID_PRODUCER_EPOCH"), (2, "PRODUCER_FENCED"), (3, "PRODUCER_FENCED")):
        body = P.AddOffsetsToTxnRequest(transactional_id="fenced-old-versions", producer_id=pid, producer_epoch=old, group_id="g-fenced")
        assert (version, E(wire.request(body, version).error_code).name) == (version, expected)
        body = P.EndTxnRequest(transactional_id="fenced-old-versions", producer_id=pid, producer_epoch=old, committed=True)
        assert (version, E(wire.request(body, version).error_code).name) == (version, expected)
    assert init(wire, "fenced-old-versions", version=3, producer_id=pid, epoch=old) == (E.INVALID_PRODUCER_EPOCH, -1, -1)
    assert init(wire, "fenced-old-versions", version=4, producer_id=pid, epoch=old) == (E.PRODUCER_FENCED, -1, -1)
    # none of it touched the open transaction
    assert describe(wire, "fenced-old-versions").transaction_state == "Ongoing"
    assert end(wire, "fenced-old-versions", pid, old + 1, False) == "NONE"


# -- AddPartitionsToTxn --------------------------------------------------------------------------


def test_add_partitions_v3_errors(wire, topic) -> None:
    pid, epoch = begin(wire, "add-errors")
    assert init(wire, "add-errors") == (0, pid, epoch + 1)
    assert add_partitions(wire, "add-errors", pid, epoch, {topic: [0]}) == {(topic, 0): "PRODUCER_FENCED"}
    assert add_partitions(wire, "add-errors", pid + 1000, epoch + 1, {topic: [0]}) == {(topic, 0): "INVALID_PRODUCER_ID_MAPPING"}
    assert add_partitions(wire, "add-unknown-id", pid, epoch + 1, {topic: [0]}) == {(topic, 0): "INVALID_PRODUCER_ID_MAPPING"}
    mixed = {topic: [0, 7], "no-such-topic-at-all": [0]}
    assert add_partitions(wire, "add-errors", pid, epoch + 1, mixed) == {
        (topic, 0): "OPERATION_NOT_ATTEMPTED",
        (topic, 7): "UNKNOWN_TOPIC_OR_PARTITION",
        ("no-such-topic-at-all", 0): "UNKNOWN_TOPIC_OR_PARTITION",
    }
    # none of it opened a transaction
    state = describe(wire, "add-errors")
    assert (state.transaction_state, state.topics) == ("Empty", [])
    assert end(wire, "add-errors", pid, epoch + 1, True) == "INVALID_TXN_STATE"
    for version in (0, 1, 2, 3):
        assert add_partitions(wire, "add-errors", pid, epoch + 1, {topic: [0]}, version=version) == {(topic, 0): "NONE"}
    state = describe(wire, "add-errors")
    assert (state.transaction_state, [(t.topic, t.partitions) for t in state.topics]) == ("Ongoing", [(topic, [0])])
    assert end(wire, "add-errors", pid, epoch + 1, False) == "NONE"


def test_add_partitions_v4_batches_transactions_and_verifies(wire, unique_topic) -> None:
    create_topic(wire, unique_topic, partitions=2)
    first, second = begin(wire, "batch-a"), begin(wire, "batch-b")

    def batch(verify_only: bool, *txns) -> dict:
        body = APT(transactions=[
            APT.AddPartitionsToTxnTransaction(transactional_id=tid, producer_id=pid, producer_epoch=epoch, verify_only=verify_only,
                                              topics=[APT.AddPartitionsToTxnTopic(name=unique_topic, partitions=partitions)])
            for tid, (pid, epoch), partitions in txns])
        answer = wire.request(body, 4)
        assert answer.error_code == 0
        return {r.transactional_id: {(t.name, p.partition_index): E(p.partition_error_code).name for t in r.topic_results for p in t.results_by_partition}
                for r in answer.results_by_transaction}

    # nothing added yet: verification fails, and adds nothing
    assert batch(True, ("batch-a", first, [0])) == {"batch-a": {(unique_topic, 0): "INVALID_TXN_STATE"}}
    assert describe(wire, "batch-a").transaction_state == "Empty"
    assert batch(False, ("batch-a", first, [0]), ("batch-b", second, [0, 1]), ("batch-c", (first[0], 0), [1])) == {
        "batch-a": {(unique_topic, 0): "NONE"},
        "batch-b": {(unique_topic, 0): "NONE", (unique_topic, 1): "NONE"},
        "batch-c": {(unique_topic, 1): "INVALID_PRODUCER_ID_MAPPING"},
    }
    assert batch(True, ("batch-a", first, [0, 1]), ("batch-b", second, [1])) == {
        "batch-a": {(unique_topic, 0): "NONE", (unique_topic, 1): "INVALID_TXN_STATE"},
        "batch-b": {(unique_topic, 1): "NONE"},
    }
    assert batch(True, ("batch-a", (first[0], first[1] + 1), [0])) == {"batch-a": {(unique_topic, 0): "PRODUCER_FENCED"}}
    assert [(t.topic, t.partitions) for t in describe(wire, "batch-a").topics] == [(unique_topic, [0])]
    assert [(t.topic, t.partitions) for t in describe(wire, "batch-b").topics] == [(unique_topic, [0, 1])]
    assert end(wire, "batch-a", *first, True) == "NONE"
    assert end(wire, "batch-b", *second, False) == "NONE"
    # an ended transaction verifies no more
    assert batch(True, ("batch-a", first, [0])) == {"batch-a": {(unique_topic, 0): "INVALID_TXN_STATE"}}


# -- EndTxn --------------------------------------------------------------------------------------


def test_end_txn_states(wire, topic) -> None:
    pid, epoch = begin(wire, "end-states")
    assert end(wire, "end-states", pid, epoch, True) == "INVALID_TXN_STATE"
    assert end(wire, "end-states", pid, epoch, False) == "INVALID_TXN_STATE"
    assert end(wire, "end-nobody", pid, epoch, True) == "INVALID_PRODUCER_ID_MAPPING"
    assert add_partitions(wire, "end-states", pid, epoch, {topic: [0]}) == {(topic, 0): "NONE"}
    assert end(wire, "end-states", pid, epoch + 1, True) == "PRODUCER_FENCED"
    assert end(wire, "end-states", pid, epoch, True) == "NONE"
    assert end(wire, "end-states", pid, epoch, True) == "NONE"  # a retried commit
    assert end(wire, "end-states", pid, epoch, False) == "INVALID_TXN_STATE"
    assert describe(wire, "end-states").transaction_state == "CompleteCommit"
    # and the other way round
    assert add_partitions(wire, "end-states", pid, epoch, {topic: [0]}) == {(topic, 0): "NONE"}
    assert end(wire, "end-states", pid, epoch, False) == "NONE"
    assert end(wire, "end-states", pid, epoch, False) == "NONE"
    assert end(wire, "end-states", pid, epoch, True) == "INVALID_TXN_STATE"
    assert describe(wire, "end-states").transaction_state == "CompleteAbort"
    # an empty transaction's markers: one COMMIT and one ABORT, nothing else
    data = fetch(wire, topic, READ_UNCOMMITTED)
    assert data.high_watermark == 2 and values_of(data) == []
    assert [(b.is_control, b.producer_id) for b in decode_batches(data.records)] == [(True, pid), (True, pid)]


def end_v5(wire: WireClient, tid: str, pid: int, epoch: int, commit: bool) -> tuple[str, int, int]:
    body = P.EndTxnRequest(transactional_id=tid, producer_id=pid, producer_epoch=epoch, committed=commit)
    answer = wire.request(body, 5)
    return E(answer.error_code).name, answer.producer_id, answer.producer_epoch


def test_end_txn_v5_ends_each_transaction_with_a_new_epoch(tmp_path, unique_topic) -> None:
    """KIP-890 part 2: EndTxn v5 bumps the epoch; its markers carry it, so a late write or a
    late EndTxn of the ended transaction is fenced; a retry with the old epoch is recognised,
    also after a restart (the state is written in value version 1)."""
    topic = unique_topic
    broker = BrokerProcess(tmp_path / "data", OVERRIDES).start()
    try:
        with WireClient(broker.bootstrap) as wire:
            create_topic(wire, topic)
            pid, epoch = begin(wire, "per-txn-epoch")
            assert add_partitions(wire, "per-txn-epoch", pid, epoch, {topic: [0]}) == {(topic, 0): "NONE"}
            assert produce(wire, "per-txn-epoch", topic, txn_batch(pid, epoch, 0, b"one")).error_code == 0
            assert end_v5(wire, "per-txn-epoch", pid, epoch, True) == ("NONE", pid, epoch + 1)
            assert end_v5(wire, "per-txn-epoch", pid, epoch, True) == ("NONE", pid, epoch + 1), "a retry after a lost answer"
            assert end_v5(wire, "per-txn-epoch", pid, epoch, False)[0] == "INVALID_TXN_STATE"
            described = describe(wire, "per-txn-epoch")
            assert (described.transaction_state, described.producer_epoch) == ("CompleteCommit", epoch + 1)
            late = produce(wire, "per-txn-epoch", topic, txn_batch(pid, epoch, 1, b"late"))
            assert late.error_code == E.INVALID_PRODUCER_EPOCH, "the marker moved the partition to the new epoch"
            assert add_partitions(wire, "per-txn-epoch", pid, epoch, {topic: [0]}) == {(topic, 0): "PRODUCER_FENCED"}
            # the next transaction, with the new epoch, from sequence 0
            assert add_partitions(wire, "per-txn-epoch", pid, epoch + 1, {topic: [0]}) == {(topic, 0): "NONE"}
            assert produce(wire, "per-txn-epoch", topic, txn_batch(pid, epoch + 1, 0, b"two")).error_code == 0
            assert end_v5(wire, "per-txn-epoch", pid, epoch + 1, False) == ("NONE", pid, epoch + 2)
            data = fetch(wire, topic, READ_COMMITTED)
            assert values_of(data) == [b"one", b"two"] and aborted(data) == [(pid, 2)], "the reader drops the aborted one"
            markers = [(b.producer_epoch, b.control_type) for b in decode_batches(data.records) if b.is_control]
            assert markers == [(epoch + 1, ControlType.COMMIT), (epoch + 2, ControlType.ABORT)]
        broker.restart()
        with WireClient(broker.bootstrap) as wire:
            deadline = time.monotonic() + 30
            while describe(wire, "per-txn-epoch").error_code == E.COORDINATOR_LOAD_IN_PROGRESS and time.monotonic() < deadline:
                time.sleep(0.1)
            assert end_v5(wire, "per-txn-epoch", pid, epoch + 1, False) == ("NONE", pid, epoch + 2)
    finally:
        broker.stop()


# -- Produce -------------------------------------------------------------------------------------


def test_a_transactional_write_to_a_partition_not_in_the_transaction_is_refused(wire, topic) -> None:
    pid, epoch = begin(wire, "kip-890")
    answer = produce(wire, "kip-890", topic, txn_batch(pid, epoch, 0, b"early"))
    assert (answer.error_code, answer.base_offset) == (E.INVALID_TXN_STATE, -1)
    assert fetch(wire, topic, READ_UNCOMMITTED).high_watermark == 0  # nothing appended
    assert add_partitions(wire, "kip-890", pid, epoch, {topic: [0]}) == {(topic, 0): "NONE"}
    # a producer id or epoch the coordinator does not know for this id
    assert produce(wire, "kip-890", topic, txn_batch(pid + 1000, epoch, 0, b"x")).error_code == E.INVALID_PRODUCER_ID_MAPPING
    assert produce(wire, "other-id", topic, txn_batch(pid, epoch, 0, b"x")).error_code == E.INVALID_PRODUCER_ID_MAPPING
    answer = produce(wire, "kip-890", topic, txn_batch(pid, epoch, 0, b"a", b"b"))
    assert (answer.error_code, answer.base_offset) == (0, 0)
    data = fetch(wire, topic, READ_UNCOMMITTED)
    assert (data.high_watermark, data.last_stable_offset, values_of(data)) == (2, 0, [b"a", b"b"])
    assert end(wire, "kip-890", pid, epoch, True) == "NONE"
    # the transaction ended: a late write of it is refused, it cannot open a hanging one
    answer = produce(wire, "kip-890", topic, txn_batch(pid, epoch, 2, b"late"))
    assert answer.error_code == E.INVALID_TXN_STATE
    data = fetch(wire, topic, READ_COMMITTED)
    assert (data.high_watermark, data.last_stable_offset, values_of(data)) == (3, 3, [b"a", b"b"])


def test_a_control_batch_from_a_client_is_refused(wire, topic) -> None:
    pid, epoch = begin(wire, "fake-marker")
    assert add_partitions(wire, "fake-marker", pid, epoch, {topic: [0]}) == {(topic, 0): "NONE"}
    assert produce(wire, "fake-marker", topic, txn_batch(pid, epoch, 0, b"v")).error_code == 0
    marker = encode_control_batch(ControlType.COMMIT, producer_id=pid, producer_epoch=epoch, coordinator_epoch=0,
                                  timestamp=int(time.time() * 1000))
    for tid in ("fake-marker", None):
        answer = produce(wire, tid, topic, marker)
        assert (answer.error_code, answer.base_offset) == (E.INVALID_RECORD, -1)
    data = fetch(wire, topic, READ_COMMITTED)
    assert (data.high_watermark, data.last_stable_offset) == (1, 0)  # still open: the fake did not end it
    assert end(wire, "fake-marker", pid, epoch, False) == "NONE"


# -- Fetch ---------------------------------------------------------------------------------------


def test_read_committed_fetch_stops_at_the_last_stable_offset_and_names_aborted_transactions(wire, topic) -> None:
    pid, epoch = begin(wire, "fetch-iso")
    plain = encode_batch([Record(0, int(time.time() * 1000), None, b"plain")])
    assert produce(wire, None, topic, plain).base_offset == 0
    assert add_partitions(wire, "fetch-iso", pid, epoch, {topic: [0]}) == {(topic, 0): "NONE"}
    assert produce(wire, "fetch-iso", topic, txn_batch(pid, epoch, 0, b"doomed-1", b"doomed-2")).base_offset == 1
    open_txn = fetch(wire, topic, READ_COMMITTED)
    assert (open_txn.high_watermark, open_txn.last_stable_offset, values_of(open_txn)) == (3, 1, [b"plain"])
    assert aborted(open_txn) == []
    assert values_of(fetch(wire, topic, READ_UNCOMMITTED)) == [b"plain", b"doomed-1", b"doomed-2"]
    assert end(wire, "fetch-iso", pid, epoch, False) == "NONE"  # ABORT marker at 3
    assert add_partitions(wire, "fetch-iso", pid, epoch, {topic: [0]}) == {(topic, 0): "NONE"}
    assert produce(wire, "fetch-iso", topic, txn_batch(pid, epoch, 2, b"kept")).base_offset == 4
    assert end(wire, "fetch-iso", pid, epoch, True) == "NONE"  # COMMIT marker at 5

    committed_view = fetch(wire, topic, READ_COMMITTED)
    assert (committed_view.high_watermark, committed_view.last_stable_offset) == (6, 6)
    assert aborted(committed_view) == [(pid, 1)]
    # the aborted records are in the answer: the client drops them by the aborted list
    assert values_of(committed_view) == [b"plain", b"doomed-1", b"doomed-2", b"kept"]
    # a fetch past the aborted transaction names none
    assert aborted(fetch(wire, topic, READ_COMMITTED, offset=4)) == []
    uncommitted = fetch(wire, topic, READ_UNCOMMITTED)
    assert not aborted(uncommitted)
    assert (uncommitted.high_watermark, uncommitted.last_stable_offset) == (6, 6)


# -- TxnOffsetCommit -----------------------------------------------------------------------------


def test_txn_offset_commit_needs_add_offsets_first(wire, topic) -> None:
    pid, epoch = begin(wire, "offsets-unadded")
    assert txn_commit_offset(wire, "offsets-unadded", pid, epoch, "g-unadded", topic, 3) == "INVALID_TXN_STATE"
    # an open transaction of the topic's partition only is not enough
    assert add_partitions(wire, "offsets-unadded", pid, epoch, {topic: [0]}) == {(topic, 0): "NONE"}
    assert txn_commit_offset(wire, "offsets-unadded", pid, epoch, "g-unadded", topic, 3) == "INVALID_TXN_STATE"
    assert txn_commit_offset(wire, "offsets-unadded", pid, epoch - 1, "g-unadded", topic, 3) == "INVALID_PRODUCER_EPOCH"
    assert end(wire, "offsets-unadded", pid, epoch, True) == "NONE"
    assert committed(wire, "g-unadded", topic) == (-1, "NONE")
    assert add_offsets(wire, "offsets-unadded", pid, epoch + 1, "g-unadded") == "PRODUCER_FENCED"
    assert add_offsets(wire, "offsets-unadded", pid, epoch, "") == "INVALID_GROUP_ID"


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
def test_txn_offsets_take_effect_with_the_transaction(wire, topic, commit) -> None:
    tid, group = f"offsets-{commit}", f"g-offsets-{commit}"
    pid, epoch = begin(wire, tid)
    assert add_offsets(wire, tid, pid, epoch, group) == "NONE"
    assert txn_commit_offset(wire, tid, pid, epoch, group, topic, 7) == "NONE"
    assert committed(wire, group, topic) == (-1, "NONE")  # pending: not visible yet
    assert committed(wire, group, topic, require_stable=True) == (-1, "UNSTABLE_OFFSET_COMMIT")
    assert end(wire, tid, pid, epoch, commit) == "NONE"
    assert committed(wire, group, topic, require_stable=True) == ((7, "NONE") if commit else (-1, "NONE"))
    assert committed(wire, group, topic) == ((7, "NONE") if commit else (-1, "NONE"))


def test_txn_offset_commit_for_a_group_with_members(wire, topic) -> None:
    # consume-transform-produce: the consumer is in its group while the producer commits its
    # offsets. v3+ (KIP-447) carry the member, checked as OffsetCommit checks it; v0-v2 carry
    # none and are not checked against the group (Kafka's GroupCoordinator.handleTxnCommitOffsets).
    group = "g-members"
    generation, member = stable_group(wire, group)
    pid, epoch = begin(wire, "offsets-members")
    assert add_offsets(wire, "offsets-members", pid, epoch, group) == "NONE"
    assert txn_commit_offset(wire, "offsets-members", pid, epoch, group, topic, 1, version=3, generation=generation + 1,
                             member_id=member) == "ILLEGAL_GENERATION"
    assert txn_commit_offset(wire, "offsets-members", pid, epoch, group, topic, 1, version=3, generation=generation,
                             member_id="someone-else") == "UNKNOWN_MEMBER_ID"
    assert txn_commit_offset(wire, "offsets-members", pid, epoch, group, topic, 2, version=3, generation=generation,
                             member_id=member) == "NONE"
    assert txn_commit_offset(wire, "offsets-members", pid, epoch, group, topic, 3, version=2) == "NONE"
    assert end(wire, "offsets-members", pid, epoch, True) == "NONE"
    assert committed(wire, group, topic) == (3, "NONE")


# -- WriteTxnMarkers -----------------------------------------------------------------------------


def write_markers(wire: WireClient, pid: int, epoch: int, commit: bool, partitions: dict) -> dict:
    """WriteTxnMarkers v1 of one producer: {(topic, partition): error name}."""
    R = P.WriteTxnMarkersRequest
    body = R(markers=[R.WritableTxnMarker(producer_id=pid, producer_epoch=epoch, transaction_result=commit, coordinator_epoch=0,
                                          topics=[R.WritableTxnMarkerTopic(name=t, partition_indexes=ps) for t, ps in partitions.items()])])
    [answer] = wire.request(body, 1).markers
    assert answer.producer_id == pid
    return {(t.name, p.partition_index): E(p.error_code).name for t in answer.topics for p in t.partitions}


def test_write_txn_markers_v1_ends_an_open_transaction_on_its_partition(wire, topic) -> None:
    pid, _ = begin(wire, "markers")
    error, _, epoch = init(wire, "markers")
    assert (error, epoch) == (0, 1)
    assert add_partitions(wire, "markers", pid, epoch, {topic: [0]}) == {(topic, 0): "NONE"}
    assert produce(wire, "markers", topic, txn_batch(pid, epoch, 0, b"m1", b"m2")).error_code == 0
    assert fetch(wire, topic, READ_COMMITTED).last_stable_offset == 0
    assert write_markers(wire, pid, epoch, True, {topic: [0], "no-such-marker-topic": [0]}) == {
        (topic, 0): "NONE", ("no-such-marker-topic", 0): "UNKNOWN_TOPIC_OR_PARTITION"}
    data = fetch(wire, topic, READ_COMMITTED)
    assert (data.high_watermark, data.last_stable_offset, aborted(data), values_of(data)) == (3, 3, [], [b"m1", b"m2"])
    # a marker of an older epoch is refused, and nothing is written
    assert write_markers(wire, pid, epoch - 1, False, {topic: [0]}) == {(topic, 0): "INVALID_PRODUCER_EPOCH"}
    assert fetch(wire, topic, READ_UNCOMMITTED).high_watermark == 3


def test_write_txn_markers_to_a_partition_that_does_not_exist(wire, topic) -> None:
    # Kafka answers UNKNOWN_TOPIC_OR_PARTITION for a partition the broker does not host; a
    # single broker leads every partition there is, so NOT_LEADER_OR_FOLLOWER would send a
    # coordinator looking for a leader that cannot exist.
    pid, epoch = begin(wire, "markers-nowhere")
    assert write_markers(wire, pid, epoch, True, {topic: [9]}) == {(topic, 9): "UNKNOWN_TOPIC_OR_PARTITION"}


# -- DescribeTransactions and ListTransactions ---------------------------------------------------


def test_describe_transactions(wire, topic) -> None:
    unknown = describe(wire, "never-initialised")
    assert (unknown.error_code, unknown.transactional_id, unknown.producer_id, unknown.producer_epoch) == (
        E.TRANSACTIONAL_ID_NOT_FOUND, "never-initialised", -1, -1)
    error, pid, epoch = init(wire, "described", timeout_ms=45_000)
    assert error == 0
    before = int(time.time() * 1000)
    assert add_partitions(wire, "described", pid, epoch, {topic: [0]}) == {(topic, 0): "NONE"}
    state = describe(wire, "described")
    assert (state.error_code, state.transaction_state, state.transaction_timeout_ms, state.producer_id, state.producer_epoch) == (
        0, "Ongoing", 45_000, pid, epoch)
    assert [(t.topic, t.partitions) for t in state.topics] == [(topic, [0])]
    assert before - 1000 <= state.transaction_start_time_ms <= int(time.time() * 1000)
    assert end(wire, "described", pid, epoch, True) == "NONE"
    state = describe(wire, "described")
    assert (state.transaction_state, state.topics) == ("CompleteCommit", [])


def test_list_transactions_filters(wire, topic) -> None:
    open_pid, epoch = begin(wire, "list-open")
    assert add_partitions(wire, "list-open", open_pid, epoch, {topic: [0]}) == {(topic, 0): "NONE"}
    done_pid, done_epoch = begin(wire, "list-done")
    assert add_partitions(wire, "list-done", done_pid, done_epoch, {topic: [0]}) == {(topic, 0): "NONE"}
    assert end(wire, "list-done", done_pid, done_epoch, True) == "NONE"
    time.sleep(0.3)

    def listed(version: int = 1, states=(), producer_ids=(), duration: int = -1):
        body = P.ListTransactionsRequest(state_filters=list(states), producer_id_filters=list(producer_ids), duration_filter=duration)
        answer = wire.request(body, version)
        assert answer.error_code == 0
        return answer.unknown_state_filters, sorted((t.transactional_id, t.producer_id, t.transaction_state) for t in answer.transaction_states)

    both = [open_pid, done_pid]
    assert listed(producer_ids=both) == ([], [("list-done", done_pid, "CompleteCommit"), ("list-open", open_pid, "Ongoing")])
    assert listed(producer_ids=[done_pid]) == ([], [("list-done", done_pid, "CompleteCommit")])
    assert listed(producer_ids=both, states=["Ongoing", "NoSuchState"]) == (["NoSuchState"], [("list-open", open_pid, "Ongoing")])
    assert listed(producer_ids=both, states=["NoSuchState"]) == (["NoSuchState"], [])
    # open for at least 100 ms, but not for an hour
    assert listed(producer_ids=[open_pid], duration=100) == ([], [("list-open", open_pid, "Ongoing")])
    assert listed(producer_ids=[open_pid], duration=3_600_000) == ([], [])
    # v0 has no duration filter
    assert listed(version=0, producer_ids=[open_pid]) == ([], [("list-open", open_pid, "Ongoing")])
    unfiltered = listed()[1]
    assert ("list-open", open_pid, "Ongoing") in unfiltered and ("list-done", done_pid, "CompleteCommit") in unfiltered
    assert end(wire, "list-open", open_pid, epoch, False) == "NONE"


# -- a restart -----------------------------------------------------------------------------------


def test_transaction_state_and_transactional_offsets_survive_a_restart(tmp_path, unique_topic) -> None:
    broker = BrokerProcess(tmp_path / "data", OVERRIDES).start()
    try:
        with WireClient(broker.bootstrap) as wire:
            create_topic(wire, unique_topic)
            pid, epoch = begin(wire, "restarted")
            assert init(wire, "restarted") == (0, pid, epoch + 1)
            epoch += 1
            assert add_offsets(wire, "restarted", pid, epoch, "g-kept") == "NONE"
            assert txn_commit_offset(wire, "restarted", pid, epoch, "g-kept", unique_topic, 11) == "NONE"
            assert end(wire, "restarted", pid, epoch, True) == "NONE"
            assert add_offsets(wire, "restarted", pid, epoch, "g-dropped") == "NONE"
            assert txn_commit_offset(wire, "restarted", pid, epoch, "g-dropped", unique_topic, 12) == "NONE"
            assert end(wire, "restarted", pid, epoch, False) == "NONE"
            # left open at the stop: the coordinator still knows it after the restart
            open_pid, open_epoch = begin(wire, "restarted-open")
            assert add_partitions(wire, "restarted-open", open_pid, open_epoch, {unique_topic: [0]}) == {(unique_topic, 0): "NONE"}
            assert produce(wire, "restarted-open", unique_topic, txn_batch(open_pid, open_epoch, 0, b"open")).error_code == 0
        broker.restart()
        with WireClient(broker.bootstrap) as wire:
            deadline = time.monotonic() + 30
            while (state := describe(wire, "restarted")).error_code == E.COORDINATOR_LOAD_IN_PROGRESS and time.monotonic() < deadline:
                time.sleep(0.1)
            assert (state.error_code, state.transaction_state, state.producer_id, state.producer_epoch) == (0, "CompleteAbort", pid, epoch)
            still_open = describe(wire, "restarted-open")
            assert (still_open.transaction_state, [(t.topic, t.partitions) for t in still_open.topics]) == ("Ongoing", [(unique_topic, [0])])
            assert fetch(wire, unique_topic, READ_COMMITTED).last_stable_offset == 0
            assert committed(wire, "g-kept", unique_topic) == (11, "NONE")
            assert committed(wire, "g-dropped", unique_topic) == (-1, "NONE")
            assert init(wire, "restarted") == (0, pid, epoch + 1)
            # the open transaction is aborted by its next producer, from the reloaded state
            assert init(wire, "restarted-open") == (0, open_pid, open_epoch + 1)
            data = fetch(wire, unique_topic, READ_COMMITTED)
            assert (data.last_stable_offset, aborted(data)) == (2, [(open_pid, 0)])
    finally:
        broker.stop()


def test_a_producer_whose_transaction_timed_out_may_initialise_again_from_its_epoch(tmp_path, unique_topic) -> None:
    """KIP-360: the coordinator aborts a timed-out transaction with a new epoch (fencing its
    producer); that producer re-initialising with its old epoch is let through, as in Kafka, and
    anything older stays fenced."""
    overrides = {**OVERRIDES, "transaction.abort.timed.out.transaction.cleanup.interval.ms": "200"}
    broker = BrokerProcess(tmp_path / "data", overrides).start()
    try:
        with WireClient(broker.bootstrap) as wire:
            create_topic(wire, unique_topic)
            error, pid, epoch = init(wire, "timed-out", timeout_ms=1000)
            assert error == 0
            assert add_partitions(wire, "timed-out", pid, epoch, {unique_topic: [0]}) == {(unique_topic, 0): "NONE"}
            deadline = time.monotonic() + 20
            while describe(wire, "timed-out").transaction_state != "CompleteAbort" and time.monotonic() < deadline:
                time.sleep(0.1)
            state = describe(wire, "timed-out")
            assert (state.transaction_state, state.producer_epoch) == ("CompleteAbort", epoch + 1)
            assert end(wire, "timed-out", pid, epoch, True) == "PRODUCER_FENCED"
            assert init(wire, "timed-out", producer_id=pid, epoch=epoch - 1) == (E.PRODUCER_FENCED, -1, -1)
            assert init(wire, "timed-out", producer_id=pid, epoch=epoch) == (0, pid, epoch + 2)
            assert init(wire, "timed-out", producer_id=pid, epoch=epoch) == (E.PRODUCER_FENCED, -1, -1), "only once"
    finally:
        broker.stop()
