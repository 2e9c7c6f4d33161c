"""Client quotas (issue 22): DescribeClientQuotas / AlterClientQuotas on the wire and through
`fastlog quotas`, which quota applies to whom (Kafka's order), and the throttling: a producer
or consumer over its byte rate is held to it (measured over several seconds) while another
client is not slowed, librdkafka reports the throttle, the connection is muted for the
throttle time (KIP-219), request_percentage and controller_mutation_rate (THROTTLING_QUOTA_EXCEEDED),
throttle metrics, and quotas surviving a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from fastlog import protocol as P
from fastlog.client import Client, KafkaError
from fastlog.protocol import ErrorCode as E
from fastlog.quotas import QuotaManager, entity_of
from tests.broker.wire import WireClient
from tests.conftest import BrokerProcess, free_port

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def quota_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """Quotas measured over 2 windows of 1 s: a client's burst allowance is two seconds' worth."""
    metrics_port = free_port()
    broker = BrokerProcess(tmp_path_factory.mktemp("quotas") / "data", {
        "quota.window.num": "2", "quota.window.size.seconds": "1", "metrics.port": str(metrics_port), "console.enable": "false",
    })
    broker.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"  # type: ignore[attr-defined]
    broker.start()
    yield broker
    broker.stop()


def set_quota(bootstrap: str, entity: list, values: dict) -> None:
    with Client(bootstrap) as client:
        client.alter_client_quotas([(entity, values)])


def cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastlog", "quotas", *args, "--bootstrap-server", bootstrap], capture_output=True, text=True, timeout=60)


# -- the APIs and the command line ----------------------------------------------------------


def test_alter_and_describe_on_the_wire(fresh_broker: BrokerProcess) -> None:
    with Client(fresh_broker.bootstrap) as client:
        client.alter_client_quotas([
            ([("user", "alice")], {"producer_byte_rate": 1024, "consumer_byte_rate": 2048}),
            ([("user", "alice"), ("client-id", "app")], {"request_percentage": 25.5}),
            ([("user", None)], {"producer_byte_rate": 4096}),
            ([("client-id", None)], {"controller_mutation_rate": 10}),
            ([("ip", "127.0.0.9")], {"connection_creation_rate": 3}),
        ])
        everything = {tuple(e): v for e, v in client.describe_client_quotas()}
        assert everything[(("user", "alice"),)] == {"producer_byte_rate": 1024, "consumer_byte_rate": 2048}
        assert everything[(("client-id", "app"), ("user", "alice"))] == {"request_percentage": 25.5}
        assert len(everything) == 5
        alice = {tuple(e) for e, _ in client.describe_client_quotas([("user", 0, "alice")])}
        assert alice == {(("user", "alice"),), (("client-id", "app"), ("user", "alice"))}
        assert [e for e, _ in client.describe_client_quotas([("user", 0, "alice")], strict=True)] == [[("user", "alice")]]
        assert [e for e, _ in client.describe_client_quotas([("user", 1, None)])] == [[("user", None)]]
        assert len(client.describe_client_quotas([("user", 2, None)])) == 2  # any named user
        # validate-only changes nothing; removing a key removes it, an entity left empty goes
        client.alter_client_quotas([([("user", "bob")], {"producer_byte_rate": 1})], validate_only=True)
        assert client.describe_client_quotas([("user", 0, "bob")]) == []
        client.alter_client_quotas([([("user", "alice")], {"consumer_byte_rate": None}), ([("ip", "127.0.0.9")], {"connection_creation_rate": None})])
        assert client.describe_client_quotas([("user", 0, "alice")], strict=True)[0][1] == {"producer_byte_rate": 1024}
        assert client.describe_client_quotas([("ip", 2, None)]) == []

    fresh_broker.restart()  # quotas are kept in the data directory
    with Client(fresh_broker.bootstrap) as client:
        assert len(client.describe_client_quotas()) == 4
        assert client.describe_client_quotas([("user", 0, "alice")], strict=True)[0][1] == {"producer_byte_rate": 1024}


@pytest.mark.parametrize("entity, values, words", [
    ([("user", "a")], {"bogus": 1}, "'bogus' is not a quota"),
    ([("ip", "1.2.3.4")], {"producer_byte_rate": 1}, "not a quota of ip"),
    ([("user", "a"), ("ip", None)], {"producer_byte_rate": 1}, "Invalid quota entity"),
    ([("client-id", "x")], {"producer_byte_rate": -5}, "must be positive"),
    ([("client-id", "x")], {"producer_byte_rate": 1.5}, "whole number"),
    ([("client-id", "")], {"producer_byte_rate": 1}, "empty client-id name"),
    ([("group", "g")], {"producer_byte_rate": 1}, "Unknown entity type"),
    ([], {"producer_byte_rate": 1}, "empty"),
    ([("user", "a"), ("user", None)], {"producer_byte_rate": 1}, "given twice"),
    ([("ip", "not.an.address")], {"connection_creation_rate": 1}, "not an IP address"),
    ([("ip", "10.0.0.1")], {"connection_creation_rate": 1.5}, "whole number"),
])
def test_invalid_alterations_are_refused_and_change_nothing(quota_broker: BrokerProcess, entity, values, words) -> None:
    with Client(quota_broker.bootstrap) as client:
        before = client.describe_client_quotas()
        with pytest.raises(KafkaError) as refused:
            client.alter_client_quotas([(entity, values)])
        assert refused.value.name == "INVALID_REQUEST" and words in str(refused.value)
        assert client.describe_client_quotas() == before


def test_an_entry_refused_leaves_the_others_and_duplicates_are_refused(fresh_broker: BrokerProcess) -> None:
    A = P.AlterClientQuotasRequest
    def entry(name: str, key: str, value: float):
        return A.EntryData(entity=[A.EntityData(entity_type="client-id", entity_name=name)], ops=[A.OpData(key=key, value=value, remove=False)])
    with WireClient(fresh_broker.bootstrap) as wire:
        answer = wire.request(A(entries=[entry("ok", "producer_byte_rate", 100), entry("bad", "nope", 1), entry("ok", "consumer_byte_rate", 5)], validate_only=False), 1)
        assert [e.error_code for e in answer.entries] == [0, E.INVALID_REQUEST, E.INVALID_REQUEST]
        assert "twice" in answer.entries[2].error_message
        D = P.DescribeClientQuotasRequest
        described = wire.request(D(components=[D.ComponentData(entity_type="client-id", match_type=2, match=None)], strict=False), 1)
        assert [(e.entity[0].entity_name, [(v.key, v.value) for v in e.values]) for e in described.entries] == [("ok", [("producer_byte_rate", 100.0)])]
        bad = wire.request(D(components=[D.ComponentData(entity_type="user", match_type=7, match=None)], strict=False), 1)
        assert bad.error_code == E.INVALID_REQUEST and bad.entries is None


def test_the_command_line(quota_broker: BrokerProcess) -> None:
    bootstrap = quota_broker.bootstrap
    done = cli(bootstrap, "set", "--user", "carol", "--client-id", "etl", "--add-config", "producer_byte_rate=1048576,consumer_byte_rate=2097152")
    assert done.returncode == 0, done.stderr
    listed = json.loads(cli(bootstrap, "list", "--user", "carol", "--client-id", "etl", "--json").stdout)
    assert listed == [{"entity": {"client-id": "etl", "user": "carol"}, "quotas": {"consumer_byte_rate": 2097152.0, "producer_byte_rate": 1048576.0}}]
    assert "producer_byte_rate" in cli(bootstrap, "list").stdout
    assert cli(bootstrap, "delete", "--user", "carol", "--client-id", "etl", "--delete-config", "consumer_byte_rate").returncode == 0
    listed = json.loads(cli(bootstrap, "list", "--user", "carol", "--client-id", "etl", "--json").stdout)
    assert listed[0]["quotas"] == {"producer_byte_rate": 1048576.0}
    refused = cli(bootstrap, "set", "--client-id", "etl", "--add-config", "producer_byte_rate=fast")
    assert refused.returncode == 1 and "KEY=NUMBER" in refused.stderr
    refused = cli(bootstrap, "set", "--add-config", "producer_byte_rate=1")
    assert refused.returncode == 1 and "name an entity" in refused.stderr
    assert cli(bootstrap, "delete", "--user", "carol", "--client-id", "etl", "--delete-config", "producer_byte_rate").returncode == 0


def test_which_quota_applies_follows_kafkas_order(tmp_path: Path) -> None:
    class Store:
        def __init__(self) -> None:
            self.values: dict = {}

        def entries(self) -> dict:
            return self.values

    manager = QuotaManager.__new__(QuotaManager)
    manager.store = Store()  # type: ignore[assignment]
    order = [
        ([("user", "u"), ("client-id", "c")], ("u", "c")), ([("user", "u"), ("client-id", None)], ("u", "c")), ([("user", "u")], ("u", "")),
        ([("user", None), ("client-id", "c")], ("u", "c")), ([("user", None), ("client-id", None)], ("u", "c")), ([("user", None)], ("u", "")),
        ([("client-id", "c")], ("", "c")), ([("client-id", None)], ("", "c")),
    ]
    for rank, (entity, _) in enumerate(order):
        manager.store.values[entity_of(entity)] = {"producer_byte_rate": float(100 + rank)}
    for rank, (entity, tags) in enumerate(order):
        assert manager.bound("producer_byte_rate", "u", "c") == (100 + rank, (*tags, "")), entity
        del manager.store.values[entity_of(entity)]
    assert manager.bound("producer_byte_rate", "u", "c") is None


# -- throttling -----------------------------------------------------------------------------


def produce_for(bootstrap: str, topic: str, client_id: str, seconds: float, pace_bytes_per_s: float = 0) -> dict:
    """Produces 1 KB records for `seconds` (as fast as possible, or at a pace); the acked bytes
    per moment, and the throttle times librdkafka reported."""
    throttles: list[float] = []
    stats: list[dict] = []
    producer = Producer({
        # small batches: each request a small part of a second's quota, so the rate is smooth
        "bootstrap.servers": bootstrap, "client.id": client_id, "linger.ms": 5, "batch.size": 50_000, "queue.buffering.max.kbytes": 2048,
        "throttle_cb": lambda event: throttles.append(event.throttle_time), "statistics.interval.ms": 500,
        "stats_cb": lambda text: stats.append(json.loads(text)),
    })
    acked: list[tuple[float, int]] = []
    started = time.monotonic()

    def delivered(err, message) -> None:
        if err is None:
            acked.append((time.monotonic() - started, len(message.value())))

    payload = b"q" * 1000
    sent = 0
    while time.monotonic() - started < seconds:
        if pace_bytes_per_s and sent > pace_bytes_per_s * (time.monotonic() - started):
            producer.poll(0.005)
            continue
        try:
            producer.produce(topic, payload, partition=0, on_delivery=delivered)
            sent += len(payload)
        except BufferError:
            producer.poll(0.01)
        producer.poll(0)
    producer.flush(30)
    return {"acked": acked, "throttles": throttles, "stats": stats}


def rate_between(acked: list[tuple[float, int]], start: float, end: float) -> float:
    return sum(size for at, size in acked if start <= at < end) / (end - start)


def test_a_producer_over_its_byte_rate_is_held_to_it_and_another_is_not(quota_broker: BrokerProcess) -> None:
    bootstrap = quota_broker.bootstrap
    with Client(bootstrap) as client:
        client.create_topic("throttled", 1)
    quota, other_quota = 500_000, 2_000_000
    set_quota(bootstrap, [("client-id", "slow-producer")], {"producer_byte_rate": quota})
    set_quota(bootstrap, [("client-id", "steady-producer")], {"producer_byte_rate": other_quota})
    results: dict = {}
    steady = threading.Thread(target=lambda: results.update(steady=produce_for(bootstrap, "throttled", "steady-producer", 10, pace_bytes_per_s=other_quota * 0.9)))
    steady.start()
    slow = produce_for(bootstrap, "throttled", "slow-producer", 10)
    steady.join(60)
    # after the burst allowance (2 s of quota), the rate is the quota's, within 10 %
    measured = rate_between(slow["acked"], 3, 10)
    assert abs(measured - quota) <= 0.1 * quota, f"{measured:.0f} B/s against a quota of {quota}"
    assert slow["throttles"] and max(slow["throttles"]) > 0
    brokers = [b for s in slow["stats"] for b in s["brokers"].values() if b.get("throttle", {}).get("max", 0) > 0]
    assert brokers, "librdkafka's statistics show the broker's throttle"
    # the other client, at 90 % of its own quota, kept its pace and was never throttled
    kept = rate_between(results["steady"]["acked"], 3, 10)
    assert kept >= 0.8 * other_quota * 0.9, kept
    assert not [t for t in results["steady"]["throttles"] if t > 0]
    with urllib.request.urlopen(quota_broker.metrics_url, timeout=10) as response:  # type: ignore[attr-defined]
        text = response.read().decode()
    assert 'fastlog_quota_throttled_requests_total{client_id="slow-producer",ip="",quota="producer_byte_rate",user=""}' in text
    assert 'fastlog_quota_throttle_seconds_total{client_id="slow-producer"' in text
    assert 'client_id="steady-producer",ip="",quota="producer_byte_rate"' in text and 'fastlog_quota_rate{client_id="steady-producer"' in text


def test_a_consumer_over_its_byte_rate_is_held_to_it(quota_broker: BrokerProcess) -> None:
    bootstrap = quota_broker.bootstrap
    with Client(bootstrap) as client:
        client.create_topic("to-read", 1)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 20_000})  # small batches: fetches of 40 KB
    for _ in range(8_000):
        producer.produce("to-read", b"r" * 1000, partition=0)
        producer.poll(0)
    producer.flush(30)
    quota = 400_000
    set_quota(bootstrap, [("client-id", "slow-consumer")], {"consumer_byte_rate": quota})
    stats: list[dict] = []
    consumer = Consumer({
        "statistics.interval.ms": 1000, "stats_cb": lambda text: stats.append(json.loads(text)),
        "bootstrap.servers": bootstrap, "group.id": "slow-readers", "client.id": "slow-consumer", "enable.auto.commit": False,
        "fetch.max.bytes": 40_000, "message.max.bytes": 20_000, "max.partition.fetch.bytes": 40_000,
        "queued.max.messages.kbytes": 64,  # little read ahead: what poll returns is what was just fetched
    })
    consumer.assign([TopicPartition("to-read", 0, 0)])
    received: list[tuple[float, int]] = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < 9:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                received.append((time.monotonic() - started, len(message.value())))
    finally:
        consumer.close()
    measured = rate_between(received, 3, 9)
    assert abs(measured - quota) <= 0.1 * quota, f"{measured:.0f} B/s against a quota of {quota}"
    # librdkafka's statistics carry the broker's throttle times (its throttle_cb fires for the
    # producer above; a consumer's is served irregularly by poll, so it is not relied on here)
    assert max(b["throttle"]["max"] for s in stats for b in s["brokers"].values()) > 0


def test_a_throttled_connection_is_muted_for_the_throttle_time(quota_broker: BrokerProcess) -> None:
    """request_percentage: a client allowed 0.0001 % of a thread is throttled on its first
    requests, told so in throttle_time_ms, and the broker reads its next request only after."""
    set_quota(quota_broker.bootstrap, [("client-id", "greedy")], {"request_percentage": 0.0001})
    M = P.MetadataRequest
    with WireClient(quota_broker.bootstrap, client_id="greedy") as wire:
        throttled = []
        for _ in range(20):
            throttled.append(wire.request(M(topics=[], allow_auto_topic_creation=False), 9).throttle_time_ms)
            if throttled[-1] > 0:
                break
        assert throttled[-1] > 0, throttled
        started = time.monotonic()
        wire.request(M(topics=[], allow_auto_topic_creation=False), 9)
        waited = time.monotonic() - started
    assert waited >= throttled[-1] / 1000 * 0.9, (waited, throttled[-1])
    with WireClient(quota_broker.bootstrap, client_id="someone-else") as wire:  # not muted, not throttled
        assert wire.request(M(topics=[], allow_auto_topic_creation=False), 9).throttle_time_ms == 0


def test_controller_mutation_rate(quota_broker: BrokerProcess) -> None:
    """2 partitions/s (a burst of 4 with 2 windows of 1 s): a 6-partition topic is created and
    puts the client in debt; the next CreateTopics (v6+) is refused with
    THROTTLING_QUOTA_EXCEEDED and a throttle time, v5 is served and only throttled, and once
    the debt is paid the client creates topics again."""
    set_quota(quota_broker.bootstrap, [("client-id", "creator")], {"controller_mutation_rate": 2})
    CT = P.CreateTopicsRequest

    def create(wire: WireClient, name: str, partitions: int, version: int):
        body = CT(topics=[CT.CreatableTopic(name=name, num_partitions=partitions, replication_factor=-1, assignments=[], configs=[])], timeout_ms=5000, validate_only=False)
        return wire.request(body, version)

    # the throttled connection is muted, so the client's next requests come on others
    with WireClient(quota_broker.bootstrap, client_id="creator") as wire, WireClient(quota_broker.bootstrap, client_id="creator") as other, \
            WireClient(quota_broker.bootstrap, client_id="creator") as third:
        first = create(wire, "mut-1", 6, 7)
        assert first.topics[0].error_code == 0 and first.throttle_time_ms > 0
        second = create(other, "mut-2", 1, 7)
        assert second.topics[0].error_code == E.THROTTLING_QUOTA_EXCEEDED and second.throttle_time_ms > 0
        assert second.topics[0].error_message == "The throttling quota has been exceeded."
        older = create(third, "mut-3", 1, 5)  # no such error in v5: served, throttled
        assert older.topics[0].error_code == 0 and older.throttle_time_ms > 0
        started = time.monotonic()
        again = create(wire, "mut-4", 1, 7)  # read once the first throttle is over
        assert time.monotonic() - started >= 0.5 * first.throttle_time_ms / 1000 or again.topics[0].error_code in (0, E.THROTTLING_QUOTA_EXCEEDED)
    time.sleep(2.5)  # the debt is paid back
    with WireClient(quota_broker.bootstrap, client_id="creator") as wire:
        assert create(wire, "mut-5", 1, 7).topics[0].error_code == 0
    with Client(quota_broker.bootstrap) as client:
        names = set(client.metadata().topics)
    assert {"mut-1", "mut-3", "mut-5"} <= names and "mut-2" not in names


def test_a_long_polling_consumer_is_not_charged_for_its_waits(quota_broker: BrokerProcess) -> None:
    """request_percentage counts work, not the time a Fetch parks waiting for data: a
    consumer allowed 2 % of a thread long-polls an idle topic for 4 s unthrottled."""
    with Client(quota_broker.bootstrap) as client:
        client.create_topic("idle-topic", 1)
    set_quota(quota_broker.bootstrap, [("client-id", "patient")], {"request_percentage": 2})
    F = P.FetchRequest
    with Client(quota_broker.bootstrap) as client:
        topic_id = client.topic("idle-topic").id
    body = F(replica_id=-1, max_wait_ms=500, min_bytes=1, max_bytes=1 << 20, isolation_level=0, session_id=0, session_epoch=-1,
             topics=[F.FetchTopic(topic_id=topic_id, partitions=[F.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])],
             forgotten_topics_data=[], rack_id="")
    with WireClient(quota_broker.bootstrap, client_id="patient") as wire:
        throttles = [wire.request(body, 13).throttle_time_ms for _ in range(8)]
    assert throttles == [0] * 8


def test_meters_of_clients_that_come_and_go_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    """A default client-id quota measures each client id by itself; a client that changes its
    id on every request must not grow the broker's memory without bound."""
    import fastlog.quotas as q

    class Store:
        def entries(self) -> dict:
            return {((q.CLIENT_ID, None),): {q.PRODUCER_BYTE_RATE: 1e9}}

    monkeypatch.setattr(q, "MAX_METERS", 500)
    manager = QuotaManager.__new__(QuotaManager)
    manager.store = Store()  # type: ignore[assignment]
    manager.samples, manager.window = 11, 1
    manager._meters, manager._meters_lock, manager._swept = {}, threading.Lock(), time.monotonic()
    manager.throttled = {}  # type: ignore[assignment]
    for i in range(20_000):
        manager.record(q.PRODUCER_BYTE_RATE, "u", f"client-{i}", 1, now=1000.0 + i * 0.001)
    assert len(manager._meters) <= 500


def test_a_huge_debt_is_bounded() -> None:
    from fastlog.quotas import TokenBucket

    bucket = TokenBucket(1000.0, 2.0, 0.0)
    assert bucket.take(50_000_000, 1000.0, 0.0) == 2.0  # capped at the window
    assert bucket.take(1, 1000.0, 4.5) == 0.0  # paid back within two windows, not in 14 hours
