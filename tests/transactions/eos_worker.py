"""A consume-transform-produce worker with exactly-once semantics, in its own process so that
tests can SIGKILL it at any moment.

    python eos_worker.py BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID EXPECTED BATCH DEADLINE_S

Each transaction takes up to BATCH records from INPUT (a read_committed member of GROUP), writes
`b"out-" + value` under the same key to the same partition of OUTPUT, and commits the consumer's
positions inside the transaction. Every start uses the same transactional id, so its
InitProducerId fences the previous incarnation and aborts whatever it left open. It exits 0 once
GROUP's committed offsets of INPUT add up to EXPECTED. Prints one JSON line per event:
{"ready": ...}, {"committed": n, "positions": {partition: offset}}, {"aborted": error},
{"done": total}.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition


def say(**fields) -> None:
    print(json.dumps(fields), flush=True)


def committed_total(consumer: Consumer, topic: str) -> int:
    assignment = consumer.assignment()
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    if len(assignment) < len(partitions):  # not (yet) the only member: keep consuming
        return -1
    committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    return sum(max(tp.offset, 0) for tp in committed)


def rewind(consumer: Consumer) -> None:
    """After an aborted transaction: back to the group's committed offsets."""
    for tp in consumer.committed(consumer.assignment(), timeout=10):
        if tp.offset < 0:
            tp.offset = OFFSET_BEGINNING
        consumer.seek(tp)


def main(bootstrap: str, input_topic: str, output_topic: str, group: str, transactional_id: str,
         expected: int, batch: int, deadline_s: float) -> None:
    rng = random.Random(os.getpid())
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 2})
    producer.init_transactions(30)  # before joining: fences the last incarnation, aborting its transaction
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "session.timeout.ms": 2000, "heartbeat.interval.ms": 200, "max.poll.interval.ms": 20000,
    })
    consumer.subscribe([input_topic])
    say(ready=os.getpid())
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        messages = consumer.consume(batch, 0.3)
        for m in messages:
            if m.error() is not None:
                raise KafkaException(m.error())
        if not messages:
            total = committed_total(consumer, input_topic)
            if total >= expected:
                say(done=total)
                consumer.close()
                return
            continue
        producer.begin_transaction()
        try:
            for m in messages:
                producer.produce(output_topic, key=m.key(), value=b"out-" + m.value(), partition=m.partition())
            if rng.random() < 0.5:
                producer.flush(30)  # sometimes on the broker well before the commit
            time.sleep(rng.uniform(0, 0.03))
            positions = consumer.position(consumer.assignment())
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
        except KafkaException as e:
            error: KafkaError = e.args[0]
            if not error.txn_requires_abort():
                raise
            say(aborted=str(error))
            producer.abort_transaction(30)
            rewind(consumer)
            continue
        say(committed=len(messages), positions={tp.partition: tp.offset for tp in positions})
    say(timeout=deadline_s)
    sys.exit(3)


if __name__ == "__main__":
    bootstrap, input_topic, output_topic, group, transactional_id, expected, batch, deadline_s = sys.argv[1:9]
    main(bootstrap, input_topic, output_topic, group, transactional_id, int(expected), int(batch), float(deadline_s))
