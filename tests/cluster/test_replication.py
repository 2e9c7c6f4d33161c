"""Replicated partitions (issue 14): every acknowledged record survives the loss of a leader.

Three real `fastlog serve` processes, replication factor 3, min.insync.replicas=2, a
librdkafka producer with acks=all and idempotence on. Faults are SIGKILLs; every wait is
bounded. At the end the replicas' segment files are compared byte for byte: a follower
copies the leader's batches as they are, so replicas that agree hold the same bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fastlog.client import Client
from tests.cluster.helpers import Cluster, running_cluster, wait_for

TIMEOUT = 20
TOPIC = "acked"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path) as started:
        yield started


def create(bootstrap: str, name: str, partitions: int = 1, factor: int = 3, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, factor, config=configs)])[name].result(timeout=TIMEOUT)


def partition_info(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, list[int], list[int]]:
    """(leader, replicas, isr) as the cluster tells a client. A topic just created may not have
    reached the broker asked yet (as in Kafka, metadata spreads after CreateTopics answers):
    asked again for a few seconds."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 10
    while True:
        partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
        if partition in partitions or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    p = partitions[partition]
    return p.leader, sorted(p.replicas), sorted(p.isrs)


def leads_with_full_isr(bootstrap: str, node_id: int, replicas: int = 3) -> bool:
    """Whether the node at `bootstrap` leads TOPIC-0 by its own state (it answers a ListOffsets)
    with every replica in its ISR."""
    leader, _, isr = partition_info(bootstrap, TOPIC)
    if leader != node_id or len(isr) != replicas:
        return False
    with Client(bootstrap) as client:
        client.list_offsets([(TOPIC, 0)])  # NOT_LEADER_OR_FOLLOWER raises until it leads
    return True


class AckRecorder:
    """A producer writing numbered values in a thread (at most `rate` a second, at most
    200,000 in all), recording what is acknowledged."""

    def __init__(self, bootstrap: str, rate: float = float("inf")) -> None:
        self.rate = rate
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            "message.timeout.ms": 60_000,
        })
        self.acked: list[tuple[float, int, int]] = []  # (when, offset, number)
        self.sent_at: list[float] = []  # by number
        self.placed: dict[int, tuple[int, int]] = {}  # number -> (partition, offset) acknowledged
        self.errors: list[KafkaError] = []
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _delivered(self, error: KafkaError, message) -> None:
        if error is None:
            self.acked.append((time.monotonic(), message.offset(), int(message.value())))
            self.placed[int(message.value())] = (message.partition(), message.offset())
        else:
            if len(self.errors) < 5:
                print(f"delivery failed: {error}", file=sys.stderr)  # shown when a test fails
            self.errors.append(error)

    def _run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set() and self.sent < 200_000:
            ahead = self.sent / self.rate - (time.monotonic() - started)
            if ahead > 0:
                self.producer.poll(ahead)
            try:
                self.producer.produce(TOPIC, value=b"%d" % self.sent, on_delivery=self._delivered)
                self.sent_at.append(time.monotonic())
                self.sent += 1
            except BufferError:
                pass
            self.producer.poll(0.001 if self.sent % 50 == 0 else 0)
        self.producer.flush(60)

    def __enter__(self) -> "AckRecorder":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(90)


def read_all(bootstrap: str, topic: str, partition: int = 0) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "checker", "enable.auto.commit": False})
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    consumer.assign([TopicPartition(topic, partition, low)])
    values: list[int] = []
    deadline = time.monotonic() + 60
    position = low
    while position < high and time.monotonic() < deadline:
        message = consumer.poll(1)
        if message is not None and message.error() is None:
            values.append(int(message.value()))
            position = message.offset() + 1
    consumer.close()
    assert position >= high, f"read up to {position} of {high}"
    return values


def segment_bytes(cluster: Cluster, node: int, topic: str, partition: int = 0) -> bytes:
    directory = cluster.nodes[node].data_dir / f"{topic}-{partition}"
    return b"".join(p.read_bytes() for p in sorted(directory.glob("*.log")))


def test_acks_all_survives_a_sigkilled_leader(cluster) -> None:
    acks_all_survives_a_sigkilled_leader(cluster)


def test_acks_all_survives_a_sigkilled_leader_with_two_network_loops_per_node(tmp_path: Path) -> None:
    """`num.network.threads` given: a cluster node serves clients on that many loops (one when
    it is not given), and replication holds with connections on either loop."""
    with running_cluster(tmp_path, {"num.network.threads": "2"}) as cluster:
        for node in cluster.nodes.values():
            assert "(2 network loops" in node.log_text()
            if "GIL off" not in node.log_text():  # the node's interpreter, which may not be this one
                assert "num.network.threads=2 on a cluster node" in node.log_text()  # what it costs there
        acks_all_survives_a_sigkilled_leader(cluster)
        restarted = [n for n in cluster.nodes.values() if n.log_text().count("(2 network loops") == 2]
        assert len(restarted) == 1, "the killed leader came back on two loops too"


def test_a_cluster_node_serves_on_one_loop_unless_num_network_threads_is_given(cluster) -> None:
    for node in cluster.nodes.values():
        assert "(1 network loops" in node.log_text()
        if (os.cpu_count() or 1) > 1:  # the default would be more than one
            assert "unless num.network.threads is set" in node.log_text()


def acks_all_survives_a_sigkilled_leader(cluster: Cluster) -> None:
    create(cluster.bootstrap, TOPIC, **{"min.insync.replicas": "2"})
    leader, replicas, isr = partition_info(cluster.bootstrap, TOPIC)
    assert replicas == [1, 2, 3] and isr == [1, 2, 3]
    with AckRecorder(cluster.bootstrap) as recorder:
        wait_for(lambda: len(recorder.acked) > 2000, "records are acknowledged before the kill")
        killed_at = time.monotonic()
        cluster.nodes[leader].kill()
        survivors = [n for n in (1, 2, 3) if n != leader]
        survivor_bootstrap = ",".join(cluster.nodes[n].bootstrap for n in survivors)
        wait_for(lambda: partition_info(survivor_bootstrap, TOPIC)[0] in survivors, "a new leader from the ISR")
        def written_after_kill() -> list[float]:
            return [when for when, _, number in list(recorder.acked) if recorder.sent_at[number] > killed_at]

        wait_for(lambda: bool(written_after_kill()), "records produced after the kill are acknowledged", 30)
        print(f"first record produced after the kill acknowledged {min(written_after_kill()) - killed_at:.2f}s after it")
        acked_after_kill = len(recorder.acked)
        wait_for(lambda: len(recorder.acked) > acked_after_kill + 2000, "the new leader keeps taking writes")
        cluster.nodes[leader].start()  # the old leader comes back as a follower
        wait_for(lambda: partition_info(cluster.bootstrap, TOPIC)[2] == [1, 2, 3], "the old leader is back in the ISR", 30)
    assert not [e for e in recorder.errors if e.fatal()], recorder.errors[:3]
    values = read_all(cluster.bootstrap, TOPIC)
    assert len(values) == len(set(values)), "no record is written twice"
    assert values == sorted(values), "records are in the order they were produced"
    acked = {number for _, _, number in recorder.acked}
    assert acked <= set(values), f"{len(acked - set(values))} acknowledged records lost"
    offsets = {number: offset for _, offset, number in recorder.acked}
    assert all(values[offset] == number for number, offset in offsets.items()), "each at the offset it was acknowledged with"
    time.sleep(1)  # the followers take the last high watermark
    cluster.stop()
    copies = [segment_bytes(cluster, n, TOPIC) for n in (1, 2, 3)]
    assert copies[0] == copies[1] == copies[2], "the three replicas hold the same batches"


def test_acks_all_is_refused_without_enough_in_sync_replicas(cluster) -> None:
    create(cluster.bootstrap, TOPIC, factor=2, **{"min.insync.replicas": "2"})
    leader, replicas, _ = partition_info(cluster.bootstrap, TOPIC)
    follower = next(r for r in replicas if r != leader)
    cluster.nodes[follower].kill()
    others = ",".join(cluster.nodes[n].bootstrap for n in (1, 2, 3) if n != follower)
    wait_for(lambda: partition_info(others, TOPIC)[2] == [leader], "the follower leaves the ISR")
    results: list = []
    producer = Producer({"bootstrap.servers": others, "acks": "all", "message.timeout.ms": 3000, "retries": 0})
    producer.produce(TOPIC, value=b"0", on_delivery=lambda e, m: results.append(e))
    producer.flush(10)
    assert results and results[0] is not None and results[0].code() == KafkaError.NOT_ENOUGH_REPLICAS, results
    ones: list = []
    producer = Producer({"bootstrap.servers": others, "acks": 1})
    producer.produce(TOPIC, value=b"1", on_delivery=lambda e, m: ones.append(e))
    producer.flush(10)
    assert ones == [None], "acks=1 needs only the leader"
    cluster.nodes[follower].start()
    wait_for(lambda: partition_info(cluster.bootstrap, TOPIC)[2] == sorted(replicas), "the follower catches up and rejoins the ISR", 30)
    done: list = []
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    producer.produce(TOPIC, value=b"2", on_delivery=lambda e, m: done.append(e))
    producer.flush(10)
    assert done == [None]
    assert read_all(cluster.bootstrap, TOPIC) == [1, 2], "the refused record was not written"


def test_a_leader_cut_off_from_its_followers_shrinks_the_isr_and_they_catch_up(tmp_path: Path) -> None:
    with running_cluster(tmp_path, {"replica.lag.time.max.ms": "1500"}, replication_proxies=True) as cluster:
        create(cluster.bootstrap, TOPIC, **{"min.insync.replicas": "1"})
        leader, _, _ = partition_info(cluster.bootstrap, TOPIC)
        with AckRecorder(cluster.bootstrap) as recorder:
            wait_for(lambda: len(recorder.acked) > 1000, "records are acknowledged with the link up")
            cluster.proxies[leader].down(True)
            wait_for(lambda: partition_info(cluster.bootstrap, TOPIC)[2] == [leader], "the followers leave the ISR")
            status = subprocess.run(
                [sys.executable, "-m", "fastlog", "cluster", "status", "--bootstrap-server", cluster.bootstrap, "--json"],
                capture_output=True, text=True, timeout=TIMEOUT, check=True,
            )
            assert f"{TOPIC}-0" in json.loads(status.stdout)["under_replicated_partitions"]
            during = len(recorder.acked)
            wait_for(lambda: len(recorder.acked) > during + 1000, "the leader alone takes acks=all writes (min.insync.replicas=1)")
            cluster.proxies[leader].down(False)
            wait_for(lambda: partition_info(cluster.bootstrap, TOPIC)[2] == [1, 2, 3], "the followers catch up and rejoin the ISR", 30)
            after = len(recorder.acked)
            wait_for(lambda: len(recorder.acked) > after + 1000, "writes go on with the whole ISR")
        assert not recorder.errors, recorder.errors[:3]
        assert partition_info(cluster.bootstrap, TOPIC)[0] == leader, "the leader never changed"
        values = read_all(cluster.bootstrap, TOPIC)
        assert len(values) == len(set(values)) and values == sorted(values)
        assert {number for _, _, number in recorder.acked} <= set(values), "no acknowledged record is lost"
        time.sleep(1)
        cluster.stop()
        copies = [segment_bytes(cluster, n, TOPIC) for n in (1, 2, 3)]
        assert copies[0] == copies[1] == copies[2], "the followers hold the leader's batches"


class GroupReader:
    """A consumer in a group, in a thread, keeping every value it is given."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": True, "auto.commit.interval.ms": 200, "session.timeout.ms": 6000,
        })
        self.values: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.consumer.subscribe([TOPIC])
        while not self.stop.is_set():
            message = self.consumer.poll(0.2)
            if message is not None and message.error() is None:
                self.values.append(int(message.value()))
        self.consumer.close()

    def __enter__(self) -> "GroupReader":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_a_rolling_restart_under_load_loses_nothing_and_the_group_goes_on(cluster) -> None:
    create(cluster.bootstrap, TOPIC, partitions=3, **{"min.insync.replicas": "2"})

    def whole_isr() -> bool:
        metadata = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(timeout=5)
        partitions = [p for t in (TOPIC, "__consumer_offsets") if t in metadata.topics for p in metadata.topics[t].partitions.values()]
        return bool(partitions) and all(sorted(p.isrs) == [1, 2, 3] for p in partitions)

    with AckRecorder(cluster.bootstrap, rate=2000) as recorder, GroupReader(cluster.bootstrap, "rolling") as reader:
        wait_for(lambda: len(reader.values) > 500, "the group consumes before the restarts", 40)
        for node in (1, 2, 3):
            cluster.nodes[node].stop()  # SIGTERM: a clean shutdown, then back up
            acked, read = len(recorder.acked), len(reader.values)
            wait_for(lambda: len(recorder.acked) > acked + 500, f"writes go on while broker {node} is down", 30)
            cluster.nodes[node].start()
            wait_for(whole_isr, f"broker {node} is back in every ISR", 40)
            wait_for(lambda: len(reader.values) > read + 500, f"the group goes on after broker {node} came back", 40)
        recorder.stop.set()
        recorder.thread.join(90)
        acked_values = {number for _, _, number in recorder.acked}
        wait_for(lambda: acked_values <= set(reader.values), "the group has read every acknowledged record", 60)
    assert not [e for e in recorder.errors if e.fatal()], recorder.errors[:3]
    stored = set()
    for partition in range(3):
        values = read_all(cluster.bootstrap, TOPIC, partition)
        assert len(values) == len(set(values)) and values == sorted(values), f"partition {partition}: duplicates or disorder"
        stored |= set(values)
    assert acked_values <= stored, f"{len(acked_values - stored)} acknowledged records lost"


def test_a_seeded_schedule_of_kills_restarts_and_cut_links_loses_no_acknowledged_record(tmp_path: Path) -> None:
    """Fault 5: for about 40 s, every 2-4 s one of: SIGKILL a broker (one down at a time),
    restart the one down, or take a leader's replication link down for 1-3 s. Then everything
    comes back, and every acknowledged record must be at the offset it was acknowledged with,
    once, in order, and the three replicas must hold the same bytes."""
    import random

    seed = int(os.environ.get("FASTLOG_CHAOS_SEED", "1414"))
    rng = random.Random(seed)
    partitions = 2
    events: list[str] = []
    with running_cluster(tmp_path, {"replica.lag.time.max.ms": "1500"}, replication_proxies=True) as cluster:
        create(cluster.bootstrap, TOPIC, partitions=partitions, **{"min.insync.replicas": "2"})
        down: int | None = None
        with AckRecorder(cluster.bootstrap, rate=1000) as recorder:
            wait_for(lambda: len(recorder.acked) > 500, "records are acknowledged before the faults")
            ends = time.monotonic() + 40
            while time.monotonic() < ends:
                time.sleep(rng.uniform(2, 4))
                action = rng.choice(["kill", "restart", "cut"])
                if action == "kill" and down is None:
                    down = rng.choice([1, 2, 3])
                    cluster.nodes[down].kill()
                elif action == "restart" and down is not None:
                    cluster.nodes[down].start()
                    down = None
                elif action == "cut":
                    victim = rng.choice([n for n in (1, 2, 3) if n != down])
                    cluster.proxies[victim].down(True)
                    time.sleep(rng.uniform(1, 3))
                    cluster.proxies[victim].down(False)
                else:
                    continue
                events.append(f"{action} {down if action != 'cut' else victim}")
            if down is not None:
                cluster.nodes[down].start()
            whole = [1, 2, 3]
            for partition in range(partitions):
                wait_for(lambda: partition_info(cluster.bootstrap, TOPIC, partition)[2] == whole, f"partition {partition}'s ISR is whole again ({events})", 60)
            acked = len(recorder.acked)
            wait_for(lambda: len(recorder.acked) > acked + 500, f"writes go on after the faults ({events})", 30)
        stored: dict[int, list[int]] = {p: read_all(cluster.bootstrap, TOPIC, p) for p in range(partitions)}
        everything = [v for values in stored.values() for v in values]
        assert len(everything) == len(set(everything)), f"no record is written twice (seed {seed}, {events})"
        for partition, values in stored.items():
            assert values == sorted(values), f"partition {partition} in order (seed {seed}, {events})"
        missing = {number for _, _, number in recorder.acked} - set(everything)
        assert not missing, f"{len(missing)} acknowledged records lost (seed {seed}, {events})"
        moved = [n for n, (p, offset) in recorder.placed.items() if stored[p][offset] != n]
        assert not moved, f"{len(moved)} records not at the offset they were acknowledged with (seed {seed}, {events})"
        time.sleep(1)
        cluster.stop()
        for partition in range(partitions):
            copies = [segment_bytes(cluster, n, TOPIC, partition) for n in (1, 2, 3)]
            assert copies[0] == copies[1] == copies[2], f"partition {partition}: the replicas diverge (seed {seed}, {events})"


def offline_replicas(bootstrap: str, topic: str, partition: int = 0) -> list[int]:
    from fastlog import protocol
    from tests.broker.wire import WireClient

    M = protocol.MetadataRequest
    with WireClient(bootstrap.split(",")[0]) as wire:
        answer = wire.request(M(topics=[M.MetadataRequestTopic(name=topic)], allow_auto_topic_creation=False), 9)
    return sorted(answer.topics[0].partitions[partition].offline_replicas)


def test_a_follower_whose_disk_fills_up_takes_its_replica_offline_and_the_others_go_on(cluster) -> None:
    """Fault 6: a follower that cannot write (its files may not grow past 24 MB: EFBIG, as a
    full disk gives ENOSPC) reports its replica offline; the partition goes on with the other
    two, and the broker goes on serving what it can still write."""
    create(cluster.bootstrap, TOPIC, **{"min.insync.replicas": "2", "segment.bytes": str(1 << 30)})
    leader, replicas, _ = partition_info(cluster.bootstrap, TOPIC)
    full = next(r for r in replicas if r != leader)
    cluster.nodes[full].stop()
    cluster.nodes[full].file_size_limit = 24 << 20
    cluster.nodes[full].start()
    wait_for(lambda: partition_info(cluster.bootstrap, TOPIC)[2] == [1, 2, 3], "the follower is back in the ISR")
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 5})
    failures: list = []
    value = b"x" * 1000
    for i in range(40_000):  # 40 MB: past the follower's limit
        producer.produce(TOPIC, value=value, on_delivery=lambda e, m: e and failures.append(e))
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0 and not failures, failures[:3]
    wait_for(lambda: offline_replicas(cluster.bootstrap, TOPIC) == [full], "the full follower's replica is listed offline")
    leader_now, _, isr = partition_info(cluster.bootstrap, TOPIC)
    assert full not in isr and leader_now != full and len(isr) == 2, "the partition goes on with the two others"
    assert "this replica is offline" in cluster.nodes[full].log_text()
    create(cluster.bootstrap, "small", factor=1)  # the full broker still works where it can write
    ok: list = []
    elsewhere = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    elsewhere.produce("small", value=b"fine", on_delivery=lambda e, m: ok.append(e))
    elsewhere.flush(10)
    assert ok == [None]
    cluster.nodes[full].stop()
    cluster.nodes[full].file_size_limit = None
    cluster.nodes[full].start()  # the disk has room again: the replica catches up
    wait_for(lambda: partition_info(cluster.bootstrap, TOPIC)[2] == [1, 2, 3], "the replica is back in the ISR after a restart", 60)
    assert offline_replicas(cluster.bootstrap, TOPIC) == []


def test_a_leader_whose_disk_fills_up_hands_leadership_over_and_no_acknowledged_record_is_lost(cluster) -> None:
    """The leader's own disk fills up: the Produce it cannot write is answered
    KAFKA_STORAGE_ERROR (retriable), it reports its replica offline, the controller moves
    leadership to the rest of the ISR, and the producer's retries land there: every record is
    acknowledged and read back once, in order."""
    full = 1
    cluster.nodes[full].stop()
    cluster.nodes[full].file_size_limit = 12 << 20
    cluster.nodes[full].start()
    wait_for(lambda: cluster.view(2)[0] == {1, 2, 3}, "the restarted broker is back")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    config = {"min.insync.replicas": "2", "segment.bytes": str(1 << 30)}
    admin.create_topics([NewTopic(TOPIC, 1, replica_assignment=[[full, 2, 3]], config=config)])[TOPIC].result(timeout=TIMEOUT)
    wait_for(lambda: partition_info(cluster.bootstrap, TOPIC)[0] == full, "the broker with the small disk leads")
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    failures: list = []
    for i in range(20_000):  # 20 MB: past the leader's limit
        producer.produce(TOPIC, value=b"%d" % i + b" " * 1000, on_delivery=lambda e, m: e and failures.append(e))
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0 and not failures, failures[:3]
    leader, _, isr = partition_info(cluster.bootstrap, TOPIC)
    assert leader in (2, 3) and full not in isr
    assert offline_replicas(cluster.bootstrap, TOPIC) == [full]
    assert "this replica is offline" in cluster.nodes[full].log_text()
    assert read_all(cluster.bootstrap, TOPIC) == list(range(20_000)), "every acknowledged record, once, in order"


def test_a_leader_whose_rolled_segment_fails_to_sync_hands_leadership_over(cluster) -> None:
    """The sync of a segment the leader rolled fails on its core's flusher thread (forced: a
    file the sync opens is a symlink to itself). With no produce coming to meet the failure,
    the leader finds it, logs it and reports its replica offline, as Kafka takes a log
    directory offline: leadership moves to the rest of the ISR, which takes the next records,
    and every acknowledged record is read back once, in order."""
    create(cluster.bootstrap, TOPIC, **{"min.insync.replicas": "2", "segment.bytes": "16384"})
    leader, _, _ = partition_info(cluster.bootstrap, TOPIC)
    wait_for(lambda: leads_with_full_isr(cluster.nodes[leader].bootstrap, leader), "the leader leads, every replica in sync")
    txn_index = cluster.nodes[leader].data_dir / f"{TOPIC}-0" / f"{0:020}.txnindex"
    txn_index.unlink(missing_ok=True)
    txn_index.symlink_to(txn_index.name)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    failures: list = []

    def produce(value: int) -> None:
        producer.produce(TOPIC, value=b"%d" % value + b" " * 1000, on_delivery=lambda e, m: e and failures.append(e))
        assert producer.flush(30) == 0 and not failures, failures[:3]

    sent = 0
    while len(list(txn_index.parent.glob("*.log"))) == 1:  # one at a time, none after the roll
        assert sent < 100, "no roll"
        produce(sent)
        sent += 1
    wait_for(lambda: "a sync failed" in cluster.nodes[leader].log_text(), "the leader logs the failed sync")
    wait_for(lambda: offline_replicas(cluster.bootstrap, TOPIC) == [leader], "the failed replica is listed offline")
    wait_for(lambda: partition_info(cluster.bootstrap, TOPIC)[0] not in (leader, -1), "leadership moved")
    for value in range(sent, 500):
        produce(value)
    assert leader not in partition_info(cluster.bootstrap, TOPIC)[2]
    assert read_all(cluster.bootstrap, TOPIC) == list(range(500)), "every acknowledged record, once, in order"


def test_a_follower_with_a_damaged_segment_takes_its_replica_offline_and_the_others_go_on(cluster) -> None:
    """Fault 6, the other half: a byte of a follower's segment flips while it is down (below its
    recovery point, which recovery does not read again). After its restart it checks its
    replicas, reports the damaged one offline, and is neither in the ISR nor a candidate
    leader; writes go on with the other two; the damaged copy is never served."""
    create(cluster.bootstrap, TOPIC, **{"min.insync.replicas": "2"})
    leader, replicas, _ = partition_info(cluster.bootstrap, TOPIC)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    for i in range(5000):
        producer.produce(TOPIC, value=b"%d" % i)
    assert producer.flush(30) == 0
    damaged = next(r for r in replicas if r != leader)
    wait_for(lambda: len(segment_bytes(cluster, damaged, TOPIC)) == len(segment_bytes(cluster, leader, TOPIC)), "the follower has every batch")
    cluster.nodes[damaged].stop()
    segment = sorted((cluster.nodes[damaged].data_dir / f"{TOPIC}-0").glob("*.log"))[0]
    with open(segment, "r+b") as f:
        f.seek(segment.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    cluster.nodes[damaged].start()
    wait_for(lambda: offline_replicas(cluster.bootstrap, TOPIC) == [damaged], "the damaged replica is listed offline")
    assert "damaged data at offset" in cluster.nodes[damaged].log_text()
    for i in range(5000, 6000):
        producer.produce(TOPIC, value=b"%d" % i)
    assert producer.flush(30) == 0, "writes go on with the two other replicas"
    leader_now, _, isr = partition_info(cluster.bootstrap, TOPIC)
    assert damaged not in isr and leader_now != damaged
    assert read_all(cluster.bootstrap, TOPIC) == list(range(6000))


def test_elect_leaders_moves_leadership_back_to_the_preferred_replica(cluster) -> None:
    from confluent_kafka import ElectionType

    create(cluster.bootstrap, TOPIC, partitions=3)
    preferred = {p: partition_info(cluster.bootstrap, TOPIC, p)[0] for p in range(3)}
    moved = preferred[0]
    cluster.nodes[moved].stop()  # a controlled shutdown moves its leadership away
    cluster.nodes[moved].start()
    whole = [1, 2, 3]
    wait_for(lambda: all(partition_info(cluster.bootstrap, TOPIC, p)[2] == whole for p in range(3)), "the broker is back in sync")
    assert partition_info(cluster.bootstrap, TOPIC, 0)[0] != moved, "leadership does not move back by itself (the check runs every 300 s)"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    partitions = [TopicPartition(TOPIC, p) for p in range(3)]
    result = admin.elect_leaders(ElectionType.PREFERRED, partitions).result(timeout=TIMEOUT)
    errors = {tp.partition: error for tp, error in result.items()}
    assert errors[0] is None, errors
    assert all(errors[p] is not None and errors[p].code() == KafkaError.ELECTION_NOT_NEEDED for p in (1, 2)), errors
    assert {p: partition_info(cluster.bootstrap, TOPIC, p)[0] for p in range(3)} == preferred
    unclean = admin.elect_leaders(ElectionType.UNCLEAN, partitions[:1]).result(timeout=TIMEOUT)
    assert next(iter(unclean.values())).code() == KafkaError.ELECTION_NOT_NEEDED, "a partition with a leader needs no unclean election"


def test_auto_leader_rebalance_moves_leadership_back(tmp_path: Path) -> None:
    with running_cluster(tmp_path, {"leader.imbalance.check.interval.seconds": "1"}) as cluster:
        create(cluster.bootstrap, TOPIC)
        preferred = partition_info(cluster.bootstrap, TOPIC)[0]
        cluster.nodes[preferred].stop()
        others = ",".join(cluster.nodes[n].bootstrap for n in (1, 2, 3) if n != preferred)
        wait_for(lambda: partition_info(others, TOPIC)[0] not in (preferred, -1), "another replica leads")
        cluster.nodes[preferred].start()
        wait_for(lambda: partition_info(cluster.bootstrap, TOPIC)[0] == preferred, "the preferred replica leads again", 30)


def reassignment_requests(bootstrap: str, topic: str, target: list[int] | None) -> tuple[int, list]:
    """(error of the partition's AlterPartitionReassignments answer, ongoing reassignments)."""
    from fastlog import protocol
    from tests.broker.wire import WireClient

    A, L = protocol.AlterPartitionReassignmentsRequest, protocol.ListPartitionReassignmentsRequest
    with WireClient(bootstrap.split(",")[0]) as wire:
        answer = wire.request(A(timeout_ms=10_000, topics=[A.ReassignableTopic(name=topic, partitions=[A.ReassignablePartition(partition_index=0, replicas=target)])]), 0)
        ongoing = wire.request(L(timeout_ms=10_000, topics=None), 0)
    return answer.responses[0].partitions[0].error_code, ongoing.topics


def test_a_reassignment_moves_a_partition_to_other_brokers_after_they_catch_up(tmp_path: Path) -> None:
    from fastlog import protocol
    from fastlog.protocol import ErrorCode
    from tests.broker.wire import WireClient

    with running_cluster(tmp_path, replication_proxies=True) as cluster:
        create(cluster.bootstrap, TOPIC, factor=1)
        source, _, _ = partition_info(cluster.bootstrap, TOPIC)
        targets = [n for n in (1, 2, 3) if n != source]
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
        for i in range(2000):
            producer.produce(TOPIC, value=b"%d" % i)
        assert producer.flush(20) == 0
        cluster.proxies[source].down(True)  # the new replicas cannot catch up yet
        error, ongoing = reassignment_requests(cluster.bootstrap, TOPIC, targets)
        assert error == 0
        [partition] = ongoing[0].partitions
        assert (sorted(partition.adding_replicas), partition.removing_replicas) == (targets, [source])
        time.sleep(1)
        assert partition_info(cluster.bootstrap, TOPIC)[0] == source, "no switch before the new replicas are in sync"
        cluster.proxies[source].down(False)
        wait_for(lambda: sorted(partition_info(cluster.bootstrap, TOPIC)[1]) == targets, "the partition lives on the two other brokers")
        leader, _, isr = partition_info(cluster.bootstrap, TOPIC)
        assert leader in targets and sorted(isr) == targets
        assert reassignment_requests(cluster.bootstrap, TOPIC, None) == (ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, [])
        assert reassignment_requests(cluster.bootstrap, TOPIC, [targets[0], 9])[0] == ErrorCode.INVALID_REPLICA_ASSIGNMENT
        assert read_all(cluster.bootstrap, TOPIC) == list(range(2000)), "every record moved with it"
        F = protocol.FetchRequest
        fetch = F(replica_id=-1, max_wait_ms=0, topics=[F.FetchTopic(topic=TOPIC, partitions=[F.FetchPartition(partition=0, partition_max_bytes=1024)])])
        with WireClient(cluster.nodes[source].bootstrap) as wire:
            assert wire.request(fetch, 11).responses[0].partitions[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        moved_away = cluster.nodes[source].data_dir / f"{TOPIC}-0"
        wait_for(lambda: not moved_away.exists(), "the old replica's log is deleted from the broker it left")


def test_a_follower_behind_the_leaders_log_start_starts_over_there(cluster) -> None:
    """A follower down while the leader deleted the records it lacks (DeleteRecords here,
    retention alike) cannot fetch them: it empties its log and starts at the leader's log
    start (Kafka's truncateFullyAndStartAt), then catches up and rejoins the ISR."""
    from fastlog import protocol
    from tests.broker.wire import WireClient

    create(cluster.bootstrap, TOPIC, **{"segment.bytes": "100000"})
    leader, replicas, _ = partition_info(cluster.bootstrap, TOPIC)
    behind = next(r for r in replicas if r != leader)
    cluster.nodes[behind].stop()
    others = ",".join(cluster.nodes[n].bootstrap for n in (1, 2, 3) if n != behind)
    producer = Producer({"bootstrap.servers": others, "acks": "all"})
    for i in range(3000):
        producer.produce(TOPIC, value=b"%d" % i)
    assert producer.flush(20) == 0
    D = protocol.DeleteRecordsRequest
    request = D(topics=[D.DeleteRecordsTopic(name=TOPIC, partitions=[D.DeleteRecordsPartition(partition_index=0, offset=2000)])], timeout_ms=10_000)
    with WireClient(cluster.nodes[leader].bootstrap) as wire:
        assert wire.request(request, 2).topics[0].partitions[0].low_watermark == 2000
    cluster.nodes[behind].start()
    wait_for(lambda: partition_info(cluster.bootstrap, TOPIC)[2] == [1, 2, 3], "the follower catches up from the leader's log start", 30)
    assert "starting the replica there" in cluster.nodes[behind].log_text()
    for other in (n for n in (1, 2, 3) if n != behind):
        cluster.nodes[other].stop()  # leadership moves to the replica that started over
    wait_for(lambda: partition_info(cluster.nodes[behind].bootstrap, TOPIC)[0] == behind, "it leads")
    assert read_all(cluster.nodes[behind].bootstrap, TOPIC) == list(range(2000, 3000)), "it holds what the leader held"


def test_requests_pipelined_behind_an_acks_all_produce_are_answered_after_it(cluster) -> None:
    """An acks=all Produce waits for the followers while the requests behind it on the same
    connection are answered at once; their responses still go out after its response."""
    from fastlog import protocol
    from tests.broker.test_network_loops import produce_request
    from tests.broker.wire import WireClient

    create(cluster.bootstrap, TOPIC, factor=3, **{"min.insync.replicas": "3"})
    leader, _, _ = partition_info(cluster.bootstrap, TOPIC)
    leader_node = cluster.nodes[leader].bootstrap
    # The leader as the metadata names it may not have taken the role yet (its NOT_LEADER
    # would fail the first round): it must answer a ListOffsets and see the whole ISR itself.
    wait_for(lambda: leads_with_full_isr(leader_node, leader), "the leader leads, every replica in sync")
    with WireClient(leader_node) as client:
        for round_ in range(5):
            produce = produce_request(TOPIC, [b"%d" % round_])
            produce.acks = -1
            frames = [client.encode(produce, 9)] + [client.encode(protocol.MetadataRequest(topics=None), 9) for _ in range(3)]
            client.sock.sendall(b"".join(len(f).to_bytes(4, "big") + f for f in frames))  # read by the broker at once
            sent = list(range(client.correlation_id - 3, client.correlation_id + 1))
            answered = []
            produced = client.read_response(protocol.ProduceRequest.API_KEY, 9)
            answered.append(client.last_correlation_id)
            for _ in range(3):
                client.read_response(protocol.MetadataRequest.API_KEY, 9)
                answered.append(client.last_correlation_id)
            assert answered == sent, "answered in the order sent"
            partition = produced.responses[0].partition_responses[0]
            assert (partition.error_code, partition.base_offset) == (0, round_)
