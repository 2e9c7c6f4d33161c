"""Consumers of one group in threads, recording what each consumed, committing after every
poll (so a partition handed to another member continues exactly where it was left)."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from kafka import KafkaConsumer

TIMEOUT = 40
GROUP_OVERRIDES = {"group.initial.rebalance.delay.ms": "0", "group.min.session.timeout.ms": "500",
                   "offsets.topic.num.partitions": "5"}


def create_topic(bootstrap: str, topic: str, partitions: int = 6) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(TIMEOUT)


def produce(bootstrap: str, topic: str, start: int, count: int, partitions: int = 6) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(start, start + count):
        producer.produce(topic, value=b"%d" % i, partition=i % partitions)
    assert producer.flush(TIMEOUT) == 0


class GroupMember(threading.Thread):
    """One consumer of the group in a thread; `log` is shared: (member, partition, offset, value)."""

    def __init__(self, name: str, client: str, bootstrap: str, topic: str, group: str, log: list, lock, **extra) -> None:
        super().__init__(daemon=True)
        self.name_, self.client, self.bootstrap, self.topic, self.group = name, client, bootstrap, topic, group
        self.log, self.lock, self.extra = log, lock, extra
        self.stop = threading.Event()
        self.assignment: set = set()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            (self._run_kafka_python if self.client == "kafka-python" else self._run_confluent)()
        except BaseException as e:  # reported by the test
            self.error = e

    def _record(self, partition: int, offset: int, value: bytes) -> None:
        with self.lock:
            self.log.append((self.name_, partition, offset, value))

    def _run_kafka_python(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group, auto_offset_reset="earliest",
            enable_auto_commit=False, session_timeout_ms=3000, heartbeat_interval_ms=300,
            max_poll_interval_ms=10_000, **self.extra,
        )
        consumer.subscribe([self.topic])
        # kafka-python 3.0.12 snapshots the subscribed topics' partitions only on a metadata
        # update after subscribe(). A leader that assigns with an empty snapshot starts a
        # second rebalance itself once the update comes, and that rebalance is lost when its
        # JoinGroup outlasts one poll(): need_rejoin() turns false as soon as the leader has
        # assigned, so no later poll awaits the SyncGroup answer, and the leader never
        # heartbeats again (seen under CPU load). A metadata fetch after subscribe() fills the
        # snapshot before the first join. topics() always asks the broker.
        consumer.topics()
        try:
            while not self.stop.is_set():
                batches = consumer.poll(timeout_ms=100)
                for tp, records in batches.items():
                    for r in records:
                        self._record(tp.partition, r.offset, r.value)
                if batches:
                    consumer.commit()
                self.assignment = {tp.partition for tp in consumer.assignment()}
        finally:
            if self.extra.get("close", True):
                consumer.close()

    def _run_confluent(self) -> None:
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": self.group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 3000, "heartbeat.interval.ms": 300,
            "topic.metadata.refresh.interval.ms": 1000, **self.extra,
        })
        # A rebalance can be served in the middle of consume(), after some of the batch's messages
        # were taken from partitions it revokes: committing in on_revoke hands those partitions
        # over at the position after them, so that the next owner does not read them again.
        consumer.subscribe([self.topic], on_revoke=lambda c, partitions: commit_consumed(c))
        try:
            while not self.stop.is_set():
                messages = consumer.consume(100, 0.1)
                for m in messages:
                    assert m.error() is None, m.error()
                    self._record(m.partition(), m.offset(), m.value())
                if messages:
                    commit_consumed(consumer)
                self.assignment = {tp.partition for tp in consumer.assignment()}
        finally:
            consumer.close()


def commit_consumed(consumer: Consumer) -> None:
    """Commits what was consumed; librdkafka's _NO_OFFSET (a local error: nothing consumed since
    the last commit, e.g. on_revoke already committed it) is not a failure."""
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as e:
        if e.args[0].code() != KafkaError._NO_OFFSET:
            raise


def wait_for(condition, timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
