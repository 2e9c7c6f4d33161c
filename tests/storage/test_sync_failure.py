"""A sync that fails takes its partition out of service, as Kafka takes a log directory offline
after a failed flush: pages whose writeback failed may never reach the disk while a later fsync
reports success, so nothing more may be acknowledged there. The failure is forced for real: a
file the sync must open is made unopenable (a symlink to itself), so `open` fails with ELOOP
where a disk would fail the fsync with EIO."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from confluent_kafka import Producer

from fastlog.client import Client, KafkaError
from fastlog.records import Record, encode_batch
from tests.conftest import BrokerProcess, free_port

KAFKA_STORAGE_ERROR = 56


def sync_failed_gauge(port: int, partition: int) -> str:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    wanted = f'fastlog_partition_sync_failed{{topic="t",partition="{partition}"}} '
    return next(line[len(wanted):] for line in text.splitlines() if line.startswith(wanted))


def produce_error(client: Client, partition: int, size: int = 10) -> int:
    """0 when the broker appended a batch of one `size`-byte record to t-`partition`, else its error."""
    errors: dict[tuple[str, int], KafkaError] = {}
    batch = encode_batch([Record(0, int(time.time() * 1000), None, b"x" * size)])
    client.produce_encoded({("t", partition): batch}, errors=errors)
    return errors[("t", partition)].code if errors else 0


def test_a_failed_sync_of_a_rolled_segment_is_logged_and_its_partition_refuses_produces(tmp_path: Path) -> None:
    """The segment a roll sealed is synced on the core's flusher thread, off the append path;
    when that sync fails the broker logs it, `/metrics` shows it, and every later produce to
    the partition is refused with KAFKA_STORAGE_ERROR (no silent acknowledgement) while the
    other partition goes on. A restart reopens the log: it takes records again, with every
    earlier one still there."""
    port = free_port()
    broker = BrokerProcess(tmp_path / "data", {"metrics.port": str(port), "log.flush.scheduler.interval.ms": "100"}).start()
    try:
        with Client(broker.bootstrap) as client:
            client.create_topic("t", 2, configs={"segment.bytes": "4096"})
            assert produce_error(client, 0) == produce_error(client, 1) == 0
            txn_index = broker.data_dir / "t-0" / f"{0:020}.txnindex"
            txn_index.unlink(missing_ok=True)
            txn_index.symlink_to(txn_index.name)
            appended = 1
            while appended < 8 and produce_error(client, 0, 1000) == 0:  # past 4 KB: a roll
                appended += 1
            deadline = time.monotonic() + 20
            while "t-0: a sync failed" not in broker.log_text():
                assert time.monotonic() < deadline, "the failed sync was not logged"
                time.sleep(0.1)
            assert "txnindex" in broker.log_text(), "the log names the file"
            assert (sync_failed_gauge(port, 0), sync_failed_gauge(port, 1)) == ("1.0", "0.0")
            assert produce_error(client, 0) == KAFKA_STORAGE_ERROR
            assert client.offsets_of("t")[0] == (0, appended), "nothing appended since"
            assert produce_error(client, 1) == 0, "the other partition goes on"
            producer = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 2000})
            delivered: list = []
            producer.produce("t", b"lost?", partition=0, on_delivery=lambda error, _: delivered.append(error))
            producer.flush(10)
            assert len(delivered) == 1 and delivered[0] is not None, "a real client is told, not acknowledged"
        assert broker.stop() == 0, "the other logs still close cleanly"
        assert "flush of t-0 failed at shutdown" in broker.log_text(), "left to recovery at the next start"
        txn_index.unlink()
        broker.start()
        with Client(broker.bootstrap) as client:
            assert produce_error(client, 0) == 0, "a restart reopens the log"
            assert client.offsets_of("t")[0] == (0, appended + 1)
    finally:
        broker.stop()
