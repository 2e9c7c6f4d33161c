"""aiokafka against a fastlog broker, with whatever API the running version has: list topics
(AIOKafkaAdminClient.list_topics and AIOKafkaConsumer.topics), produce and consume with every
codec, a consumer group committing and resuming, offsets by time, and topic admin (create,
describe configs and topics, alter configs, create partitions, delete).

aiokafka 0.8 borrows kafka-python's admin types and codecs; 0.9 and later have their own (and
compress through cramjam). No version has IncrementalAlterConfigs.

Run as `python aiokafka_scenario.py --bootstrap HOST:PORT`; prints one JSON line per check and
exits non-zero if any failed.
"""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version as installed_version
from typing import Any, Optional

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

try:  # aiokafka >= 0.9
    from aiokafka.admin import NewPartitions
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
except ImportError:  # aiokafka 0.8 takes kafka-python's
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions

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
)

TIMEOUT = 15.0
TIMEOUT_MS = int(TIMEOUT * 1000)


class Scenario:
    """The checks, sharing one started AIOKafkaAdminClient; each client a check starts, it stops."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)

    # -- helpers ---------------------------------------------------------------------------

    async def create_topic(self, topic: str, partitions: int = 1, config: Optional[dict[str, str]] = None) -> None:
        new_topic = NewTopic(topic, partitions, 1, topic_configs=config or {})
        assert_no_errors(await self.admin.create_topics([new_topic], timeout_ms=TIMEOUT_MS))

    async def consumer(self, group: Optional[str] = None, **extra: Any) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False,
                                    auto_offset_reset="earliest", request_timeout_ms=TIMEOUT_MS, **extra)
        await consumer.start()
        return consumer

    async def produce(self, topic: str, records: list[Record], codec: str = "none",
                      timestamps: Optional[list[int]] = None) -> list[int]:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, request_timeout_ms=TIMEOUT_MS,
                                    compression_type=None if codec == "none" else codec)
        await producer.start()
        try:
            futures = [await producer.send(topic, value=value, key=key, headers=headers, partition=0,
                                           timestamp_ms=timestamps[i] if timestamps else None)
                       for i, (key, value, headers) in enumerate(records)]
            await producer.flush()
            return [(await future).offset for future in futures]
        finally:
            await producer.stop()

    async def poll_records(self, consumer: AIOKafkaConsumer, count: int,
                           max_records: Optional[int] = None) -> list[tuple[int, Record]]:
        got: list[tuple[int, Record]] = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=max_records)
            for records in batches.values():
                got += [(r.offset, (r.key, r.value, normalized_headers(r.headers))) for r in records]
        return got

    async def topic_configs(self, topic: str) -> dict[str, tuple[str, Any]]:
        result = await self.admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        return configs_from_response(assert_no_errors(result))

    async def topic_partitions(self, topic: str) -> list[int]:
        (description,) = await self.admin.describe_topics([topic])
        assert description["error_code"] == 0, description
        return sorted(p["partition"] for p in description["partitions"])

    # -- checks ----------------------------------------------------------------------------

    async def client_version(self, expect_version: Optional[str]) -> str:
        return "aiokafka " + check_version(installed_version("aiokafka"), expect_version, "aiokafka")

    async def start_admin(self) -> str:
        """Starts the admin client; says which broker version it inferred (aiokafka < 0.9 does)."""
        await self.admin.start()
        inferred = getattr(self.admin._client, "api_version", None)
        return f"takes the broker for Kafka {inferred}" if inferred else "negotiates versions per API"

    async def list_topics_admin(self, topic: str) -> str:
        await self.create_topic(topic, partitions=3)
        names = await self.admin.list_topics()
        assert topic in names, f"{topic} missing from AIOKafkaAdminClient.list_topics(): {sorted(names)[:20]}"
        return f"{len(names)} topics listed, the new one included"

    async def list_topics_consumer(self, topic: str) -> str:
        consumer = await self.consumer()
        try:
            # topics() fetches every topic's metadata (partitions_for_topic() would only read the
            # consumer's cache, which aiokafka >= 0.9 does not fill from topics()).
            names = await consumer.topics()
        finally:
            await consumer.stop()
        assert topic in names, f"{topic} missing from AIOKafkaConsumer.topics()"
        return f"{len(names)} topics listed, the new one included"

    async def produce_consume(self, codec: str) -> str:
        topic = unique_name(f"codec-{codec}")
        await self.create_topic(topic)
        records = expected_records()
        offsets = await self.produce(topic, records, codec)
        assert offsets == list(range(len(records))), f"send offsets {offsets}"
        consumer = await self.consumer()
        try:
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            got = await self.poll_records(consumer, len(records))
        finally:
            await consumer.stop()
        return compare_records(records, got)

    async def group_commit_resume(self) -> str:
        topic, group = unique_name("group"), unique_name("group")
        partition = TopicPartition(topic, 0)
        await self.create_topic(topic)
        await self.produce(topic, expected_records(GROUP_RECORDS))
        first = await self.consumer(group)
        try:
            first.subscribe([topic])
            part = await self.poll_records(first, GROUP_FIRST_PART, max_records=GROUP_FIRST_PART)
            assert [o for o, _ in part] == list(range(GROUP_FIRST_PART)), f"first member read {[o for o, _ in part]}"
            await first.commit({partition: GROUP_FIRST_PART})
        finally:
            await first.stop()
        second = await self.consumer(group)
        try:
            committed = await second.committed(partition)
            assert committed == GROUP_FIRST_PART, f"committed offset {committed}"
            second.subscribe([topic])
            rest = await self.poll_records(second, GROUP_RECORDS - GROUP_FIRST_PART)
        finally:
            await second.stop()
        return resumed_report(rest)

    async def offsets_for_times(self, topic: str) -> str:
        """Creates the topic with one record a second from BASE_TIMESTAMP_MS, and looks them up."""
        await self.create_topic(topic)
        timestamps = timestamped_times()
        await self.produce(topic, expected_records(TIMESTAMPED_RECORDS), timestamps=timestamps)
        queries = {BASE_TIMESTAMP_MS - 1: (0, BASE_TIMESTAMP_MS), BASE_TIMESTAMP_MS + 1500: (2, BASE_TIMESTAMP_MS + 2000),
                   BASE_TIMESTAMP_MS + 4000: (4, BASE_TIMESTAMP_MS + 4000), BASE_TIMESTAMP_MS + 10**7: None}
        partition = TopicPartition(topic, 0)
        consumer = await self.consumer()
        try:
            found = {ts: (await consumer.offsets_for_times({partition: ts}))[partition] for ts in queries}
        finally:
            await consumer.stop()
        got = {ts: None if hit is None else (hit.offset, hit.timestamp) for ts, hit in found.items()}
        assert got == queries, f"offsets by time {got}, expected {queries}"
        return f"timestamp -> (offset, timestamp) {got}"

    async def admin_create(self, topic: str) -> str:
        await self.create_topic(topic, partitions=2, config={"retention.ms": "3600000"})
        return "created with 2 partitions and retention.ms=3600000"

    async def admin_describe_configs(self, topic: str) -> str:
        configs = await self.topic_configs(topic)
        value, source = configs["retention.ms"]
        assert value == "3600000", f"retention.ms is {value}"
        assert source == DYNAMIC_TOPIC_CONFIG, f"retention.ms source {source}"
        return f"{len(configs)} configs; retention.ms=3600000 from the topic's overrides"

    async def admin_describe_topics(self, topic: str) -> str:
        partitions = await self.topic_partitions(topic)
        assert partitions == [0, 1], f"partitions {partitions}"
        return "2 partitions described"

    async def admin_alter_configs(self, topic: str) -> str:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "7200000"})
        assert_no_errors(await self.admin.alter_configs([resource]))
        value, _ = (await self.topic_configs(topic))["retention.ms"]
        assert value == "7200000", f"retention.ms is {value} after alter_configs"
        return "retention.ms=7200000 after AlterConfigs"

    async def admin_incremental_alter_configs(self, topic: str) -> str:
        assert not hasattr(self.admin, "incremental_alter_configs"), "aiokafka has grown the API: call it here"
        raise Skip(f"aiokafka {installed_version('aiokafka')} has no IncrementalAlterConfigs API")

    async def admin_create_partitions(self, topic: str) -> str:
        assert_no_errors(await self.admin.create_partitions({topic: NewPartitions(4)}, timeout_ms=TIMEOUT_MS))
        partitions = await self.topic_partitions(topic)
        assert partitions == [0, 1, 2, 3], f"partitions {partitions} after create_partitions"
        return "grown from 2 to 4 partitions"

    async def admin_delete(self, topic: str) -> str:
        assert_no_errors(await self.admin.delete_topics([topic], timeout_ms=TIMEOUT_MS))
        deadline = time.monotonic() + TIMEOUT
        while topic in await self.admin.list_topics():
            assert time.monotonic() < deadline, "the deleted topic stayed in the metadata"
            await asyncio.sleep(0.2)
        return "deleted; gone from the metadata"


async def run_checks(args: Any, report: Report) -> None:
    scenario = Scenario(args.bootstrap)
    await report.run_async("client_version", lambda: scenario.client_version(args.expect_version))
    await report.run_async("admin_client_start", scenario.start_admin)
    listed = unique_name("list")
    await report.run_async("list_topics.admin", lambda: scenario.list_topics_admin(listed))
    await report.run_async("list_topics.consumer", lambda: scenario.list_topics_consumer(listed))
    for codec in CODECS:
        await report.run_async(f"produce_consume.{codec}", lambda: scenario.produce_consume(codec))
    await report.run_async("group_commit_resume", scenario.group_commit_resume)
    await report.run_async("offsets_for_times", lambda: scenario.offsets_for_times(unique_name("times")))
    admin_topic = unique_name("admin")
    await report.run_async("admin.create_topic", lambda: scenario.admin_create(admin_topic))
    await report.run_async("admin.describe_configs", lambda: scenario.admin_describe_configs(admin_topic))
    await report.run_async("admin.describe_topics", lambda: scenario.admin_describe_topics(admin_topic))
    await report.run_async("admin.alter_configs", lambda: scenario.admin_alter_configs(admin_topic))
    await report.run_async("admin.incremental_alter_configs", lambda: scenario.admin_incremental_alter_configs(admin_topic))
    await report.run_async("admin.create_partitions", lambda: scenario.admin_create_partitions(admin_topic))
    await report.run_async("admin.delete_topic", lambda: scenario.admin_delete(admin_topic))
    await asyncio.wait_for(scenario.admin.close(), TIMEOUT)


def main() -> None:
    args = parse_args()
    report = Report(args.check_timeout)
    asyncio.run(run_checks(args, report))
    report.finish()


if __name__ == "__main__":
    main()
