"""Transactions with the real confluent-kafka (librdkafka) client against broker processes.

Covered: consume-transform-produce exactly once while its worker (eos_worker.py) is SIGKILLed
again and again (the newest confluent-kafka, and 1.9.2 and 2.3.0 from their venvs); read_committed against read_uncommitted (aborted transactions filtered, an open
transaction holding back the last stable offset, in Fetch and in ListOffsets); a zombie producer
fenced by a newer one with the same transactional id; a hanging transaction aborted by the
coordinator after its timeout; a broker SIGKILLed in the middle of a transaction, and aborted
data staying filtered across a restart (the .txnindex files); and the admin view
(DescribeProducers, ListTransactions, DescribeTransactions, OffsetFetch's require_stable while a
TxnOffsetCommit is pending).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fastlog import protocol as P
from fastlog.group_coordinator import partition_for
from fastlog.protocol import ErrorCode as E
from tests.broker.wire import WireClient
from tests.conftest import BrokerProcess

TIMEOUT = 30
OVERRIDES = {
    "transaction.state.log.num.partitions": "4",
    "offsets.topic.num.partitions": "4",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "500",
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "500",
}
VENVS = Path(__file__).resolve().parents[2] / ".cache" / "clients" / "python"
OLD_VERSIONS = ["1.9.2", "2.3.0"]
WORKER = Path(__file__).with_name("eos_worker.py")
SEED = int(os.environ.get("FASTLOG_EOS_SEED", "20261127"))
FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


@pytest.fixture(scope="module")
def txn_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(tmp_path_factory.mktemp("txn") / "data", OVERRIDES).start()
    yield broker
    broker.stop()


# -- helpers -----------------------------------------------------------------------------------


def wait_until(condition: Callable[[], object], what: str, timeout: float = TIMEOUT, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def create_topics(bootstrap: str, **partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, count, 1) for name, count in partitions.items()])
    for future in futures.values():
        future.result(TIMEOUT)


def txn_producer(bootstrap: str, transactional_id: str, **extra) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 1, **extra})
    producer.init_transactions(TIMEOUT)
    return producer


def produce_txn(producer: Producer, topic: str, values: list[bytes], commit: bool = True, partition: int = 0) -> None:
    producer.begin_transaction()
    for value in values:
        producer.produce(topic, value=value, partition=partition)
    assert producer.flush(TIMEOUT) == 0
    if commit:
        producer.commit_transaction(TIMEOUT)
    else:
        producer.abort_transaction(TIMEOUT)


def consumer(bootstrap: str, isolation: str, **extra) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}", "isolation.level": isolation,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": True, **extra})


def drain(c: Consumer, partitions: set[int], timeout: float = TIMEOUT) -> list[tuple[int, int, bytes, bytes]]:
    """(partition, offset, key, value) of every record until each of `partitions` reported its
    end (for read_committed: the last stable offset) with nothing after it."""
    records, at_end = [], set()
    deadline = time.monotonic() + timeout
    while at_end != partitions and time.monotonic() < deadline:
        for m in c.consume(500, 0.2):
            if m.error() is not None:
                if m.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(m.error())
                at_end.add(m.partition())
                continue
            at_end.discard(m.partition())
            records.append((m.partition(), m.offset(), m.key(), m.value()))
    assert at_end == partitions, f"the end of partitions {partitions - at_end} not reached in {timeout}s"
    return records


def read_topic(bootstrap: str, topic: str, isolation: str, partitions: int = 1) -> list[tuple[int, int, bytes, bytes]]:
    c = consumer(bootstrap, isolation)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        return drain(c, set(range(partitions)))
    finally:
        c.close()


def values(records: list[tuple[int, int, bytes, bytes]]) -> list[bytes]:
    return [value for _, _, _, value in records]


def list_offset(bootstrap: str, topic: str, isolation: int, partition: int = 0) -> int:
    """ListOffsets v7 latest: the high watermark (isolation 0) or the last stable offset (1)."""
    L = P.ListOffsetsRequest
    wanted = L.ListOffsetsTopic(name=topic, partitions=[L.ListOffsetsPartition(partition_index=partition, timestamp=-1)])
    with WireClient(bootstrap) as wire:
        answer = wire.request(L(replica_id=-1, isolation_level=isolation, topics=[wanted]), 7).topics[0].partitions[0]
    assert answer.error_code == 0
    return answer.offset


def describe_txn(bootstrap: str, transactional_id: str):
    with WireClient(bootstrap) as wire:
        (state,) = wire.request(P.DescribeTransactionsRequest(transactional_ids=[transactional_id]), 0).transaction_states
    assert state.error_code == 0, state
    return state


def producers(bootstrap: str, topic: str, partition: int = 0) -> dict[int, tuple[int, int]]:
    """DescribeProducers v0: {producer id: (epoch, current transaction's first offset)}."""
    D = P.DescribeProducersRequest
    with WireClient(bootstrap) as wire:
        answer = wire.request(D(topics=[D.TopicRequest(name=topic, partition_indexes=[partition])]), 0)
    (part,) = answer.topics[0].partitions
    assert part.error_code == 0
    return {p.producer_id: (p.producer_epoch, p.current_txn_start_offset) for p in part.active_producers}


def list_txns(bootstrap: str, states: list[str], producer_ids: list[int] = (), duration_ms: int = -1):
    """ListTransactions v1: (unknown state filters, {(transactional id, producer id, state)})."""
    request = P.ListTransactionsRequest(state_filters=states, producer_id_filters=list(producer_ids), duration_filter=duration_ms)
    with WireClient(bootstrap) as wire:
        answer = wire.request(request, 1)
    assert answer.error_code == 0
    return answer.unknown_state_filters, {(t.transactional_id, t.producer_id, t.transaction_state) for t in answer.transaction_states}


def fetch_offset(bootstrap: str, group: str, topic: str, require_stable: bool, partition: int = 0) -> tuple[int, int]:
    """OffsetFetch v7: (committed offset, error) of one partition."""
    F = P.OffsetFetchRequest
    request = F(group_id=group, topics=[F.OffsetFetchRequestTopic(name=topic, partition_indexes=[partition])], require_stable=require_stable)
    with WireClient(bootstrap) as wire:
        answer = wire.request(request, 7)
    assert answer.error_code == 0
    (found,) = answer.topics[0].partitions
    return found.committed_offset, found.error_code


def assert_fenced(call: Callable[[], object]) -> KafkaError:
    with pytest.raises(KafkaException) as raised:
        call()
    error: KafkaError = raised.value.args[0]
    assert error.code() in FENCED and error.fatal(), f"not a fatal fencing error: {error!r}"
    return error


# -- 1. consume-transform-produce under SIGKILL -------------------------------------------------


class Worker:
    """eos_worker.py in a subprocess; its JSON lines collected by a thread."""

    def __init__(self, args: list[str], stderr_path: Path, python: str = sys.executable) -> None:
        self.stderr_path = stderr_path
        with open(stderr_path, "ab") as stderr:
            self.process = subprocess.Popen([python, str(WORKER), *args], stdout=subprocess.PIPE, stderr=stderr,
                                            stdin=subprocess.DEVNULL)
        self.events: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self.events.append(json.loads(line))

    def count(self, key: str) -> int:
        return sum(1 for e in list(self.events) if key in e)

    def wait_for(self, key: str, timeout: float) -> None:
        """Until the worker printed a `key` event or exited."""
        deadline = time.monotonic() + timeout
        while not self.count(key) and self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {key!r} from the worker in {timeout}s: {self.events[-5:]}\n{self.stderr_tail()}")
            time.sleep(0.05)

    def kill(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.finish(10)

    def finish(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker still running after {timeout}s: {self.events[-5:]}\n{self.stderr_tail()}")
        self.reader.join(5)
        return code

    def stderr_tail(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]


@pytest.mark.slow
def test_consume_transform_produce_exactly_once_while_the_worker_is_sigkilled(txn_broker, unique_topic, tmp_path) -> None:
    exactly_once_under_kills(txn_broker, unique_topic, tmp_path, sys.executable, n=3000, kills=5)


@pytest.mark.slow
@pytest.mark.parametrize("version", OLD_VERSIONS)
def test_older_confluent_kafka_versions_are_exactly_once_too(txn_broker, unique_topic, tmp_path, version) -> None:
    """The same worker with confluent-kafka 1.9.2 (librdkafka 1.9.2) and 2.3.0, from their venvs
    (`bash scripts/clients/python.sh`)."""
    python = VENVS / f"confluent-kafka-{version}" / "bin" / "python"
    assert python.exists(), f"{python} is missing: run `bash scripts/clients/python.sh`"
    exactly_once_under_kills(txn_broker, unique_topic, tmp_path, str(python), n=1000, kills=2)


def exactly_once_under_kills(txn_broker, unique_topic: str, tmp_path: Path, python: str, n: int, kills: int) -> None:
    partitions = 3
    rng = random.Random(SEED)
    bootstrap = txn_broker.bootstrap
    source, sink, group, txn_id = f"{unique_topic}-in", f"{unique_topic}-out", f"{unique_topic}-g", f"{unique_topic}-tx"
    create_topics(bootstrap, **{source: partitions, sink: partitions})
    loader = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for i in range(n):
        loader.produce(source, key=b"%d" % i, value=b"v%d" % i, partition=i % partitions)
    assert loader.flush(TIMEOUT) == 0
    args = [bootstrap, source, sink, group, txn_id, str(n), "25", "60"]

    killed_mid_stream = 0
    workers: list[Worker] = []
    try:
        for round_ in range(kills):
            worker = Worker(args, tmp_path / f"worker-{round_}.err", python)
            workers.append(worker)
            worker.wait_for("committed", timeout=40)
            if worker.process.poll() is not None:
                break  # done already (or failed: checked below)
            time.sleep(rng.uniform(0.05, 0.8))
            code = worker.kill()
            if code == -signal.SIGKILL and not worker.count("done"):
                killed_mid_stream += 1
            assert code in (0, -signal.SIGKILL), f"exit {code}: {worker.events[-5:]}\n{worker.stderr_tail()}"
        final = Worker(args, tmp_path / "worker-final.err", python)
        workers.append(final)
        code = final.finish(80)
        assert code == 0 and final.count("done") == 1, f"exit {code}: {final.events[-5:]}\n{final.stderr_tail()}"
    finally:
        for worker in workers:
            worker.kill()
    assert killed_mid_stream >= kills - 1, f"only {killed_mid_stream} kills landed before the end"

    committed = read_topic(bootstrap, sink, "read_committed", partitions)
    keys = Counter(key for _, _, key, _ in committed)
    assert len(committed) == n
    assert [k for k, c in keys.items() if c > 1] == []  # no duplicates
    assert sorted(int(k) for k in keys) == list(range(n))  # no gaps
    for p, _, key, value in committed:
        assert value == b"out-v" + key and int(key) % partitions == p
    for p in range(partitions):  # in each partition, in input order
        assert [int(k) for q, _, k, _ in committed if q == p] == list(range(p, n, partitions))
    everything = read_topic(bootstrap, sink, "read_uncommitted", partitions)
    assert len(everything) >= n
    # the group's offsets, committed in the transactions, cover the input exactly
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed"})
    try:
        offsets = c.committed([TopicPartition(source, p) for p in range(partitions)], timeout=TIMEOUT)
    finally:
        c.close()
    assert [tp.offset for tp in offsets] == [len(range(p, n, partitions)) for p in range(partitions)]


def test_send_offsets_to_transaction_from_a_subscribed_group_member(txn_broker, unique_topic) -> None:
    """TxnOffsetCommit v3 (KIP-447) carries the member's generation and id: a live member of a
    Stable group commits its offsets inside the transaction."""
    bootstrap, source, sink, group = txn_broker.bootstrap, f"{unique_topic}-in", f"{unique_topic}-out", f"{unique_topic}-g"
    create_topics(bootstrap, **{source: 1, sink: 1})
    loader = Producer({"bootstrap.servers": bootstrap})
    for i in range(3):
        loader.produce(source, value=b"in-%d" % i, partition=0)
    assert loader.flush(TIMEOUT) == 0
    producer = txn_producer(bootstrap, f"{unique_topic}-tx")
    member = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed",
                       "enable.auto.commit": False, "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    try:
        member.subscribe([source])
        consumed: list = []
        wait_until(lambda: consumed.extend(m for m in member.consume(10, 0.2) if m.error() is None) or len(consumed) >= 3, "the input")
        producer.begin_transaction()
        for m in consumed:
            producer.produce(sink, value=b"out-" + m.value(), partition=0)
        producer.send_offsets_to_transaction(member.position(member.assignment()), member.consumer_group_metadata(), TIMEOUT)
        producer.commit_transaction(TIMEOUT)
        assert [tp.offset for tp in member.committed([TopicPartition(source, 0)], timeout=TIMEOUT)] == [3]
    finally:
        member.close()
    assert values(read_topic(bootstrap, sink, "read_committed")) == [b"out-in-0", b"out-in-1", b"out-in-2"]


# -- 2. read_committed against read_uncommitted -----------------------------------------------


def test_read_committed_filters_aborted_and_stops_at_an_open_transaction(txn_broker, unique_topic) -> None:
    bootstrap, topic = txn_broker.bootstrap, unique_topic
    create_topics(bootstrap, **{topic: 1})
    producer = txn_producer(bootstrap, f"{topic}-tx")
    produce_txn(producer, topic, [b"c1a", b"c1b"])  # offsets 0, 1; marker 2
    produce_txn(producer, topic, [b"a2a", b"a2b"], commit=False)  # 3, 4; marker 5
    produce_txn(producer, topic, [b"c3a"])  # 6; marker 7
    committed = read_topic(bootstrap, topic, "read_committed")
    assert [(o, v) for _, o, _, v in committed] == [(0, b"c1a"), (1, b"c1b"), (6, b"c3a")]
    everything = read_topic(bootstrap, topic, "read_uncommitted")
    assert [(o, v) for _, o, _, v in everything] == [(0, b"c1a"), (1, b"c1b"), (3, b"a2a"), (4, b"a2b"), (6, b"c3a")]
    assert list_offset(bootstrap, topic, 0) == list_offset(bootstrap, topic, 1) == 8

    # an open transaction at offset 8, then a plain (non-transactional) record at 9
    producer.begin_transaction()
    producer.produce(topic, value=b"o4", partition=0)
    assert producer.flush(TIMEOUT) == 0
    plain = Producer({"bootstrap.servers": bootstrap})
    plain.produce(topic, value=b"plain", partition=0)
    assert plain.flush(TIMEOUT) == 0
    assert (list_offset(bootstrap, topic, 0), list_offset(bootstrap, topic, 1)) == (10, 8)
    for isolation, high in (("read_committed", 8), ("read_uncommitted", 10)):
        c = consumer(bootstrap, isolation)
        assert c.get_watermark_offsets(TopicPartition(topic, 0), TIMEOUT, cached=False) == (0, high)
        c.close()
    assert values(read_topic(bootstrap, topic, "read_uncommitted"))[-2:] == [b"o4", b"plain"]

    live = consumer(bootstrap, "read_committed")
    try:
        live.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        assert values(drain(live, {0})) == [b"c1a", b"c1b", b"c3a"]  # held back at the open transaction
        time.sleep(0.5)
        assert [m for m in live.consume(10, 0.5) if m.error() is None] == []
        producer.commit_transaction(TIMEOUT)
        assert [(o, v) for _, o, _, v in drain(live, {0})] == [(8, b"o4"), (9, b"plain")]
    finally:
        live.close()
    assert list_offset(bootstrap, topic, 0) == list_offset(bootstrap, topic, 1) == 11


# -- 3. zombie fencing ---------------------------------------------------------------------------


def test_a_newer_producer_fences_the_zombie_and_aborts_its_transaction(txn_broker, unique_topic) -> None:
    bootstrap, topic, txn_id = txn_broker.bootstrap, unique_topic, f"{unique_topic}-tx"
    create_topics(bootstrap, **{topic: 1})
    zombie = txn_producer(bootstrap, txn_id)
    zombie.begin_transaction()
    zombie.produce(topic, value=b"zombie", partition=0)
    assert zombie.flush(TIMEOUT) == 0
    first = describe_txn(bootstrap, txn_id)
    assert (first.transaction_state, first.producer_epoch) == ("Ongoing", 0)

    newer = txn_producer(bootstrap, txn_id)
    fenced_state = describe_txn(bootstrap, txn_id)
    assert (fenced_state.transaction_state, fenced_state.producer_id, fenced_state.producer_epoch) == ("CompleteAbort", first.producer_id, 1)
    assert values(read_topic(bootstrap, topic, "read_committed")) == []  # aborted, not merely pending
    assert list_offset(bootstrap, topic, 1) == list_offset(bootstrap, topic, 0) == 2  # the record and its ABORT marker

    # the zombie's late write is refused at the partition, and its commit fails for good
    zombie.produce(topic, value=b"late", partition=0)
    error = assert_fenced(lambda: zombie.flush(TIMEOUT))
    assert "old epoch" in error.str()  # INVALID_PRODUCER_EPOCH from the partition
    assert_fenced(lambda: zombie.commit_transaction(TIMEOUT))
    assert_fenced(zombie.begin_transaction)

    produce_txn(newer, topic, [b"newer"])
    assert values(read_topic(bootstrap, topic, "read_committed")) == [b"newer"]
    assert values(read_topic(bootstrap, topic, "read_uncommitted")) == [b"zombie", b"newer"]
    done = describe_txn(bootstrap, txn_id)
    assert (done.transaction_state, done.producer_id, done.producer_epoch) == ("CompleteCommit", first.producer_id, 1)


# -- 4. a hanging transaction -------------------------------------------------------------------


def test_a_hanging_transaction_is_aborted_after_its_timeout(txn_broker, unique_topic) -> None:
    bootstrap, topic, txn_id = txn_broker.bootstrap, unique_topic, f"{unique_topic}-tx"
    create_topics(bootstrap, **{topic: 1})
    abandoned = txn_producer(bootstrap, txn_id, **{"transaction.timeout.ms": 2000})
    began = time.monotonic()
    abandoned.begin_transaction()
    for i in range(5):
        abandoned.produce(topic, value=b"hang-%d" % i, partition=0)
    assert abandoned.flush(TIMEOUT) == 0
    open_ = describe_txn(bootstrap, txn_id)
    assert (open_.transaction_state, open_.transaction_timeout_ms, [(t.topic, t.partitions) for t in open_.topics]) == ("Ongoing", 2000, [(topic, [0])])
    assert producers(bootstrap, topic) == {open_.producer_id: (open_.producer_epoch, 0)}
    assert list_offset(bootstrap, topic, 1) == 0

    # the producer is left alone (neither committed nor closed): the coordinator aborts it
    aborted = wait_until(lambda: (s := describe_txn(bootstrap, txn_id)).transaction_state == "CompleteAbort" and s,
                         "the coordinator to abort the transaction", timeout=15)
    assert time.monotonic() - began >= 1.9, "aborted before its timeout"
    assert (aborted.producer_id, aborted.producer_epoch, aborted.topics) == (open_.producer_id, open_.producer_epoch + 1, [])
    assert list_offset(bootstrap, topic, 1) == list_offset(bootstrap, topic, 0) == 6  # five records and the ABORT marker
    assert read_topic(bootstrap, topic, "read_committed") == []
    assert len(read_topic(bootstrap, topic, "read_uncommitted")) == 5
    assert producers(bootstrap, topic) == {open_.producer_id: (open_.producer_epoch + 1, -1)}
    # woken up at last, the producer finds itself fenced by the bumped epoch
    assert_fenced(lambda: abandoned.commit_transaction(TIMEOUT))


# -- 5. a broker restart in the middle of a transaction -----------------------------------------


@pytest.mark.slow
def test_commit_after_a_broker_sigkill_mid_transaction_and_aborts_stay_filtered(tmp_path, unique_topic) -> None:
    broker = BrokerProcess(tmp_path / "data", OVERRIDES).start()
    try:
        topic = unique_topic
        create_topics(broker.bootstrap, **{topic: 1})
        producer = txn_producer(broker.bootstrap, f"{topic}-tx")
        first = [b"first-%d" % i for i in range(10)]
        producer.begin_transaction()
        for value in first:
            producer.produce(topic, value=value, partition=0)
        assert producer.flush(TIMEOUT) == 0
        broker.kill()
        broker.start()
        producer.commit_transaction(60)  # the client finds the coordinator again
        assert values(read_topic(broker.bootstrap, topic, "read_committed")) == first
        assert describe_txn(broker.bootstrap, f"{topic}-tx").transaction_state == "CompleteCommit"

        produce_txn(producer, topic, [b"aborted-%d" % i for i in range(5)], commit=False)
        txn_indexes = list((broker.data_dir / f"{topic}-0").glob("*.txnindex"))
        assert txn_indexes and sum(f.stat().st_size for f in txn_indexes) > 0, "no .txnindex entry for the abort"
        broker.kill()
        broker.start()
        assert values(read_topic(broker.bootstrap, topic, "read_committed")) == first
        assert len(read_topic(broker.bootstrap, topic, "read_uncommitted")) == 15

        produce_txn(producer, topic, [b"last"])  # the same producer goes on after the restarts
        assert values(read_topic(broker.bootstrap, topic, "read_committed")) == [*first, b"last"]
        assert list_offset(broker.bootstrap, topic, 1) == list_offset(broker.bootstrap, topic, 0) == 19
    finally:
        broker.stop()


# -- 6. the admin view ----------------------------------------------------------------------------


def test_describe_producers_list_transactions_and_pending_offsets(txn_broker, unique_topic) -> None:
    bootstrap, topic, txn_id = txn_broker.bootstrap, unique_topic, f"{unique_topic}-tx"
    source, group = f"{unique_topic}-in", f"{unique_topic}-g"
    create_topics(bootstrap, **{topic: 1, source: 1})
    loader = Producer({"bootstrap.servers": bootstrap})
    for i in range(5):
        loader.produce(source, value=b"in-%d" % i, partition=0)
    assert loader.flush(TIMEOUT) == 0
    producer = txn_producer(bootstrap, txn_id)
    produce_txn(producer, topic, [b"a", b"b"])  # offsets 0, 1; marker 2
    pid = describe_txn(bootstrap, txn_id).producer_id
    assert producers(bootstrap, topic) == {pid: (0, -1)}

    member = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed",
                       "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        member.assign([TopicPartition(source, 0, OFFSET_BEGINNING)])
        consumed = []
        wait_until(lambda: consumed.extend(m for m in member.consume(10, 0.2) if m.error() is None) or len(consumed) >= 5, "the input")
        assert [m.offset() for m in consumed] == [0, 1, 2, 3, 4]

        producer.begin_transaction()
        for value in (b"c", b"d", b"e"):  # offsets 3, 4, 5
            producer.produce(topic, value=value, partition=0)
        assert producer.flush(TIMEOUT) == 0
        producer.send_offsets_to_transaction([TopicPartition(source, 0, 5)], member.consumer_group_metadata(), TIMEOUT)

        assert producers(bootstrap, topic) == {pid: (0, 3)}
        assert list_txns(bootstrap, ["Ongoing"], [pid]) == ([], {(txn_id, pid, "Ongoing")})
        assert list_txns(bootstrap, ["Ongoing", "Bogus"], [pid]) == (["Bogus"], {(txn_id, pid, "Ongoing")})
        assert list_txns(bootstrap, ["Bogus"]) == (["Bogus"], set())
        assert list_txns(bootstrap, ["CompleteCommit"], [pid]) == ([], set())
        assert list_txns(bootstrap, [], [pid], duration_ms=0) == ([], {(txn_id, pid, "Ongoing")})
        assert list_txns(bootstrap, [], [pid], duration_ms=600_000) == ([], set())
        state = describe_txn(bootstrap, txn_id)
        offsets_partition = partition_for(group, int(OVERRIDES["offsets.topic.num.partitions"]))
        assert sorted((t.topic, t.partitions) for t in state.topics) == sorted([(topic, [0]), ("__consumer_offsets", [offsets_partition])])
        # the offsets are pending in the transaction
        assert fetch_offset(bootstrap, group, source, require_stable=True) == (-1, E.UNSTABLE_OFFSET_COMMIT)
        assert fetch_offset(bootstrap, group, source, require_stable=False) == (-1, 0)

        producer.commit_transaction(TIMEOUT)
        assert producers(bootstrap, topic) == {pid: (0, -1)}
        assert list_txns(bootstrap, ["Ongoing"], [pid]) == ([], set())
        assert list_txns(bootstrap, ["CompleteCommit"], [pid]) == ([], {(txn_id, pid, "CompleteCommit")})
        assert fetch_offset(bootstrap, group, source, require_stable=True) == (5, 0)
        assert [tp.offset for tp in member.committed([TopicPartition(source, 0)], timeout=TIMEOUT)] == [5]
    finally:
        member.close()
    assert values(read_topic(bootstrap, topic, "read_committed")) == [b"a", b"b", b"c", b"d", b"e"]
