"""Admin APIs against a real broker, driven by real clients: kafka-python's KafkaAdminClient,
confluent-kafka's AdminClient (librdkafka) and kcat; the wire client for what no admin
client sends (OffsetForLeaderEpoch, old versions)."""

from __future__ import annotations

import json
import re
import subprocess
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)
from kafka import errors as kerrors
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import ConfigResourceType as KType
from kafka.admin import KafkaAdminClient
from kafka.structs import TopicPartition as KTopicPartition

from fastlog import protocol
from tests.broker.wire import WireClient
from tests.conftest import BrokerProcess

TIMEOUT = 15  # seconds, for every client call
# The legacy AlterConfigs request is what these tests mean to send.
pytestmark = pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")


# -- helpers -------------------------------------------------------------------------------------


def kp_admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT * 1000)


def ck_admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": TIMEOUT * 1000})


@pytest.fixture(scope="module")
def kp(broker):
    client = kp_admin(broker.bootstrap)
    yield client
    client.close()


@pytest.fixture(scope="module")
def ck(broker):
    return ck_admin(broker.bootstrap)


def ck_result(futures: dict, key=None):
    """The single (or keyed) result of a confluent admin call, waiting at most TIMEOUT."""
    future = futures[key] if key is not None else next(iter(futures.values()))
    return future.result(timeout=TIMEOUT)


def ck_error(futures: dict, key=None) -> KafkaError:
    with pytest.raises(KafkaException) as info:
        ck_result(futures, key)
    return info.value.args[0]


def kcat_topics(bootstrap: str) -> dict[str, int]:
    out = subprocess.run(
        ["kcat", "-b", bootstrap, "-L", "-J", "-m", "10"], capture_output=True, text=True, timeout=30, check=True
    )
    return {t["topic"]: len(t["partitions"]) for t in json.loads(out.stdout)["topics"]}


def produce(bootstrap: str, topic: str, count: int, partition: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(count):
        producer.produce(topic, value=b"v%d" % i, partition=partition)
    assert producer.flush(TIMEOUT) == 0


def ck_configs(ck: AdminClient, topic: str) -> dict:
    return ck_result(ck.describe_configs([ConfigResource(ResourceType.TOPIC, topic)], request_timeout=TIMEOUT))


# -- CreateTopics / DeleteTopics -------------------------------------------------------------------


def test_create_validate_list_delete_with_kafka_python(broker, kp, unique_topic):
    dry = kp.create_topics({unique_topic: {"num_partitions": 3}}, validate_only=True)
    assert dry["topics"][0]["error_code"] == 0 and dry["topics"][0]["num_partitions"] == 3
    assert unique_topic not in kcat_topics(broker.bootstrap)

    created = kp.create_topics({unique_topic: {"num_partitions": 3, "configs": {"retention.ms": "60000"}}})
    result = created["topics"][0]
    assert result["error_code"] == 0 and result["num_partitions"] == 3 and result["replication_factor"] == 1
    assert result["configs"]["retention.ms"]["value"] == "60000"
    assert result["configs"]["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert result["configs"]["segment.bytes"]["config_source"] == "DEFAULT_CONFIG"
    assert kcat_topics(broker.bootstrap)[unique_topic] == 3

    kp.delete_topics([unique_topic])
    assert unique_topic not in kcat_topics(broker.bootstrap)


def test_create_and_delete_with_confluent(broker, kp, ck, unique_topic):
    ck_result(ck.create_topics([NewTopic(unique_topic, num_partitions=2)], request_timeout=TIMEOUT))
    # Manual assignment (kafka-python: confluent-kafka 2.16 refuses any NewTopic with a
    # replica_assignment client-side): every replica on node 0; count = assignments.
    manual = unique_topic + "-manual"
    kp.create_topics({manual: {"assignments": {0: [0], 1: [0], 2: [0], 3: [0]}}})
    listed = kcat_topics(broker.bootstrap)
    assert listed[unique_topic] == 2 and listed[manual] == 4
    with pytest.raises(kerrors.InvalidReplicationAssignmentError):
        kp.create_topics({manual + "-x": {"assignments": {0: [0, 1]}}})
    with pytest.raises(kerrors.InvalidReplicationAssignmentError):
        kp.create_topics({manual + "-x": {"assignments": {0: [0], 2: [0]}}})

    futures = ck.delete_topics([unique_topic, manual], request_timeout=TIMEOUT)
    for name in (unique_topic, manual):
        ck_result(futures, name)
    listed = kcat_topics(broker.bootstrap)
    assert unique_topic not in listed and manual not in listed and manual + "-x" not in listed


BAD_TOPICS = [
    ("bad name!", {}, kerrors.InvalidTopicError, KafkaError.TOPIC_EXCEPTION),
    # librdkafka refuses partition counts other than -1 and 1..100000 before sending (None).
    ("{t}", {"num_partitions": -5}, kerrors.InvalidPartitionsError, None),
    ("{t}", {"num_partitions": 0}, kerrors.InvalidPartitionsError, None),
    ("{t}", {"replication_factor": 3}, kerrors.InvalidReplicationFactorError, KafkaError.INVALID_REPLICATION_FACTOR),
    ("{t}", {"configs": {"no.such.key": "1"}}, kerrors.InvalidConfigurationError, KafkaError.INVALID_CONFIG),
    ("{t}", {"configs": {"retention.ms": "soon"}}, kerrors.InvalidConfigurationError, KafkaError.INVALID_CONFIG),
    ("{t}", {"configs": {"cleanup.policy": "shred"}}, kerrors.InvalidConfigurationError, KafkaError.INVALID_CONFIG),
]


BAD_IDS = ["bad-name", "partitions-5", "partitions0", "replication3", "unknown-key", "bad-value", "bad-policy"]


@pytest.mark.parametrize("name, options, kp_error, ck_code", BAD_TOPICS, ids=BAD_IDS)
def test_bad_create_requests_fail_in_both_clients(broker, kp, ck, unique_topic, name, options, kp_error, ck_code):
    name = name.format(t=unique_topic)
    with pytest.raises(kp_error):
        kp.create_topics({name: options})
    if ck_code is None:
        assert name not in kcat_topics(broker.bootstrap)
        return
    new_topic = NewTopic(
        name,
        num_partitions=options.get("num_partitions", -1),
        replication_factor=options.get("replication_factor", -1),
        config=options.get("configs", {}),
    )
    assert ck_error(ck.create_topics([new_topic], request_timeout=TIMEOUT)).code() == ck_code
    assert name not in kcat_topics(broker.bootstrap)


def test_existing_topic_and_unknown_deletes_fail(kp, ck, unique_topic):
    kp.create_topics([unique_topic])
    with pytest.raises(kerrors.TopicAlreadyExistsError):
        kp.create_topics([unique_topic])
    assert ck_error(ck.create_topics([NewTopic(unique_topic)], request_timeout=TIMEOUT)).code() == KafkaError.TOPIC_ALREADY_EXISTS
    with pytest.raises(kerrors.UnknownTopicOrPartitionError):
        kp.delete_topics([unique_topic + "-missing"])
    with pytest.raises(kerrors.UnknownTopicIdError):
        kp.delete_topics([uuid.uuid4()])
    err = ck_error(ck.delete_topics([unique_topic + "-missing"], request_timeout=TIMEOUT))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    kp.delete_topics([unique_topic])


def test_duplicate_names_in_one_request_and_old_versions(broker, unique_topic):
    CT = protocol.CreateTopicsRequest
    topic = CT.CreatableTopic(name=unique_topic, num_partitions=1, replication_factor=1, assignments=[], configs=[])
    other = CT.CreatableTopic(name=unique_topic + "-b", num_partitions=-1, replication_factor=-1, assignments=[], configs=[])
    with WireClient(broker.bootstrap) as wire:
        dup = wire.request(CT(topics=[topic, topic, other], timeout_ms=5000), 4)
        codes = {t.name: t.error_code for t in dup.topics}
        assert codes == {unique_topic: protocol.ErrorCode.INVALID_REQUEST, unique_topic + "-b": 0}
        v0 = wire.request(CT(topics=[topic], timeout_ms=5000), 0)
        assert v0.topics[0].error_code == 0
        DT = protocol.DeleteTopicsRequest
        gone = wire.request(DT(topic_names=[unique_topic, unique_topic + "-b"], timeout_ms=5000), 0)
        assert [t.error_code for t in gone.responses] == [0, 0]


# -- CreatePartitions ------------------------------------------------------------------------------


def test_create_partitions_grows_only(broker, kp, ck, unique_topic):
    kp.create_topics({unique_topic: {"num_partitions": 1}})
    kp.create_partitions({unique_topic: 2}, validate_only=True)
    assert kcat_topics(broker.bootstrap)[unique_topic] == 1
    kp.create_partitions({unique_topic: 3})
    assert kcat_topics(broker.bootstrap)[unique_topic] == 3
    ck_result(ck.create_partitions([NewPartitions(unique_topic, 5)], request_timeout=TIMEOUT))
    assert kcat_topics(broker.bootstrap)[unique_topic] == 5

    with pytest.raises(kerrors.InvalidPartitionsError, match="higher than the requested 2"):
        kp.create_partitions({unique_topic: 2})
    err = ck_error(ck.create_partitions([NewPartitions(unique_topic, 5)], request_timeout=TIMEOUT))
    assert err.code() == KafkaError.INVALID_PARTITIONS and "already has 5" in err.str()
    err = ck_error(ck.create_partitions([NewPartitions(unique_topic, 7, [[0], [1]])], request_timeout=TIMEOUT))
    assert err.code() == KafkaError.INVALID_REPLICA_ASSIGNMENT
    with pytest.raises(kerrors.UnknownTopicOrPartitionError):
        kp.create_partitions({unique_topic + "-missing": 2})
    assert kcat_topics(broker.bootstrap)[unique_topic] == 5


# -- DescribeConfigs / AlterConfigs / IncrementalAlterConfigs ----------------------------------


def test_describe_configs(broker, kp, ck, unique_topic):
    kp.create_topics({unique_topic: {"configs": {"cleanup.policy": "compact"}}})
    described = kp.describe_configs([KConfigResource(KType.TOPIC, unique_topic)], config_filter="all")
    entries = described["topic"][unique_topic]
    assert entries["cleanup.policy"]["value"] == "compact"
    assert entries["cleanup.policy"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert entries["retention.ms"]["value"] == "604800000"
    assert entries["preallocate"]["value"] == "false"

    configs = ck_configs(ck, unique_topic)
    assert configs["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value and configs["segment.bytes"].is_default

    broker_configs = ck_result(ck.describe_configs([ConfigResource(ResourceType.BROKER, "0")], request_timeout=TIMEOUT))
    assert broker_configs["listeners"].value == f"PLAINTEXT://{broker.bootstrap}"
    assert broker_configs["listeners"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert broker_configs["num.partitions"].source == ConfigSource.DEFAULT_CONFIG.value
    assert broker_configs["num.partitions"].is_read_only

    err = ck_error(ck.describe_configs([ConfigResource(ResourceType.TOPIC, unique_topic + "-missing")], request_timeout=TIMEOUT))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    # Both clients route a BROKER resource to the broker it names, so ask about node 7 on the wire.
    with WireClient(broker.bootstrap) as wire:
        DC = protocol.DescribeConfigsRequest
        other = DC.DescribeConfigsResource(resource_type=4, resource_name="7", configuration_keys=None)
        default = DC.DescribeConfigsResource(resource_type=4, resource_name="", configuration_keys=None)
        results = wire.request(DC(resources=[other, default]), 4).results
        assert [(r.error_code, len(r.configs)) for r in results] == [(protocol.ErrorCode.INVALID_REQUEST, 0), (0, 0)]
    loggers = kp.describe_configs([KConfigResource(KType.BROKER_LOGGER, "0")], config_filter="all")
    assert "root" in loggers["broker_logger"]["0"]


def test_describe_configs_v0_and_documentation_on_the_wire(broker, unique_topic):
    DC = protocol.DescribeConfigsRequest
    with WireClient(broker.bootstrap) as wire:
        wire.request(protocol.CreateTopicsRequest(topics=[protocol.CreateTopicsRequest.CreatableTopic(
            name=unique_topic, num_partitions=1, replication_factor=1, assignments=[],
            configs=[protocol.CreateTopicsRequest.CreatableTopicConfig(name="retention.ms", value="1000")])], timeout_ms=5000), 5)
        resource = DC.DescribeConfigsResource(resource_type=2, resource_name=unique_topic, configuration_keys=["retention.ms", "segment.ms"])
        v0 = wire.request(DC(resources=[resource]), 0).results[0]
        assert {c.name: (c.value, c.is_default) for c in v0.configs} == {
            "retention.ms": ("1000", False), "segment.ms": ("604800000", True)
        }
        v4 = wire.request(DC(resources=[resource], include_synonyms=True, include_documentation=True), 4).results[0]
        retention = {c.name: c for c in v4.configs}["retention.ms"]
        assert retention.config_type == 5 and retention.documentation  # LONG
        assert [(s.name, s.source) for s in retention.synonyms] == [("retention.ms", 1), ("log.retention.hours", 5)]


def test_incremental_alter_configs_with_confluent(broker, ck, unique_topic):
    ck_result(ck.create_topics([NewTopic(unique_topic)], request_timeout=TIMEOUT))

    def alter(*entries, validate_only=False):
        resource = ConfigResource(ResourceType.TOPIC, unique_topic, incremental_configs=list(entries))
        return ck.incremental_alter_configs([resource], request_timeout=TIMEOUT, validate_only=validate_only)

    ck_result(alter(ConfigEntry("retention.ms", "5000", incremental_operation=AlterConfigOpType.SET), validate_only=True))
    assert ck_configs(ck, unique_topic)["retention.ms"].value == "604800000"
    ck_result(alter(
        ConfigEntry("retention.ms", "5000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ))
    configs = ck_configs(ck, unique_topic)
    assert configs["retention.ms"].value == "5000"
    assert configs["cleanup.policy"].value == "delete,compact"
    ck_result(alter(ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT)))
    ck_result(alter(ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)))
    configs = ck_configs(ck, unique_topic)
    assert configs["cleanup.policy"].value == "compact" and configs["retention.ms"].value == "604800000"

    bad = [
        ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.APPEND),
        ConfigEntry("no.such.key", "1", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("segment.bytes", "lots", incremental_operation=AlterConfigOpType.SET),
    ]
    for entry in bad:
        assert ck_error(alter(entry)).code() == KafkaError.INVALID_CONFIG, entry
    assert ck_configs(ck, unique_topic)["cleanup.policy"].value == "compact"


def test_legacy_alter_configs_replaces_every_override(broker, kp, ck, unique_topic):
    kp.create_topics({unique_topic: {"configs": {"retention.ms": "1000", "segment.ms": "2000"}}})
    resource = ConfigResource(ResourceType.TOPIC, unique_topic, set_config={"max.message.bytes": "2000"})
    ck_result(ck.alter_configs([resource], request_timeout=TIMEOUT))
    configs = ck_configs(ck, unique_topic)
    assert configs["max.message.bytes"].value == "2000"
    assert configs["retention.ms"].value == "604800000" and configs["segment.ms"].value == "604800000"

    bad = ConfigResource(ResourceType.TOPIC, unique_topic, set_config={"max.message.bytes": "-3"})
    assert ck_error(ck.alter_configs([bad], request_timeout=TIMEOUT)).code() == KafkaError.INVALID_CONFIG
    broker_resource = ConfigResource(ResourceType.BROKER, "0", set_config={"num.partitions": "3"})
    err = ck_error(ck.alter_configs([broker_resource], request_timeout=TIMEOUT))
    assert err.code() == KafkaError.INVALID_REQUEST and "not supported" in err.str()

    # kafka-python: incremental by default; the legacy request when asked for it.
    kp.alter_configs([KConfigResource(KType.TOPIC, unique_topic, configs={"retention.ms": "3000"})])
    assert ck_configs(ck, unique_topic)["retention.ms"].value == "3000"
    assert ck_configs(ck, unique_topic)["max.message.bytes"].value == "2000"
    # kafka-python reports per-resource errors as strings instead of raising.
    result = kp.alter_configs([KConfigResource(KType.TOPIC, unique_topic, configs={"retention.ms": "x"})])
    assert "InvalidConfigurationError" in result["topic"][unique_topic]
    # Legacy request from kafka-python: it re-sends the other overrides itself, so they stay.
    kp.alter_configs([KConfigResource(KType.TOPIC, unique_topic, configs={"segment.ms": "9000"})], incremental=False)
    configs = ck_configs(ck, unique_topic)
    assert [configs[k].value for k in ("segment.ms", "retention.ms", "max.message.bytes")] == ["9000", "3000", "2000"]


# -- DescribeCluster, DeleteRecords, DescribeLogDirs, OffsetForLeaderEpoch -----------------------


def test_describe_cluster(broker, kp, ck):
    info = kp.describe_cluster()
    assert info["controller_id"] == 0 and info["cluster_id"]
    assert [(b["broker_id"], b["host"], b["port"]) for b in info["brokers"]] == [(0, "127.0.0.1", broker.port)]
    cluster = ck.describe_cluster(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    assert cluster.cluster_id == info["cluster_id"] and cluster.controller.id == 0
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(0, "127.0.0.1", broker.port)]


def test_delete_records_and_log_dirs(broker, kp, ck, unique_topic):
    kp.create_topics({unique_topic: {"num_partitions": 2}})
    produce(broker.bootstrap, unique_topic, 10)
    deleted = ck_result(ck.delete_records([TopicPartition(unique_topic, 0, 4)], request_timeout=TIMEOUT))
    assert deleted.low_watermark == 4
    earliest = ck_result(ck.list_offsets({TopicPartition(unique_topic, 0): OffsetSpec.earliest()}, request_timeout=TIMEOUT))
    assert earliest.offset == 4
    result = kp.delete_records({KTopicPartition(unique_topic, 0): -1})
    assert result[KTopicPartition(unique_topic, 0)]["low_watermark"] == 10
    err = ck_error(ck.delete_records([TopicPartition(unique_topic, 0, 11)], request_timeout=TIMEOUT))
    assert err.code() == KafkaError.OFFSET_OUT_OF_RANGE
    # Both clients refuse an unknown partition from their metadata; the broker's answer on the wire:
    DR = protocol.DeleteRecordsRequest
    with WireClient(broker.bootstrap) as wire:
        request = DR(topics=[DR.DeleteRecordsTopic(name=unique_topic, partitions=[
            DR.DeleteRecordsPartition(partition_index=9, offset=0),
            DR.DeleteRecordsPartition(partition_index=0, offset=-7)])], timeout_ms=5000)
        answer = wire.request(request, 2).topics[0].partitions
        assert [(p.error_code, p.low_watermark) for p in answer] == [(3, -1), (1, -1)]

    produce(broker.bootstrap, unique_topic, 5, partition=1)
    dirs = kp.describe_log_dirs({unique_topic: [0, 1]})
    [log_dir] = dirs[0]["log_dirs"]
    assert log_dir["log_dir"] == str(broker.data_dir.resolve()) and log_dir["total_bytes"] > 0
    sizes = {p["partition_index"]: p["partition_size"] for t in log_dir["topics"] for p in t["partitions"]}
    assert sizes.keys() == {0, 1} and sizes[1] > 0


def test_offset_for_leader_epoch_on_the_wire(broker, kp, unique_topic):
    kp.create_topics([unique_topic])
    produce(broker.bootstrap, unique_topic, 3)
    R = protocol.OffsetForLeaderEpochRequest
    topic = R.OffsetForLeaderTopic(topic=unique_topic, partitions=[
        R.OffsetForLeaderPartition(partition=0, current_leader_epoch=0, leader_epoch=0),
        R.OffsetForLeaderPartition(partition=0, current_leader_epoch=5, leader_epoch=0),
        R.OffsetForLeaderPartition(partition=3, current_leader_epoch=-1, leader_epoch=0),
    ])
    with WireClient(broker.bootstrap) as wire:
        answer = wire.request(R(replica_id=-1, topics=[topic]), 4)
        got = [(p.error_code, p.leader_epoch, p.end_offset) for p in answer.topics[0].partitions]
        assert got == [(0, 0, 3), (protocol.ErrorCode.UNKNOWN_LEADER_EPOCH, -1, -1), (3, -1, -1)]
        v0 = wire.request(R(topics=[R.OffsetForLeaderTopic(topic=unique_topic, partitions=[
            R.OffsetForLeaderPartition(partition=0, leader_epoch=0)])]), 0)
        assert v0.topics[0].partitions[0].end_offset == 3


# -- restarts ------------------------------------------------------------------------------------


def test_configs_and_partition_counts_survive_restart(fresh_broker):
    kp = kp_admin(fresh_broker.bootstrap)
    try:
        kp.create_topics({"kept": {"num_partitions": 2, "configs": {"retention.ms": "1000"}}})
        kp.create_partitions({"kept": 4})
        kp.alter_configs([KConfigResource(KType.TOPIC, "kept", configs={"segment.bytes": "1048576"})])
        produce(fresh_broker.bootstrap, "kept", 6)
        kp.delete_records({KTopicPartition("kept", 0): 4})
    finally:
        kp.close()
    fresh_broker.restart()
    ck = ck_admin(fresh_broker.bootstrap)
    earliest = ck_result(ck.list_offsets({TopicPartition("kept", 0): OffsetSpec.earliest()}, request_timeout=TIMEOUT))
    assert earliest.offset == 4
    configs = ck_configs(ck, "kept")
    assert configs["retention.ms"].value == "1000" and configs["segment.bytes"].value == "1048576"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert kcat_topics(fresh_broker.bootstrap)["kept"] == 4


# -- every advertised version answers (the codec refuses fields a version lacks) ----------------


def sweep_requests(topic: str) -> list:
    P = protocol
    CT, DT, CP = P.CreateTopicsRequest, P.DeleteTopicsRequest, P.CreatePartitionsRequest
    DC, AC, IAC = P.DescribeConfigsRequest, P.AlterConfigsRequest, P.IncrementalAlterConfigsRequest
    DR, OE, LD = P.DeleteRecordsRequest, P.OffsetForLeaderEpochRequest, P.DescribeLogDirsRequest
    config = [CT.CreatableTopicConfig(name="retention.ms", value="1000")]
    return [
        lambda v: CT(topics=[CT.CreatableTopic(name=f"{topic}-{v}", num_partitions=1, replication_factor=-1, assignments=[], configs=config)], timeout_ms=5000),
        lambda v: CP(topics=[CP.CreatePartitionsTopic(name=f"{topic}-{v}", count=2, assignments=None)], timeout_ms=5000),
        lambda v: DC(resources=[DC.DescribeConfigsResource(resource_type=2, resource_name=f"{topic}-{v}", configuration_keys=None),
                                DC.DescribeConfigsResource(resource_type=4, resource_name="0", configuration_keys=None)],
                     include_synonyms=v >= 1, include_documentation=v >= 3),
        lambda v: AC(resources=[AC.AlterConfigsResource(resource_type=2, resource_name=f"{topic}-{v}", configs=[AC.AlterableConfig(name="segment.ms", value="5000")])]),
        lambda v: IAC(resources=[IAC.AlterConfigsResource(resource_type=2, resource_name=f"{topic}-{v}", configs=[IAC.AlterableConfig(name="cleanup.policy", config_operation=2, value="compact")])]),
        lambda v: P.DescribeClusterRequest(include_cluster_authorized_operations=True),
        lambda v: DR(topics=[DR.DeleteRecordsTopic(name=f"{topic}-{v}", partitions=[DR.DeleteRecordsPartition(partition_index=0, offset=-1)])], timeout_ms=5000),
        lambda v: OE(topics=[OE.OffsetForLeaderTopic(topic=f"{topic}-{v}", partitions=[OE.OffsetForLeaderPartition(partition=0, leader_epoch=0)])]),
        lambda v: LD(topics=None),
        lambda v: DT(topic_names=[f"{topic}-{v}"]) if v < 6 else DT(topics=[DT.DeleteTopicState(name=f"{topic}-{v}")]),
    ]


def test_every_version_of_every_admin_api_answers(broker, unique_topic):
    with WireClient(broker.bootstrap) as wire:
        for make in sweep_requests(unique_topic):
            api_key = type(make(0)).API_KEY
            lo, hi = protocol.API_BY_KEY[api_key].valid_versions
            for version in range(lo, hi + 1):
                text = repr(wire.request(make(version), version))
                assert not re.search(r"error_code=[1-9]", text), (api_key, version, text[:400])


def test_topic_deletion_disabled_and_loggers(tmp_path):
    process = BrokerProcess(tmp_path / "data", {"delete.topic.enable": "false"}).start()
    try:
        kp = kp_admin(process.bootstrap)
        try:
            kp.create_topics(["kept"])
            with pytest.raises(kerrors.TopicDeletionDisabledError):
                kp.delete_topics(["kept"])
        finally:
            kp.close()
        IAC, DC = protocol.IncrementalAlterConfigsRequest, protocol.DescribeConfigsRequest
        with WireClient(process.bootstrap) as wire:
            v2 = wire.request(protocol.DeleteTopicsRequest(topic_names=["kept"], timeout_ms=5000), 2)
            assert v2.responses[0].error_code == protocol.ErrorCode.INVALID_REQUEST
            level = IAC.AlterableConfig(name="fastlog.handlers", config_operation=0, value="DEBUG")
            bad = IAC.AlterableConfig(name="fastlog.handlers", config_operation=0, value="LOUD")
            for configs, code in (([level], 0), ([bad], protocol.ErrorCode.INVALID_CONFIG)):
                resource = IAC.AlterConfigsResource(resource_type=8, resource_name="0", configs=configs)
                assert wire.request(IAC(resources=[resource]), 1).responses[0].error_code == code
            loggers = wire.request(DC(resources=[DC.DescribeConfigsResource(resource_type=8, resource_name="0", configuration_keys=["fastlog.handlers"])]), 4)
            assert [(c.name, c.value) for c in loggers.results[0].configs] == [("fastlog.handlers", "DEBUG")]
            cluster = wire.request(protocol.DescribeClusterRequest(endpoint_type=2), 1)
            assert cluster.error_code == protocol.ErrorCode.UNSUPPORTED_ENDPOINT_TYPE
        assert kcat_topics(process.bootstrap) == {"kept": 1}
    finally:
        process.stop()
