"""confluent-kafka (librdkafka) against a fastlog broker, with whatever API the running version
has: list topics (AdminClient and Consumer), produce and consume with every codec, a consumer
group committing and resuming, offsets by time, and topic admin (create, describe, alter,
create partitions, delete).

Run as `python confluent_scenario.py --bootstrap HOST:PORT`; prints one JSON line per check and
exits non-zero if any failed. Works with confluent-kafka 1.9.2 up to the newest.
"""

from __future__ import annotations

import time
import warnings
from importlib.metadata import version as installed_version
from typing import Any, Callable, Optional

import confluent_kafka
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewPartitions, NewTopic

from scenario_common import (
    BASE_TIMESTAMP_MS,
    CODECS,
    GROUP_FIRST_PART,
    GROUP_RECORDS,
    TIMESTAMPED_RECORDS,
    Record,
    Report,
    Skip,
    check_version,
    compare_records,
    expected_records,
    normalized_headers,
    parse_args,
    resumed_report,
    timestamped_times,
    unique_name,
    wait_until,
)

TIMEOUT = 15.0


class Scenario:
    """The checks, sharing one AdminClient; each client it opens is closed by the check."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    # -- helpers ---------------------------------------------------------------------------

    def create_topic(self, topic: str, partitions: int = 1, config: Optional[dict[str, str]] = None) -> None:
        futures = self.admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})], request_timeout=TIMEOUT)
        futures[topic].result(TIMEOUT)

    def consumer(self, group: str, **extra: Any) -> Consumer:
        config = {"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", **extra}
        return Consumer(config)

    def produce(self, topic: str, records: list[Record], codec: str = "none",
                timestamps: Optional[list[int]] = None) -> list[int]:
        """Produces to partition 0 and returns the offsets the deliveries reported."""
        producer = Producer({"bootstrap.servers": self.bootstrap, "compression.type": codec, "linger.ms": 5})
        delivered: list[tuple[Any, int]] = []
        for index, (key, value, headers) in enumerate(records):
            extra = {"timestamp": timestamps[index]} if timestamps else {}
            producer.produce(topic, value=value, key=key, headers=headers or None, partition=0,
                             on_delivery=lambda err, msg: delivered.append((err, msg.offset())), **extra)
        assert producer.flush(TIMEOUT) == 0, "flush left messages undelivered"
        errors = [err for err, _ in delivered if err is not None]
        assert not errors, f"delivery errors: {errors[:3]}"
        return [offset for _, offset in delivered]

    def poll_records(self, consumer: Consumer, count: int) -> list[tuple[int, Record]]:
        got: list[tuple[int, Record]] = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                raise KafkaException(msg.error())
            got.append((msg.offset(), (msg.key(), msg.value(), normalized_headers(msg.headers()))))
        return got

    def topic_names(self, list_topics: Callable[..., Any]) -> set[str]:
        return set(list_topics(timeout=TIMEOUT).topics)

    def topic_config(self, topic: str) -> dict[str, Any]:
        futures = self.admin.describe_configs([ConfigResource("topic", topic)], request_timeout=TIMEOUT)
        (future,) = futures.values()
        return future.result(TIMEOUT)

    # -- checks ----------------------------------------------------------------------------

    def client_version(self, expect_version: Optional[str], expect_librdkafka: Optional[str]) -> str:
        version = check_version(installed_version("confluent-kafka"), expect_version, "confluent-kafka")
        library = check_version(confluent_kafka.libversion()[0], expect_librdkafka, "librdkafka")
        return f"confluent-kafka {version}, librdkafka {library}"

    def list_topics_admin(self, topic: str) -> str:
        self.create_topic(topic, partitions=3)
        names = self.topic_names(self.admin.list_topics)
        assert topic in names, f"{topic} missing from AdminClient.list_topics(): {sorted(names)[:20]}"
        return f"{len(names)} topics listed, the new one included"

    def list_topics_consumer(self, topic: str) -> str:
        consumer = self.consumer(unique_name("list"))
        try:
            metadata = consumer.list_topics(timeout=TIMEOUT)
        finally:
            consumer.close()
        assert topic in metadata.topics, f"{topic} missing from Consumer.list_topics()"
        partitions = len(metadata.topics[topic].partitions)
        assert partitions == 3, f"{topic} listed with {partitions} partitions, expected 3"
        return f"{len(metadata.topics)} topics listed, the new one with its 3 partitions"

    def produce_consume(self, codec: str) -> str:
        topic = unique_name(f"codec-{codec}")
        self.create_topic(topic)
        records = expected_records()
        offsets = self.produce(topic, records, codec)
        assert sorted(offsets) == list(range(len(records))), f"delivery offsets {offsets}"
        consumer = self.consumer(unique_name("codec"))
        try:
            consumer.assign([TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
            got = self.poll_records(consumer, len(records))
        finally:
            consumer.close()
        return compare_records(records, got)

    def group_commit_resume(self) -> str:
        topic, group = unique_name("group"), unique_name("group")
        self.create_topic(topic)
        self.produce(topic, expected_records(GROUP_RECORDS))
        first = self.consumer(group)
        try:
            first.subscribe([topic])
            part = self.poll_records(first, GROUP_FIRST_PART)
            assert [o for o, _ in part] == list(range(GROUP_FIRST_PART)), f"first member read {[o for o, _ in part]}"
            first.commit(offsets=[TopicPartition(topic, 0, GROUP_FIRST_PART)], asynchronous=False)
        finally:
            first.close()
        second = self.consumer(group)
        try:
            (committed,) = second.committed([TopicPartition(topic, 0)], timeout=TIMEOUT)
            assert committed.offset == GROUP_FIRST_PART, f"committed offset {committed.offset}"
            second.subscribe([topic])
            rest = self.poll_records(second, GROUP_RECORDS - GROUP_FIRST_PART)
        finally:
            second.close()
        return resumed_report(rest)

    def offsets_for_times(self, topic: str) -> str:
        """Creates the topic with one record a second from BASE_TIMESTAMP_MS, and looks them up."""
        self.create_topic(topic)
        timestamps = timestamped_times()
        self.produce(topic, expected_records(TIMESTAMPED_RECORDS), timestamps=timestamps)
        queries = {BASE_TIMESTAMP_MS - 1: 0, BASE_TIMESTAMP_MS + 1500: 2, BASE_TIMESTAMP_MS + 4000: 4,
                   BASE_TIMESTAMP_MS + 10**7: confluent_kafka.OFFSET_END}
        consumer = self.consumer(unique_name("times"))
        try:
            # One partition per request: a request naming a partition twice is invalid.
            got = {ts: consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=TIMEOUT)[0].offset
                   for ts in queries}
        finally:
            consumer.close()
        assert got == queries, f"offsets by time {got}, expected {queries}"
        return f"timestamp -> offset {got}"

    def list_offsets_admin(self, topic: str) -> str:
        if not hasattr(self.admin, "list_offsets"):
            raise Skip("AdminClient.list_offsets arrived in confluent-kafka 2.3.0")
        from confluent_kafka.admin import OffsetSpec

        partition = TopicPartition(topic, 0)
        specs = {"earliest": OffsetSpec.earliest(), "latest": OffsetSpec.latest(),
                 "for_timestamp": OffsetSpec.for_timestamp(BASE_TIMESTAMP_MS + 1500)}
        wanted = {"earliest": 0, "latest": TIMESTAMPED_RECORDS, "for_timestamp": 2}
        got = {}
        for name, spec in specs.items():
            result = self.admin.list_offsets({partition: spec}, request_timeout=TIMEOUT)[partition].result(TIMEOUT)
            got[name] = result.offset
        assert got == wanted, f"AdminClient.list_offsets gave {got}, expected {wanted}"
        return f"offsets {got}"

    def admin_create(self, topic: str) -> str:
        self.create_topic(topic, partitions=2, config={"retention.ms": "3600000"})
        return "created with 2 partitions and retention.ms=3600000"

    def admin_describe_configs(self, topic: str) -> str:
        config = self.topic_config(topic)
        retention = config["retention.ms"]
        assert retention.value == "3600000", f"retention.ms is {retention.value}"
        assert retention.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, f"retention.ms source {retention.source}"
        assert config["cleanup.policy"].value == "delete", f"cleanup.policy {config['cleanup.policy'].value}"
        return f"{len(config)} configs; retention.ms=3600000 from the topic's overrides"

    def admin_describe_topics(self, topic: str) -> str:
        if not hasattr(self.admin, "describe_topics"):
            raise Skip("AdminClient.describe_topics arrived in confluent-kafka 2.3.0")
        from confluent_kafka import TopicCollection

        description = self.admin.describe_topics(TopicCollection([topic]), request_timeout=TIMEOUT)[topic].result(TIMEOUT)
        assert description.name == topic, description.name
        partitions = sorted(p.id for p in description.partitions)
        assert partitions == [0, 1], f"partitions {partitions}"
        return "2 partitions described"

    def admin_alter_configs(self, topic: str) -> str:
        resource = ConfigResource("topic", topic, set_config={"retention.ms": "7200000"})
        with warnings.catch_warnings():  # deprecated since 2.2 in favour of the incremental one
            warnings.simplefilter("ignore", DeprecationWarning)
            (future,) = self.admin.alter_configs([resource], request_timeout=TIMEOUT).values()
        future.result(TIMEOUT)
        value = self.topic_config(topic)["retention.ms"].value
        assert value == "7200000", f"retention.ms is {value} after alter_configs"
        return "retention.ms=7200000 after AlterConfigs"

    def admin_incremental_alter_configs(self, topic: str) -> str:
        if not hasattr(self.admin, "incremental_alter_configs"):
            raise Skip("AdminClient.incremental_alter_configs arrived in confluent-kafka 2.2.0")
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

        entry = ConfigEntry("max.message.bytes", "2000000", incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource("topic", topic, incremental_configs=[entry])
        (future,) = self.admin.incremental_alter_configs([resource], request_timeout=TIMEOUT).values()
        future.result(TIMEOUT)
        config = self.topic_config(topic)
        values = (config["max.message.bytes"].value, config["retention.ms"].value)
        assert values == ("2000000", "7200000"), f"max.message.bytes, retention.ms = {values}"
        return "max.message.bytes=2000000 set, retention.ms kept"

    def admin_create_partitions(self, topic: str) -> str:
        (future,) = self.admin.create_partitions([NewPartitions(topic, 4)], request_timeout=TIMEOUT).values()
        future.result(TIMEOUT)
        metadata = self.admin.list_topics(topic=topic, timeout=TIMEOUT)
        partitions = len(metadata.topics[topic].partitions)
        assert partitions == 4, f"{partitions} partitions after create_partitions"
        return "grown from 2 to 4 partitions"

    def admin_delete(self, topic: str) -> str:
        (future,) = self.admin.delete_topics([topic], request_timeout=TIMEOUT).values()
        future.result(TIMEOUT)
        wait_until(lambda: topic not in self.admin.list_topics(topic=None, timeout=TIMEOUT).topics, TIMEOUT,
                   "the deleted topic to leave the metadata")
        return "deleted; gone from the metadata"


def main() -> None:
    args = parse_args()
    report = Report(args.check_timeout)
    scenario = Scenario(args.bootstrap)
    report.run("client_version", lambda: scenario.client_version(args.expect_version, args.expect_librdkafka))
    listed = unique_name("list")
    report.run("list_topics.admin", lambda: scenario.list_topics_admin(listed))
    report.run("list_topics.consumer", lambda: scenario.list_topics_consumer(listed))
    for codec in CODECS:
        report.run(f"produce_consume.{codec}", lambda: scenario.produce_consume(codec))
    report.run("group_commit_resume", scenario.group_commit_resume)
    timed_topic = unique_name("times")
    report.run("offsets_for_times", lambda: scenario.offsets_for_times(timed_topic))
    report.run("offsets_for_times.admin_list_offsets", lambda: scenario.list_offsets_admin(timed_topic))
    admin_topic = unique_name("admin")
    report.run("admin.create_topic", lambda: scenario.admin_create(admin_topic))
    report.run("admin.describe_configs", lambda: scenario.admin_describe_configs(admin_topic))
    report.run("admin.describe_topics", lambda: scenario.admin_describe_topics(admin_topic))
    report.run("admin.alter_configs", lambda: scenario.admin_alter_configs(admin_topic))
    report.run("admin.incremental_alter_configs", lambda: scenario.admin_incremental_alter_configs(admin_topic))
    report.run("admin.create_partitions", lambda: scenario.admin_create_partitions(admin_topic))
    report.run("admin.delete_topic", lambda: scenario.admin_delete(admin_topic))
    report.finish()


if __name__ == "__main__":
    main()
