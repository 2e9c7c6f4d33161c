"""Pieces of bench/perf.py and bench/device.sh that the 16-core rows rely on, run against a real
broker: the warm consume row with several readers, the broker's CPU by thread, the kit's usage."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import perf  # noqa: E402  (bench/ is not a package on the default path)


def test_warm_raw_fetch_sums_what_each_reader_read_of_the_whole_topic(broker, unique_topic) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})  # kept alive until the topic is made
    admin.create_topics([NewTopic(unique_topic, perf.PARTITIONS, 1)])[unique_topic].result(30)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(600):
        producer.produce(unique_topic, b"v" * 1000, partition=i % perf.PARTITIONS)
    assert producer.flush(30) == 0
    records, size, seconds = perf.warm_raw_fetch(broker.bootstrap, unique_topic, 2)
    assert records == 2 * 600
    assert size >= 2 * 600 * 1000  # record values, plus batch and record headers
    assert 0 < seconds < 60


def test_cpu_spread_and_the_wait_for_a_cpu_read_the_broker_s_threads(tmp_path) -> None:
    broker = perf.BrokerProcess(tmp_path / "data", ["num.network.threads=2"])
    try:
        threads = broker.thread_cpu_seconds()
        assert str(broker.process.pid) in threads  # the main thread's id is the process id
        assert len(threads) >= 2  # the broker's loop and the extra network loop at least
        assert all(seconds >= 0 for seconds in threads.values())
        spread = broker.cpu_spread(threads, 1.0)
        assert re.fullmatch(r"busiest thread \d+\.\d\d cores, \d+ thread\(s\) over 0\.1", spread), spread
        # a thread absent from `before` (started since) counts from zero
        assert re.match(r"busiest thread", broker.cpu_spread({}, 1.0))
        # the threads' wait for a CPU: read from schedstat, never going back
        queued = broker.run_queue_seconds()
        assert queued >= 0
        assert broker.run_queue_seconds() >= queued
        assert re.fullmatch(r"waited for a CPU \d+\.\d ms/s", perf.waited_for_a_cpu(broker, queued, 1.0))
    finally:
        broker.stop()


def test_a_broker_started_under_nice_reports_its_niceness(tmp_path) -> None:
    """What `--broker-nice` runs (`nice -n N python ...`), and what perf.py reads back to say
    whether nice was refused (a negative N without root runs the broker unchanged)."""
    broker = perf.BrokerProcess(tmp_path / "data", ["num.network.threads=1"], ["nice", "-n", "5", sys.executable])
    try:
        assert broker.niceness() == 5
    finally:
        broker.stop()


def test_the_device_kit_without_a_verb_says_how_to_use_it() -> None:
    done = subprocess.run(["bash", str(REPO / "bench" / "device.sh")], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "usage: bash bench/device.sh prepare|run" in done.stderr
