"""What replication costs, and how long a partition is unwritable when its leader dies.

Three `fastlog serve` processes on this machine (loopback, default timeouts), one run:

1. the same load, acks=all, 1 KB records from one confluent-kafka producer, to a topic with
   replication factor 1 and then to one with replication factor 3 (min.insync.replicas=2):
   records/s, MB/s, and p50/p99 of the time from produce() to the delivery report;
2. failover: while a producer writes to the replicated topic, the leader of partition 0 is
   SIGKILLed; the time from the kill to the acknowledgement of the first record produced
   after it to that partition.

    python bench/bench_replication.py [--records 300000] [--size 1024] [--partitions 3] [--rate 2000] [--rounds 3]

Every wait is bounded; the brokers are stopped at the end.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.cluster.helpers import Cluster, agreed, wait_for  # noqa: E402

TIMEOUT = 120
LINGER_MS = 50


def create(bootstrap: str, name: str, partitions: int, factor: int, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, factor, config=configs)])[name].result(timeout=30)
    wait_for(lambda: all(p.leader >= 0 for p in admin.list_topics(name, timeout=5).topics[name].partitions.values()), "leaders")


def delete(bootstrap: str, name: str) -> None:
    """Each round starts as the first did: the last one's data is not left for the kernel to
    write back while the next is measured (dirty pages of deleted files are dropped)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([name])[name].result(timeout=30)
    wait_for(lambda: name not in admin.list_topics(timeout=5).topics, "the topic is deleted")


def warm_up(producer: Producer, topic: str) -> None:
    """Connections, metadata and the producer id, before anything is timed."""
    for partition in range(len(producer.list_topics(topic, timeout=10).topics[topic].partitions)):
        producer.produce(topic, value=b"warm-up", partition=partition)
    assert producer.flush(30) == 0


def load(bootstrap: str, topic: str, records: int, size: int) -> dict[str, float]:
    # A queue that holds the whole load: produce() never blocks, so the client does not spin
    # on a full queue and take the CPU the brokers need (this machine may have two cores).
    # librdkafka's defaults otherwise: with enable.idempotence its broker threads wake millions
    # of times a second while 5 requests wait for acks=all (about one core of this machine).
    producer = Producer({
        "bootstrap.servers": bootstrap, "acks": "all", "linger.ms": LINGER_MS,
        "queue.buffering.max.messages": max(records, 100_000), "queue.buffering.max.kbytes": 4 << 20,
    })
    value = b"x" * size
    latencies: list[float] = []
    failed = []
    warm_up(producer, topic)

    def delivered(error, message) -> None:
        if error is not None:
            failed.append(error)

    gc.disable()  # 100,000s of callbacks alive at once make each collection walk them all
    started = time.perf_counter()
    for i in range(records):
        sent = time.perf_counter()
        while True:
            try:
                producer.produce(topic, value=value, on_delivery=lambda e, m, s=sent: (latencies.append(time.perf_counter() - s), delivered(e, m)))
                break
            except BufferError:
                producer.poll(0.01)
        if i % 100 == 0:
            producer.poll(0)
    assert producer.flush(TIMEOUT) == 0, "not every record was delivered in time"
    elapsed = time.perf_counter() - started
    gc.enable()
    assert not failed, failed[:3]
    latencies.sort()
    return {
        "records/s": records / elapsed,
        "MB/s": records * size / elapsed / 1e6,
        "p50 ms": 1000 * latencies[len(latencies) // 2],
        "p99 ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


def paced(bootstrap: str, topic: str, rate: int, seconds: float, size: int) -> dict[str, float]:
    """Latency at a steady `rate` records/s (a saturating load measures its own queue)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1, "enable.idempotence": True})
    value = b"x" * size
    latencies: list[float] = []
    warm_up(producer, topic)
    started = time.perf_counter()
    count = int(rate * seconds)
    for i in range(count):
        due = started + i / rate
        producer.poll(0)
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)  # not a busy poll: the brokers share this machine's cores
        sent = time.perf_counter()
        producer.produce(topic, value=value, on_delivery=lambda e, m, s=sent: e is None and latencies.append(time.perf_counter() - s))
    assert producer.flush(TIMEOUT) == 0
    latencies.sort()
    return {"p50 ms": 1000 * latencies[len(latencies) // 2], "p99 ms": 1000 * latencies[int(len(latencies) * 0.99)]}


def failover(cluster: Cluster, topic: str) -> float:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    leader = admin.list_topics(topic, timeout=5).topics[topic].partitions[0].leader
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 1, "enable.idempotence": True})
    acked: list[tuple[float, float]] = []  # (produced, acknowledged)
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            producer.produce(topic, value=b"f", partition=0, on_delivery=lambda e, m, s=sent: e is None and acked.append((s, time.monotonic())))
            producer.poll(0.005)
        producer.flush(30)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    wait_for(lambda: len(acked) > 200, "writes before the kill")
    killed = time.monotonic()
    cluster.nodes[leader].kill()
    wait_for(lambda: any(sent > killed for sent, _ in list(acked)), "a write produced after the kill is acknowledged", 60)
    stop.set()
    writer.join(60)
    return min(done for sent, done in acked if sent > killed) - killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--rate", type=int, default=2000, help="records/s of the latency runs")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs of each, alternating")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        cluster = Cluster(Path(root))
        for node in cluster.nodes.values():  # the defaults are what is measured
            node.overrides.pop("broker.session.timeout.ms")
            node.overrides.pop("controller.quorum.election.timeout.ms")
        cluster.start()
        try:
            wait_for(lambda: agreed(cluster, [1, 2, 3], {1, 2, 3}), "the cluster settles")
            runs: dict[str, list[dict[str, float]]] = {"rf1": [], "rf3": []}
            for round_ in range(args.rounds):  # alternating, each on a fresh topic
                for topic, factor in (("rf1", 1), ("rf3", 3)):
                    name = f"{topic}-{round_}"
                    create(cluster.bootstrap, name, args.partitions, factor, **{"min.insync.replicas": str(min(factor, 2))})
                    runs[topic].append(load(cluster.bootstrap, name, args.records, args.size))
                    delete(cluster.bootstrap, name)
            print(f"{args.records} records of {args.size} B, acks=all, {args.partitions} partitions, 3 brokers on one machine;"
                  f" median of {args.rounds} rounds (all rounds' records/s in brackets)")
            median = {}
            for topic, results in runs.items():
                r = median[topic] = sorted(results, key=lambda x: x["records/s"])[len(results) // 2]
                every = ", ".join(f"{x['records/s']:,.0f}" for x in results)
                print(f"  {topic}: {r['records/s']:>9,.0f} records/s  {r['MB/s']:6.1f} MB/s  p50 {r['p50 ms']:6.1f} ms  p99 {r['p99 ms']:6.1f} ms  [{every}]")
            print(f"  replicated / unreplicated throughput: {median['rf3']['records/s'] / median['rf1']['records/s']:.2f}")
            print(f"latency at a steady {args.rate} records/s (acks=all):")
            for topic, factor in (("rf1-paced", 1), ("rf3-paced", 3)):
                create(cluster.bootstrap, topic, args.partitions, factor, **{"min.insync.replicas": str(min(factor, 2))})
                r = paced(cluster.bootstrap, topic, args.rate, 5, args.size)
                print(f"  {topic}: p50 {r['p50 ms']:6.2f} ms  p99 {r['p99 ms']:6.2f} ms")
            print(f"  failover: first acknowledged write {failover(cluster, 'rf3-paced'):.2f} s after the leader was SIGKILLed")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
