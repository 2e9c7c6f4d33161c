"""What transactions cost: transactional produce with 100 and 10,000 records per transaction next
to the idempotent producer, and the read_committed consumer's end-to-end latency next to
read_uncommitted, on one broker in one run.

    python bench/bench_transactions.py [--records 200000] [--size 100] [--seconds 5]

Throughput: confluent-kafka produces `--records` records of `--size` bytes to a 4-partition
topic, idempotent (`enable.idempotence`) or in transactions of 100 / 10,000 records (each
transaction: AddPartitionsToTxn, the batches, EndTxn with a COMMIT marker per partition, fsynced).
The order is idempotent, 100, 10,000, idempotent, 100, 10,000: each figure is the mean of
its two runs.

Latency: for `--seconds`, a producer sends 10 records every 10 ms (in a transaction each time
for read_committed, idempotent for read_uncommitted) and a consumer in another thread takes
each record's (arrival - create timestamp); p50 and p99 in ms. A read_committed consumer gets a
transaction's records only once its COMMIT marker moved the last stable offset past them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.conftest import BrokerProcess  # noqa: E402

PARTITIONS = 4


def create_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)


def produce_rate(bootstrap: str, topic: str, records: int, size: int, per_txn: int) -> float:
    """Records per second; `per_txn` 0: idempotent, no transactions."""
    conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, "batch.size": 1 << 20}
    if per_txn:
        conf["transactional.id"] = f"bench-{topic}"
    producer = Producer(conf)
    if per_txn:
        producer.init_transactions(30)
    payload = b"x" * size
    if per_txn:  # warm up: metadata, the coordinator, producer ids (not timed)
        producer.begin_transaction()
    producer.produce(topic, payload, partition=0)
    if per_txn:
        producer.commit_transaction(60)
    producer.flush(60)
    started = time.perf_counter()
    sent = 0
    while sent < records:
        count = min(per_txn or records, records - sent)
        if per_txn:
            producer.begin_transaction()
        for i in range(count):
            while True:
                try:
                    producer.produce(topic, payload, partition=(sent + i) % PARTITIONS)
                    break
                except BufferError:
                    producer.poll(0.01)
        if per_txn:
            producer.commit_transaction(60)
        sent += count
    producer.flush(60)
    return records / (time.perf_counter() - started)


def latency(bootstrap: str, topic: str, transactional: bool, seconds: float) -> tuple[float, float, int]:
    """(p50, p99 in ms, records seen) of produce-to-consume for read_committed (transactions)
    or read_uncommitted (idempotent)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"lat-{topic}", "enable.auto.commit": False,
        "isolation.level": "read_committed" if transactional else "read_uncommitted", "fetch.wait.max.ms": 100,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    delays: list[float] = []
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            message = consumer.poll(0.1)
            if message is not None and not message.error():
                delays.append(time.time() * 1000 - message.timestamp()[1])

    reader = threading.Thread(target=consume)
    reader.start()
    conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0}
    if transactional:
        conf["transactional.id"] = f"lat-{topic}"
    producer = Producer(conf)
    if transactional:
        producer.init_transactions(30)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if transactional:
            producer.begin_transaction()
        for i in range(10):
            producer.produce(topic, b"x" * 100, partition=i % PARTITIONS)
        if transactional:
            producer.commit_transaction(30)
        else:
            producer.flush(30)
        time.sleep(0.01)
    time.sleep(1.0)
    stop.set()
    reader.join()
    consumer.close()
    ordered = sorted(delays)
    if not ordered:
        return float("nan"), float("nan"), 0
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1], len(ordered)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = BrokerProcess(Path(tmp) / "data", {"transaction.state.log.num.partitions": "4"})
        broker.start()
        try:
            rates: dict[str, list[float]] = {"idempotent": [], "txn 100": [], "txn 10000": []}
            for round_ in range(2):
                for name, per_txn in (("idempotent", 0), ("txn 100", 100), ("txn 10000", 10_000)):
                    topic = f"tput-{per_txn}-{round_}"
                    create_topic(broker.bootstrap, topic)
                    rates[name].append(produce_rate(broker.bootstrap, topic, args.records, args.size, per_txn))
            base = statistics.mean(rates["idempotent"])
            print(f"produce, {args.records} records of {args.size} B, {PARTITIONS} partitions:")
            for name, values in rates.items():
                mean = statistics.mean(values)
                print(f"  {name:<11} {mean:>12,.0f} rec/s  {mean * args.size / 1e6:7.1f} MB/s  {mean / base:5.2f}x idempotent")
            print(f"end-to-end latency, 10 records every 10 ms for {args.seconds:.0f} s:")
            for name, transactional in (("read_uncommitted (idempotent)", False), ("read_committed (transactions)", True)):
                topic = f"lat-{int(transactional)}"
                create_topic(broker.bootstrap, topic)
                p50, p99, seen = latency(broker.bootstrap, topic, transactional, args.seconds)
                print(f"  {name:<30} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  ({seen} records)")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
