"""What client quotas cost a producer that is not held back: confluent-kafka produces to one
broker with no quota set, with a quota set for some other client (the fast Produce path still
serves this one), and with a quota on this client too high to throttle it (its requests are
decoded and measured in Python); the order is repeated twice and each figure is the mean.

    python bench/bench_quotas.py [--records 300000] [--size 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Producer  # noqa: E402

from fastlog.client import Client  # noqa: E402
from tests.conftest import BrokerProcess  # noqa: E402

CLIENT_ID = "bench-producer"


def produce_rate(bootstrap: str, topic: str, records: int, size: int) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, "client.id": CLIENT_ID, "linger.ms": 5, "batch.size": 1 << 20, "acks": 1})
    payload = b"x" * size
    producer.produce(topic, payload)
    producer.flush(60)
    started = time.perf_counter()
    for sent in range(records):
        while True:
            try:
                producer.produce(topic, payload)
                break
            except BufferError:
                producer.poll(0.001)
        if sent % 1000 == 0:
            producer.poll(0)
    producer.flush(120)
    return records / (time.perf_counter() - started)


def set_quotas(bootstrap: str, case: str) -> None:
    with Client(bootstrap) as client:
        client.alter_client_quotas([
            ([("client-id", "someone-else")], {"producer_byte_rate": 1000 if case != "none" else None}),
            ([("client-id", CLIENT_ID)], {"producer_byte_rate": 1e12 if case == "this client" else None}),
        ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    cases = ("none", "another client", "this client")
    rates: dict[str, list[float]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory() as tmp:
        broker = BrokerProcess(Path(tmp) / "data", {"console.enable": "false"}).start()
        try:
            with Client(broker.bootstrap) as client:
                client.create_topic("quota-bench", 4)
            for _ in range(2):
                for case in cases:
                    set_quotas(broker.bootstrap, case)
                    rates[case].append(produce_rate(broker.bootstrap, "quota-bench", args.records, args.size))
        finally:
            broker.stop()
    base = statistics.mean(rates["none"])
    print(f"{args.records} records of {args.size} B, confluent-kafka, one broker")
    for case in cases:
        rate = statistics.mean(rates[case])
        print(f"  quota set for {case:15} {rate:12,.0f} rec/s  {rate / base:5.2f}x")


if __name__ == "__main__":
    main()
