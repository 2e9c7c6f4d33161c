"""Transactions with the other Python clients: kafka-python (the newest, in this interpreter),
aiokafka (the newest here and 0.8.1 in its virtualenv) and quixstreams 3.28.1's exactly-once
processing (in its virtualenv: it needs a confluent-kafka older than this interpreter's).

Each client runs consume-transform-produce: it reads an input topic, writes the transformed
records to an output topic in a transaction together with its group's offsets, commits some
transactions and aborts others. A read_committed consumer of the same library must see exactly
the committed records, once each, in order; a read_uncommitted one sees the aborted ones too (so
they were written and are filtered by the aborted-transaction index, not missing); the group's
committed offsets are those of the committed transactions only. kafka-python 2.0.2 has no
transactions and is not run.

The virtualenvs are made by `bash scripts/clients/python.sh`; one missing is a failure that
says so, as in tests/clients/test_python_clients.py.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from fastlog import protocol as P
from fastlog.protocol import ErrorCode as E
from fastlog.records import ControlType, decode_batches
from tests.broker.wire import WireClient
from tests.conftest import BrokerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
VENVS = REPO_ROOT / ".cache" / "clients" / "python"
SETUP_COMMAND = "bash scripts/clients/python.sh"
QUIX_APP = Path(__file__).with_name("quix_app.py")
OVERRIDES = {
    "transaction.state.log.num.partitions": "4",
    "offsets.topic.num.partitions": "4",
    "group.initial.rebalance.delay.ms": "0",
}
TIMEOUT = 20  # seconds, for each client call
SCRIPT_TIMEOUT_S = 150
INPUTS = [f"i{n}".encode() for n in range(5)]


@pytest.fixture(scope="module")
def txn_broker(tmp_path_factory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path_factory.mktemp("txn-clients") / "data", OVERRIDES).start()
    yield process
    process.stop()


def venv_python(name: str) -> Path:
    python = VENVS / name / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no virtualenv {name} at {python}: run `{SETUP_COMMAND}` first")
    return python


def create_topics(broker: BrokerProcess, *names: str) -> None:
    R = P.CreateTopicsRequest
    body = R(topics=[R.CreatableTopic(name=n, num_partitions=1, replication_factor=1, assignments=[], configs=[]) for n in names],
             timeout_ms=10_000)
    with WireClient(broker.bootstrap) as wire:
        assert [(t.name, t.error_code) for t in wire.request(body, 5).topics] == [(n, 0) for n in names]


def raw_batches(broker: BrokerProcess, topic: str) -> list:
    """Every batch of partition 0 (read_uncommitted), markers included."""
    R = P.FetchRequest
    body = R(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 24, isolation_level=0,
             topics=[R.FetchTopic(topic=topic, partitions=[R.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 24)])])
    with WireClient(broker.bootstrap) as wire:
        data = wire.request(body, 11).responses[0].partitions[0]
    assert data.error_code == 0
    return decode_batches(data.records or b"")


def markers_of(batches: list) -> list[str]:
    return [ControlType(b.records[0].key[3]).name for b in batches if b.is_control]


def transaction_states(broker: BrokerProcess) -> dict:
    with WireClient(broker.bootstrap) as wire:
        answer = wire.request(P.ListTransactionsRequest(state_filters=[], producer_id_filters=[], duration_filter=-1), 1)
    assert answer.error_code == 0
    return {t.transactional_id: t.transaction_state for t in answer.transaction_states}


def check_stored_transactions(broker: BrokerProcess, sink: str, data_values: list, markers: list) -> None:
    """The output topic holds `data_values` (committed and aborted) in transactional batches of
    one producer, with exactly these markers."""
    batches = raw_batches(broker, sink)
    data = [b for b in batches if not b.is_control]
    assert [r.value for b in data for r in b.records] == data_values
    assert all(b.is_transactional for b in batches)
    assert len({b.producer_id for b in batches}) == 1
    assert markers_of(batches) == markers


# -- kafka-python ----------------------------------------------------------------------------------


def kafka_python_read(broker: BrokerProcess, topic: str, isolation: str) -> list:
    """Every record a fresh kafka-python consumer reads with this isolation, to the end."""
    from kafka import KafkaConsumer, TopicPartition

    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level=isolation, enable_auto_commit=False,
                             auto_offset_reset="earliest", request_timeout_ms=TIMEOUT * 1000)
    try:
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]  # the last stable offset for read_committed
        values: list = []
        deadline = time.monotonic() + TIMEOUT
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values += [r.value for r in records]
        assert consumer.position(tp) == end, f"read {values} of {topic} in {TIMEOUT}s, stopped short of {end}"
        return values
    finally:
        consumer.close()


def test_kafka_python_consume_transform_produce(txn_broker, unique_topic) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import KafkaError, ProducerFencedError
    from kafka.structs import OffsetAndMetadata

    source, sink, group, tid = f"{unique_topic}-in", f"{unique_topic}-out", f"{unique_topic}-g", f"{unique_topic}-txn"
    create_topics(txn_broker, source, sink)
    src = TopicPartition(source, 0)
    plain = KafkaProducer(bootstrap_servers=txn_broker.bootstrap)
    for value in INPUTS:
        plain.send(source, value, partition=0)
    plain.flush(TIMEOUT)
    plain.close(TIMEOUT)

    consumer = KafkaConsumer(source, bootstrap_servers=txn_broker.bootstrap, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", isolation_level="read_committed")
    producer = KafkaProducer(bootstrap_servers=txn_broker.bootstrap, transactional_id=tid, request_timeout_ms=TIMEOUT * 1000)
    try:
        consumed: list = []
        deadline = time.monotonic() + TIMEOUT
        while len(consumed) < len(INPUTS) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                consumed += records
        assert [r.value for r in consumed] == INPUTS

        def transform(records, commit: bool) -> None:
            producer.begin_transaction()
            for record in records:
                producer.send(sink, b"o" + record.value[1:], partition=0)
            offsets = {src: OffsetAndMetadata(records[-1].offset + 1, "", -1)}
            producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
            producer.flush(TIMEOUT)  # written before the decision, even those aborted
            if commit:
                producer.commit_transaction()
            else:
                producer.abort_transaction()

        producer.init_transactions()
        transform(consumed[:3], commit=True)
        assert consumer.committed(src) == 3
        transform(consumed[3:], commit=False)
        assert consumer.committed(src) == 3  # the aborted transaction's offsets did not take
        transform(consumed[3:], commit=True)
        assert consumer.committed(src) == 5

        # a second producer of the same transactional id fences the first
        usurper = KafkaProducer(bootstrap_servers=txn_broker.bootstrap, transactional_id=tid, request_timeout_ms=TIMEOUT * 1000)
        try:
            usurper.init_transactions()
            producer.begin_transaction()
            zombie = producer.send(sink, b"zombie", partition=0)
            with pytest.raises(ProducerFencedError):
                producer.commit_transaction()
            with pytest.raises(KafkaError):
                zombie.get(TIMEOUT)
        finally:
            usurper.close(TIMEOUT)
    finally:
        producer.close(TIMEOUT)
        consumer.close()

    expected = [b"o0", b"o1", b"o2", b"o3", b"o4"]
    assert kafka_python_read(txn_broker, sink, "read_committed") == expected
    assert kafka_python_read(txn_broker, sink, "read_uncommitted") == [b"o0", b"o1", b"o2", b"o3", b"o4", b"o3", b"o4"]
    check_stored_transactions(txn_broker, sink, [b"o0", b"o1", b"o2", b"o3", b"o4", b"o3", b"o4"], ["COMMIT", "ABORT", "COMMIT"])
    assert transaction_states(txn_broker)[tid] == "Empty"  # the usurper's, with no transaction of its own yet


# -- aiokafka (a script run by the newest here and by 0.8.1 in its venv) ---------------------------


async def aiokafka_scenario(bootstrap: str, source: str, sink: str, group: str, tid: str) -> dict:
    """Consume-transform-produce with aiokafka: commit, abort, commit, and the group's committed
    offset after each; how the producer fails once another of its transactional id starts; then
    what read_committed and read_uncommitted consumers read back.
    Self-contained (its source is run as a script in another interpreter)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    timeout = 20
    src, dst = TopicPartition(source, 0), TopicPartition(sink, 0)
    result: dict = {"committed": []}

    plain = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await plain.start()
    try:
        for n in range(5):
            await plain.send_and_wait(source, f"i{n}".encode(), partition=0)
    finally:
        await plain.stop()

    async def read(isolation: str) -> list:
        """Every record of the output, read by a consumer of no group to the end."""
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation, auto_offset_reset="earliest")
        await consumer.start()
        try:
            tp = dst
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            values: list = []
            deadline = asyncio.get_running_loop().time() + timeout
            while await consumer.position(tp) < end and asyncio.get_running_loop().time() < deadline:
                for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                    values += [(r.offset, r.value.decode()) for r in records]
            assert await consumer.position(tp) == end, (values, end)
            return values
        finally:
            await consumer.stop()

    class Aborted(Exception):
        pass

    # the input, read by a member of the group, which stays in it while the producer commits
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group, isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        inputs: list = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(inputs) < 5 and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                inputs += [(r.offset, r.value.decode()) for r in records]
        assert [v for _, v in inputs] == [f"i{n}" for n in range(5)], inputs
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid, request_timeout_ms=timeout * 1000)
        await producer.start()
        try:
            for chunk, commit in ((inputs[:3], True), (inputs[3:], False), (inputs[3:], True)):
                try:
                    async with producer.transaction():
                        for _, value in chunk:
                            await producer.send_and_wait(sink, ("o" + value[1:]).encode(), partition=0)
                        await producer.send_offsets_to_transaction({src: chunk[-1][0] + 1}, group)
                        if not commit:
                            raise Aborted()  # the context manager aborts the transaction
                except Aborted:
                    pass
                result["committed"].append(await consumer.committed(src))
            # a second producer of the transactional id fences the first
            usurper = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid, request_timeout_ms=timeout * 1000)
            await usurper.start()
            try:
                async with producer.transaction():
                    await asyncio.wait_for(producer.send_and_wait(sink, b"zombie", partition=0), timeout)
                result["fenced"] = None
            except Exception as e:
                result["fenced"] = type(e).__name__
            finally:
                await usurper.stop()
        finally:
            await producer.stop()
    finally:
        await consumer.stop()
    result["read_committed"] = [v for _, v in await read("read_committed")]
    result["read_uncommitted"] = [v for _, v in await read("read_uncommitted")]
    return result


def run_aiokafka(python: Path, broker: BrokerProcess, names: tuple, tmp_path: Path) -> dict:
    script = tmp_path / "aiokafka_txn.py"
    args = ", ".join(repr(a) for a in (broker.bootstrap, *names))
    script.write_text(f"{inspect.getsource(aiokafka_scenario)}\n\n"
                      f"import asyncio, json\nprint(json.dumps(asyncio.run(aiokafka_scenario({args}))))\n")
    run = subprocess.run([str(python), str(script)], capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S, cwd=tmp_path)
    assert run.returncode == 0, f"{python} {script} exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("venv", [None, "aiokafka-0.8.1"], ids=["aiokafka-newest", "aiokafka-0.8.1"])
def test_aiokafka_consume_transform_produce(txn_broker, unique_topic, tmp_path, venv) -> None:
    python = Path(sys.executable) if venv is None else venv_python(venv)
    names = (f"{unique_topic}-in", f"{unique_topic}-out", f"{unique_topic}-g", f"{unique_topic}-txn")
    create_topics(txn_broker, names[0], names[1])
    result = run_aiokafka(python, txn_broker, names, tmp_path)
    assert result == {
        "committed": [3, 3, 5],
        "fenced": "ProducerFenced",
        "read_committed": ["o0", "o1", "o2", "o3", "o4"],
        "read_uncommitted": ["o0", "o1", "o2", "o3", "o4", "o3", "o4"],
    }
    check_stored_transactions(txn_broker, names[1], [b"o0", b"o1", b"o2", b"o3", b"o4", b"o3", b"o4"], ["COMMIT", "ABORT", "COMMIT"])
    assert transaction_states(txn_broker)[names[3]] == "Empty"  # the usurper's, with no transaction of its own yet


# -- quixstreams ---------------------------------------------------------------------------------


def produce_json(broker: BrokerProcess, topic: str, numbers: range) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for n in numbers:
        producer.produce(topic, json.dumps({"n": n}).encode(), partition=0)
    assert producer.flush(TIMEOUT) == 0


def read_committed_json(broker: BrokerProcess, topic: str) -> list:
    """Every value of partition 0 a read_committed confluent-kafka consumer reads, to the end."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        values: list = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                values.append(json.loads(message.value()))
            position = consumer.position([TopicPartition(topic, 0)])[0].offset
            if position >= end:
                break
        assert position == end, f"read {values} of {topic} in {TIMEOUT}s, stopped short of {end}"
        return values
    finally:
        consumer.close()


def committed_offset(broker: BrokerProcess, group: str, topic: str) -> int:
    R = P.OffsetFetchRequest
    body = R(group_id=group, topics=[R.OffsetFetchRequestTopic(name=topic, partition_indexes=[0])], require_stable=True)
    with WireClient(broker.bootstrap) as wire:
        answer = wire.request(body, 7)
    partition = answer.topics[0].partitions[0]
    assert (answer.error_code, partition.error_code) == (0, 0), (E(answer.error_code).name, E(partition.error_code).name)
    return partition.committed_offset


def run_quix(broker: BrokerProcess, names: tuple, tmp_path: Path, count: int, *extra: str) -> subprocess.CompletedProcess:
    source, sink, group = names
    args = [str(venv_python("quixstreams-3.28.1")), str(QUIX_APP), "--broker", broker.bootstrap, "--input", source,
            "--output", sink, "--group", group, "--count", str(count), "--timeout", "20", *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S, cwd=tmp_path)


def test_quixstreams_exactly_once(txn_broker, unique_topic, tmp_path) -> None:
    names = source, sink, group = f"{unique_topic}-in", f"{unique_topic}-out", f"{unique_topic}-g"
    create_topics(txn_broker, source, sink)
    produce_json(txn_broker, source, range(10))

    # a checkpoint every 5 inputs: 0-4 are committed, then input 7 fails the application,
    # which aborts the transaction holding 5 and 6
    failed = run_quix(txn_broker, names, tmp_path, 10, "--commit-every", "5", "--fail-at", "7")
    assert failed.returncode != 0 and "ValueError: poison 7" in failed.stderr, f"{failed.stdout}\n{failed.stderr}"
    assert read_committed_json(txn_broker, sink) == [{"n": n, "square": n * n} for n in range(5)]
    assert committed_offset(txn_broker, group, source) == 5

    # the next run resumes from the committed offsets: 5-9, each once, whatever the aborted
    # transaction left in the log
    produce_json(txn_broker, source, range(10, 12))
    resumed = run_quix(txn_broker, names, tmp_path, 7)
    assert resumed.returncode == 0, f"{resumed.stdout}\n{resumed.stderr}"
    assert json.loads(resumed.stdout.strip().splitlines()[-1]) == {"outputs": list(range(5, 12))}
    assert read_committed_json(txn_broker, sink) == [{"n": n, "square": n * n} for n in range(12)]
    assert committed_offset(txn_broker, group, source) == 12

    batches = raw_batches(txn_broker, sink)
    assert all(b.is_transactional for b in batches)
    # one transaction per checkpoint; the failed run's last one aborted, with its ABORT marker
    # here when the producer had added the partition before the abort purged 5 and 6 (timing)
    markers = markers_of(batches)
    assert markers in (["COMMIT", "COMMIT"], ["COMMIT", "ABORT", "COMMIT"]), markers
    aborted_values = [json.loads(r.value)["n"] for b in batches if not b.is_control for r in b.records][5:-7]
    assert aborted_values in ([], [5], [5, 6]), aborted_values
    assert not aborted_values or "ABORT" in markers, (markers, aborted_values)
