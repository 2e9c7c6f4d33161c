"""A group member in its own process, for tests that SIGKILL it: consumes, commits after
every poll, and prints one JSON line per record and per commit."""

from __future__ import annotations

import json
import sys

from kafka import KafkaConsumer


def main(bootstrap: str, topic: str, group: str) -> None:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False,
        session_timeout_ms=3000, heartbeat_interval_ms=300, max_poll_interval_ms=10_000,
    )
    consumer.subscribe([topic])
    consumer.topics()  # metadata after subscribe(): see helpers.GroupMember
    while True:
        batches = consumer.poll(timeout_ms=100)
        for tp, records in batches.items():
            for r in records:
                print(json.dumps({"p": tp.partition, "o": r.offset, "v": r.value.decode()}), flush=True)
        if batches:
            consumer.commit()
            committed = {tp.partition: records[-1].offset + 1 for tp, records in batches.items()}
            print(json.dumps({"committed": committed}), flush=True)
        print(json.dumps({"assignment": sorted(tp.partition for tp in consumer.assignment())}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
