"""kafka-python against a fastlog broker, with whatever API the running version has: list topics
(KafkaConsumer.topics and KafkaAdminClient.list_topics), produce and consume with every codec, a
consumer group committing and resuming, offsets by time, and topic admin (create, describe
configs and topics, alter configs, incremental alter where there is one, create partitions,
delete).

kafka-python 2.0.2's admin client hands back raw protocol responses (errors are not raised);
3.x's hands back dicts and raises. The helpers below read either.

Run as `python kafka_python_scenario.py --bootstrap HOST:PORT`; prints one JSON line per check
and exits non-zero if any failed.
"""

from __future__ import annotations

import time
from importlib.metadata import version as installed_version
from typing import Any, Optional

import kafka.codec
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.structs import OffsetAndMetadata, TopicPartition

from scenario_common import (
    BASE_TIMESTAMP_MS,
    CODECS,
    DYNAMIC_TOPIC_CONFIG,
    GROUP_FIRST_PART,
    GROUP_RECORDS,
    TIMESTAMPED_RECORDS,
    Record,
    Report,
    Skip,
    assert_no_errors,
    check_version,
    compare_records,
    configs_from_response,
    expected_records,
    normalized_headers,
    parse_args,
    resumed_report,
    timestamped_times,
    unique_name,
    wait_until,
)

TIMEOUT = 15.0
TIMEOUT_MS = int(TIMEOUT * 1000)


def offset_and_metadata(offset: int) -> OffsetAndMetadata:
    """kafka-python 3 added leader_epoch to OffsetAndMetadata."""
    if "leader_epoch" in OffsetAndMetadata._fields:
        return OffsetAndMetadata(offset, "", -1)
    return OffsetAndMetadata(offset, "")


class Scenario:
    """The checks, sharing one KafkaAdminClient; each client a check opens, it closes."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)

    # -- helpers ---------------------------------------------------------------------------

    def create_topic(self, topic: str, partitions: int = 1, config: Optional[dict[str, str]] = None) -> None:
        new_topic = NewTopic(topic, partitions, 1, topic_configs=config or {})
        assert_no_errors(self.admin.create_topics([new_topic], timeout_ms=TIMEOUT_MS))

    def consumer(self, group: Optional[str] = None, **extra: Any) -> KafkaConsumer:
        return KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", request_timeout_ms=TIMEOUT_MS + 1000, **extra)

    def produce(self, topic: str, records: list[Record], codec: str = "none",
                timestamps: Optional[list[int]] = None) -> list[int]:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, request_timeout_ms=TIMEOUT_MS,
                                 compression_type=None if codec == "none" else codec)
        try:
            futures = [producer.send(topic, value=value, key=key, headers=headers, partition=0,
                                     timestamp_ms=timestamps[i] if timestamps else None)
                       for i, (key, value, headers) in enumerate(records)]
            producer.flush(TIMEOUT)
            return [future.get(TIMEOUT).offset for future in futures]
        finally:
            producer.close(TIMEOUT)

    def poll_records(self, consumer: KafkaConsumer, count: int) -> list[tuple[int, Record]]:
        got: list[tuple[int, Record]] = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got += [(r.offset, (r.key, r.value, normalized_headers(r.headers))) for r in records]
        return got

    def topic_configs(self, topic: str) -> dict[str, tuple[str, Any]]:
        """name -> (value, source) from DescribeConfigs, in either version's shape."""
        result = self.admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        result = assert_no_errors(result)
        if "resources" in result:  # 2.0.2: the raw response
            return configs_from_response(result)
        return {name: (entry["value"], entry["config_source"]) for name, entry in result["topic"][topic].items()}

    # -- checks ----------------------------------------------------------------------------

    def client_version(self, expect_version: Optional[str]) -> str:
        """The version, and the broker version the client inferred from ApiVersions."""
        client = check_version(installed_version("kafka-python"), expect_version, "kafka-python")
        consumer = self.consumer()
        try:
            inferred = consumer.config.get("api_version")
        finally:
            consumer.close()
        return f"kafka-python {client}, takes the broker for Kafka {inferred}"

    def list_topics_admin(self, topic: str) -> str:
        self.create_topic(topic, partitions=3)
        names = self.admin.list_topics()
        assert topic in names, f"{topic} missing from KafkaAdminClient.list_topics(): {sorted(names)[:20]}"
        return f"{len(names)} topics listed, the new one included"

    def list_topics_consumer(self, topic: str) -> str:
        consumer = self.consumer()
        try:
            names = consumer.topics()
            partitions = consumer.partitions_for_topic(topic)
        finally:
            consumer.close()
        assert topic in names, f"{topic} missing from KafkaConsumer.topics()"
        assert partitions == {0, 1, 2}, f"{topic} has partitions {partitions}"
        return f"{len(names)} topics listed, the new one with its 3 partitions"

    def produce_consume(self, codec: str) -> str:
        has_library = getattr(kafka.codec, f"has_{codec}", lambda: True)
        assert has_library(), (f"kafka-python finds no {codec} library in this interpreter: "
                               "run `bash scripts/clients/python.sh` (python-snappy, lz4, zstandard)")
        topic = unique_name(f"codec-{codec}")
        self.create_topic(topic)
        records = expected_records()
        offsets = self.produce(topic, records, codec)
        assert offsets == list(range(len(records))), f"send offsets {offsets}"
        consumer = self.consumer()
        try:
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            consumer.seek_to_beginning(partition)
            got = self.poll_records(consumer, len(records))
        finally:
            consumer.close()
        return compare_records(records, got)

    def group_commit_resume(self) -> str:
        topic, group = unique_name("group"), unique_name("group")
        partition = TopicPartition(topic, 0)
        self.create_topic(topic)
        self.produce(topic, expected_records(GROUP_RECORDS))
        first = self.consumer(group, max_poll_records=GROUP_FIRST_PART)
        try:
            first.subscribe([topic])
            first.topics()  # metadata after subscribe(): see tests/groups/helpers.py
            part = self.poll_records(first, GROUP_FIRST_PART)[:GROUP_FIRST_PART]
            assert [o for o, _ in part] == list(range(GROUP_FIRST_PART)), f"first member read {[o for o, _ in part]}"
            first.commit({partition: offset_and_metadata(GROUP_FIRST_PART)})
        finally:
            first.close()
        second = self.consumer(group)
        try:
            committed = second.committed(partition)
            assert committed == GROUP_FIRST_PART, f"committed offset {committed}"
            second.subscribe([topic])
            second.topics()
            rest = self.poll_records(second, GROUP_RECORDS - GROUP_FIRST_PART)
        finally:
            second.close()
        return resumed_report(rest)

    def offsets_for_times(self, topic: str) -> str:
        """Creates the topic with one record a second from BASE_TIMESTAMP_MS, and looks them up."""
        self.create_topic(topic)
        timestamps = timestamped_times()
        self.produce(topic, expected_records(TIMESTAMPED_RECORDS), timestamps=timestamps)
        queries = {BASE_TIMESTAMP_MS - 1: (0, BASE_TIMESTAMP_MS), BASE_TIMESTAMP_MS + 1500: (2, BASE_TIMESTAMP_MS + 2000),
                   BASE_TIMESTAMP_MS + 4000: (4, BASE_TIMESTAMP_MS + 4000), BASE_TIMESTAMP_MS + 10**7: None}
        partition = TopicPartition(topic, 0)
        consumer = self.consumer()
        try:
            found = {ts: consumer.offsets_for_times({partition: ts})[partition] for ts in queries}
        finally:
            consumer.close()
        got = {ts: None if hit is None else (hit.offset, hit.timestamp) for ts, hit in found.items()}
        assert got == queries, f"offsets by time {got}, expected {queries}"
        return f"timestamp -> (offset, timestamp) {got}"

    def admin_create(self, topic: str) -> str:
        self.create_topic(topic, partitions=2, config={"retention.ms": "3600000"})
        return "created with 2 partitions and retention.ms=3600000"

    def admin_describe_configs(self, topic: str) -> str:
        configs = self.topic_configs(topic)
        value, source = configs["retention.ms"]
        assert value == "3600000", f"retention.ms is {value}"
        assert source in (DYNAMIC_TOPIC_CONFIG, "DYNAMIC_TOPIC_CONFIG"), f"retention.ms source {source}"
        return f"{len(configs)} configs; retention.ms=3600000 from the topic's overrides"

    def admin_describe_topics(self, topic: str) -> str:
        (description,) = self.admin.describe_topics([topic])
        assert description.get("error_code", 0) == 0, description
        name = description.get("topic", description.get("name"))
        assert name == topic, name
        partitions = sorted(p.get("partition", p.get("partition_index")) for p in description["partitions"])
        assert partitions == [0, 1], f"partitions {partitions}"
        return "2 partitions described"

    def admin_alter_configs(self, topic: str) -> str:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "7200000"})
        if "incremental" in KafkaAdminClient.alter_configs.__code__.co_varnames:
            assert_no_errors(self.admin.alter_configs([resource], incremental=False))
        else:
            assert_no_errors(self.admin.alter_configs([resource]))
        value, _ = self.topic_configs(topic)["retention.ms"]
        assert value == "7200000", f"retention.ms is {value} after alter_configs"
        return "retention.ms=7200000 after AlterConfigs"

    def admin_incremental_alter_configs(self, topic: str) -> str:
        if "incremental" not in KafkaAdminClient.alter_configs.__code__.co_varnames:
            raise Skip("kafka-python before 2.1 has no IncrementalAlterConfigs (alter_configs(incremental=True))")
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": "2000000"})
        assert_no_errors(self.admin.alter_configs([resource], incremental=True))
        configs = self.topic_configs(topic)
        values = (configs["max.message.bytes"][0], configs["retention.ms"][0])
        assert values == ("2000000", "7200000"), f"max.message.bytes, retention.ms = {values}"
        return "max.message.bytes=2000000 set, retention.ms kept"

    def admin_create_partitions(self, topic: str) -> str:
        assert_no_errors(self.admin.create_partitions({topic: NewPartitions(4)}, timeout_ms=TIMEOUT_MS))
        (description,) = self.admin.describe_topics([topic])
        partitions = len(description["partitions"])
        assert partitions == 4, f"{partitions} partitions after create_partitions"
        return "grown from 2 to 4 partitions"

    def admin_delete(self, topic: str) -> str:
        assert_no_errors(self.admin.delete_topics([topic], timeout_ms=TIMEOUT_MS))
        wait_until(lambda: topic not in self.admin.list_topics(), TIMEOUT, "the deleted topic to leave the metadata")
        return "deleted; gone from the metadata"


def main() -> None:
    args = parse_args()
    report = Report(args.check_timeout)
    scenario = Scenario(args.bootstrap)
    report.run("client_version", lambda: scenario.client_version(args.expect_version))
    listed = unique_name("list")
    report.run("list_topics.admin", lambda: scenario.list_topics_admin(listed))
    report.run("list_topics.consumer", lambda: scenario.list_topics_consumer(listed))
    for codec in CODECS:
        report.run(f"produce_consume.{codec}", lambda: scenario.produce_consume(codec))
    report.run("group_commit_resume", scenario.group_commit_resume)
    report.run("offsets_for_times", lambda: scenario.offsets_for_times(unique_name("times")))
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
