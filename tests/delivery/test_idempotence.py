"""Idempotent producers: librdkafka with `enable.idempotence=true` through injected failures
(connections cut every 50-200 ms, in the middle of requests and responses, and a broker restart
or SIGKILL mid-stream) delivers every message exactly once and in order; and the broker's
sequence checks over the wire, with their error codes, across a restart and a crash.

The chaos tests go through `ChaosProxy` (tests/delivery/proxy.py): the broker advertises the
proxy's port, so every connection a client makes after bootstrap goes through it too.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fastlog import protocol as P
from fastlog.protocol import ErrorCode as E
from fastlog.records import Record, encode_batch
from tests.broker.wire import WireClient
from tests.conftest import BrokerProcess
from tests.delivery.proxy import ChaosProxy

MESSAGES = 20_000
PARTITIONS = 3
PRODUCE_SECONDS = 8  # production is paced over this long, so the cuts hit many requests
SEED = int(os.environ.get("FASTLOG_CHAOS_SEED", "20261125"))  # when the proxy cuts, and how


def create_topic(bootstrap: str, topic: str, partitions: int, config: dict | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})]).values():
        future.result(20)


class LibrdkafkaLog(logging.Handler):
    """librdkafka's debug lines (delivered by poll()), kept for the report and for failures."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def chaos_broker(tmp_path, overrides=None) -> tuple[BrokerProcess, ChaosProxy]:
    broker = BrokerProcess(tmp_path / "data", overrides)
    proxy = ChaosProxy(broker.port, seed=SEED).start()
    broker.overrides["advertised.listeners"] = f"PLAINTEXT://{proxy.bootstrap}"
    try:
        broker.start()
    except BaseException:
        proxy.close()
        raise
    return broker, proxy


# The SIGKILL run also has the producer compress with lz4 into a zstd topic, so the batches the
# broker checks are re-encoded before they are stored.
@pytest.mark.parametrize(("failure", "codec", "topic_codec"), [("restart", "none", "producer"), ("sigkill", "lz4", "zstd")])
def test_librdkafka_idempotent_producer_exactly_once_in_order_through_cuts(tmp_path, failure, codec, topic_codec) -> None:
    overrides = {"log.flush.interval.messages": "1"} if failure == "sigkill" else {}
    broker, proxy = chaos_broker(tmp_path, overrides)
    topic = f"idem-{failure}"
    debug_log = LibrdkafkaLog()
    logger = logging.getLogger(f"librdkafka-{failure}")
    logger.propagate = False
    logger.addHandler(debug_log)
    logger.setLevel(logging.DEBUG)
    stats: list[dict] = []
    errors: list[KafkaError] = []
    reports: list[tuple[int, int, object, int]] = []  # (partition, sequence, error, offset)
    failure_thread_error: list[BaseException] = []
    producer = None
    try:
        create_topic(proxy.bootstrap, topic, PARTITIONS, {"compression.type": topic_codec})
        producer = Producer(
            {
                "compression.type": codec,
                "bootstrap.servers": proxy.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "max.in.flight.requests.per.connection": 5,
                "message.timeout.ms": 60_000,
                "request.timeout.ms": 10_000,
                "linger.ms": 2,
                "batch.num.messages": 100,
                "retry.backoff.ms": 20,
                "retry.backoff.max.ms": 200,
                "reconnect.backoff.ms": 10,
                "reconnect.backoff.max.ms": 200,
                # librdkafka >= 2.10 re-bootstraps whenever all brokers are down: with one broker
                # that is every cut, and it then forgets the broker and needs new metadata before
                # producing again, so with a cut every 50-200 ms it hardly ever produces.
                "metadata.recovery.strategy": "none",
                "statistics.interval.ms": 200,
                "stats_cb": lambda s: stats.append(json.loads(s)),
                "error_cb": errors.append,
                "debug": "eos",
            },
            logger=logger,
        )

        def on_delivery(err, msg) -> None:
            reports.append((msg.partition(), int(msg.value()), err, msg.offset()))

        held: list[int] = []

        def fail_broker() -> None:
            # The broker appends what arrives during the hold but none of its answers gets
            # through; then it stops (SIGTERM or SIGKILL) and the connections are cut. The client
            # must send those batches again to the restarted broker, which has to recognise them
            # from its snapshot (clean stop) or by replaying the log (SIGKILL).
            try:
                proxy.chaos(False)
                proxy.hold(True)
                time.sleep(0.3)
                before = proxy.stats().get("produce_responses_withheld", 0)
                broker.stop(signal.SIGTERM if failure == "restart" else signal.SIGKILL)
                proxy.cut()
                held.append(proxy.stats().get("produce_responses_withheld", 0) - before)
                broker.start()
                proxy.chaos(True)
            except BaseException as e:
                failure_thread_error.append(e)

        proxy.chaos(True)
        failer = threading.Thread(target=fail_broker, name="fail-broker")
        start = time.monotonic()
        for i in range(MESSAGES):
            if i == MESSAGES // 2:
                failer.start()
            producer.produce(topic, b"%d" % i, key=b"p%d" % (i % PARTITIONS), partition=i % PARTITIONS, on_delivery=on_delivery)
            if i % 50 == 0:
                producer.poll(0)
                ahead = start + PRODUCE_SECONDS * i / MESSAGES - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        failer.join(40)
        assert not failer.is_alive() and not failure_thread_error, failure_thread_error
        remaining = producer.flush(40)
        produce_seconds = time.monotonic() - start
        proxy.chaos(False)
        producer.poll(0.5)  # the last statistics
        fatal = [e for e in errors if e.fatal()]
        assert not fatal, f"librdkafka fatal error: {fatal}\n" + "\n".join(debug_log.lines[-40:])
        assert remaining == 0, f"{remaining} messages undelivered after flush"
        failed = [(p, s, err) for p, s, err, _ in reports if err is not None]
        assert not failed, f"{len(failed)} failed deliveries, e.g. {failed[:5]}"
        assert sorted(s for _, s, _, _ in reports) == list(range(MESSAGES))
        for p in range(PARTITIONS):
            by_offset = sorted((o, s) for q, s, _, o in reports if q == p)
            assert [s for _, s in by_offset] == list(range(p, MESSAGES, PARTITIONS)), f"partition {p}: offsets out of order"
            assert [o for o, _ in by_offset] == list(range(len(by_offset))), f"partition {p}: offsets not dense"

        got = consume_all(proxy.bootstrap, topic)
        for p in range(PARTITIONS):
            assert got[p] == list(range(p, MESSAGES, PARTITIONS)), f"partition {p}: consumed {len(got[p])} messages, not exactly once in order"

        # The broker's side: it answered success for more records than the log holds (the
        # duplicates it recognised), and the log holds exactly what was produced.
        counts = proxy.stats()
        high_watermarks = watermarks(proxy.bootstrap, topic)
        assert sum(high_watermarks) == MESSAGES, high_watermarks
        final = stats[-1]
        # librdkafka puts the messages of a request lost with its connection back in the
        # partition's queue and sends them again in a new request (not counted as txretries).
        brokers = [b for b in final["brokers"].values() if b["nodeid"] >= 0]
        librdkafka = {
            "txmsgs": final["txmsgs"],
            "txretries": sum(b["txretries"] for b in brokers),
            "disconnects": sum(b["disconnects"] for b in brokers),
            "req_timeouts": sum(b["req_timeouts"] for b in brokers),
            "eos": final.get("eos", {}),
        }
        summary = (
            f"{failure}: produced {MESSAGES} in {produce_seconds:.1f}s; "
            f"{counts['produce_records_acked'] - MESSAGES} duplicate records acknowledged and dropped; {held} produce responses held back at the "
            f"{failure}; proxy {counts}; "
            f"librdkafka {librdkafka}; high watermarks {high_watermarks}"
        )
        print(summary)
        print("\n".join(line for line in debug_log.lines if line.startswith(("IDEMPSTATE", "GETPID")) or "bump" in line.lower()))
        assert not [k for k in counts if k.startswith("produce_error_")], summary
        # Whether responses were in flight at the very moment of the restart/kill depends on
        # timing (helper-8 saw 1 in 4 runs with none); the cuts below always withhold some.
        assert counts["cuts"] >= 20, summary
        assert counts.get("produce_responses_withheld", 0) > 0, summary
        assert counts["produce_records_acked"] > MESSAGES, summary
    finally:
        logger.removeHandler(debug_log)
        if producer is not None:
            producer.purge()  # nothing left on success; on failure, no wait for timeouts
        proxy.chaos(False)
        if broker.process and broker.process.poll() is None:
            broker.stop()
        proxy.close()
    refused = [line for line in broker.log_text().splitlines() if "refused produce" in line]
    assert not refused, "\n".join(refused[:20])


def consume_all(bootstrap: str, topic: str) -> dict[int, list[int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "idem-check", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    total = 0
    deadline = time.monotonic() + 30
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(5000, 0.3):
                assert msg.error() is None, msg.error()
                got[msg.partition()].append(int(msg.value()))
                total += 1
            if total >= MESSAGES:
                # Keep polling a little: any record beyond MESSAGES would be a duplicate.
                quiet_until = quiet_until or time.monotonic() + 1.0
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    return got


def watermarks(bootstrap: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "idem-wm"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)]
    finally:
        consumer.close()


# -- over the wire -----------------------------------------------------------------------------


def batch(pid: int, epoch: int, seq: int, count: int, tag: str = "v") -> bytes:
    records = [Record(offset=i, timestamp=1_700_000_000_000 + i, key=None, value=f"{tag}{seq + i}".encode()) for i in range(count)]
    return encode_batch(records, producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def produce(client: WireClient, topic: str, records: bytes):
    PR = P.ProduceRequest
    body = PR(
        transactional_id=None,
        acks=-1,
        timeout_ms=10_000,
        topic_data=[PR.TopicProduceData(name=topic, partition_data=[PR.PartitionProduceData(index=0, records=records)])],
    )
    return client.request(body, 9).responses[0].partition_responses[0]


def high_watermark(client: WireClient, topic: str) -> int:
    LO = P.ListOffsetsRequest
    body = LO(
        replica_id=-1,
        isolation_level=0,
        topics=[LO.ListOffsetsTopic(name=topic, partitions=[LO.ListOffsetsPartition(partition_index=0, current_leader_epoch=-1, timestamp=-1)])],
    )
    part = client.request(body, 7).topics[0].partitions[0]
    assert part.error_code == 0
    return part.offset


def init_producer_id(client: WireClient, pid: int = -1, epoch: int = -1):
    response = client.request(
        P.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000, producer_id=pid, producer_epoch=epoch), 4
    )
    assert response.error_code == 0
    return response.producer_id, response.producer_epoch


def test_sequence_checks_over_the_wire_survive_restart_and_crash(tmp_path) -> None:
    broker = BrokerProcess(tmp_path / "data").start()
    topic = "idem-wire"
    try:
        create_topic(broker.bootstrap, topic, 1)
        with WireClient(broker.bootstrap) as c:
            pid, epoch = init_producer_id(c)
            assert pid >= 0 and epoch == 0

            first = produce(c, topic, batch(pid, 0, 0, 3))
            assert (first.error_code, first.base_offset) == (0, 0)
            assert high_watermark(c, topic) == 3
            again = produce(c, topic, batch(pid, 0, 0, 3))
            assert (again.error_code, again.base_offset) == (0, 0), "a duplicate is answered with its original offset"
            assert high_watermark(c, topic) == 3, "a duplicate is not written again"
            second = produce(c, topic, batch(pid, 0, 3, 2))
            assert (second.error_code, second.base_offset) == (0, 3)
            assert produce(c, topic, batch(pid, 0, 0, 3)).base_offset == 0, "still one of the last five batches"
            assert high_watermark(c, topic) == 5

            gap = produce(c, topic, batch(pid, 0, 10, 1))
            assert gap.error_code == E.OUT_OF_ORDER_SEQUENCE_NUMBER
            unknown = produce(c, topic, batch(pid + 1_000_000, 0, 7, 1))
            assert unknown.error_code == E.UNKNOWN_PRODUCER_ID
            assert high_watermark(c, topic) == 5

            # Without a transactional id, Kafka hands out a new id whatever the request carries.
            again_pid, again_epoch = init_producer_id(c, pid, epoch)
            assert again_pid != pid and again_epoch == 0
            bad_start = produce(c, topic, batch(pid, 1, 5, 1))
            assert bad_start.error_code == E.OUT_OF_ORDER_SEQUENCE_NUMBER, "a new epoch starts at sequence 0"
            bumped = produce(c, topic, batch(pid, 1, 0, 1, "e1-"))
            assert (bumped.error_code, bumped.base_offset) == (0, 5)
            stale = produce(c, topic, batch(pid, 0, 5, 1))
            assert stale.error_code == E.INVALID_PRODUCER_EPOCH

            two = produce(c, topic, batch(pid, 1, 1, 1) + batch(pid, 1, 2, 1))
            assert two.error_code == E.INVALID_RECORD
            assert high_watermark(c, topic) == 6

        broker.restart()  # clean: the state comes back from the snapshot written at close
        with WireClient(broker.bootstrap) as c:
            assert high_watermark(c, topic) == 6
            dup = produce(c, topic, batch(pid, 1, 0, 1, "e1-"))
            assert (dup.error_code, dup.base_offset) == (0, 5), "duplicate recognised after a restart"
            assert produce(c, topic, batch(pid, 0, 5, 1)).error_code == E.INVALID_PRODUCER_EPOCH
            nxt = produce(c, topic, batch(pid, 1, 1, 2))
            assert (nxt.error_code, nxt.base_offset) == (0, 6)
            assert high_watermark(c, topic) == 8

        broker.kill()  # no snapshot at close: the state is rebuilt by replaying batch headers
        broker.start()
        with WireClient(broker.bootstrap) as c:
            assert high_watermark(c, topic) == 8
            dup = produce(c, topic, batch(pid, 1, 1, 2))
            assert (dup.error_code, dup.base_offset) == (0, 6), "duplicate recognised after a crash"
            assert produce(c, topic, batch(pid, 1, 0, 1, "e1-")).base_offset == 5
            assert produce(c, topic, batch(pid, 1, 4, 1)).error_code == E.OUT_OF_ORDER_SEQUENCE_NUMBER
            assert high_watermark(c, topic) == 8
            fresh_pid, fresh_epoch = init_producer_id(c)
            assert fresh_pid != pid and fresh_epoch == 0, "ids are not handed out twice across restarts"
    finally:
        broker.stop()
