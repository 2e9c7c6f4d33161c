"""Go Kafka clients against a real broker: sarama 1.22.1 and kafka-go 0.2.1, built from Debian's
packaged sources by `bash scripts/clients/go.sh` (programs in tests/clients/go). Each binary runs
its checks (metadata, produce/consume per codec, consuming records another client wrote, a
consumer group's commit and resume, offsets by time, admin) and prints one JSON line per check;
every check must pass, and only the checks the client version has no API for may be skipped.

sarama runs twice: with Config.Version at the newest it knows (2.2.0: Produce v3 / magic 2,
Fetch v4) and with its default (0.8.2.0: Produce v0 / magic 0, Fetch v0), which many users keep.
The broker advertises a recording proxy, so every request of a run goes through it and a
failure names the API versions the client used and the broker's warnings.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from fastlog import protocol
from tests.conftest import BrokerProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCES = REPO_ROOT / "tests" / "clients" / "go"
BIN_DIR = REPO_ROOT / ".cache" / "clients" / "go" / "bin"
BUILD_COMMAND = "bash scripts/clients/go.sh"
RUN_TIMEOUT_S = 120
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
COMMON_CHECKS = {
    "client",
    "metadata_all_topics",
    *(f"produce_consume_{codec}" for codec in CODEC_IDS),
    "consume_existing",
    "consumer_group_commit_resume",
    "offsets_by_time",
    "admin",
}


@dataclass(frozen=True)
class GoClient:
    test_id: str
    binary: str
    library: str
    version: str  # the Debian package's upstream version the binary must report
    args: tuple[str, ...] = ()
    extra_checks: frozenset[str] = frozenset()
    # Checks this client (at this configuration) has no API for: check -> why.
    expected_skips: dict[str, str] = field(default_factory=dict)


CLIENTS = [
    GoClient("sarama-1.22.1", "sarama-check", "sarama", "1.22.1", ("-version", "newest")),
    GoClient(
        "sarama-1.22.1-default-version",
        "sarama-check",
        "sarama",
        "1.22.1",
        ("-version", "default"),
        expected_skips={
            "produce_consume_lz4": "sarama's config refuses lz4 below Version 0.10",
            "consumer_group_commit_resume": "sarama's ConsumerGroup needs Version 0.10.2",
            "admin": "sarama's ClusterAdmin needs Version 0.10 (its Controller() refuses below)",
        },
    ),
    GoClient(
        "kafka-go-0.2.1",
        "kafkago-check",
        "kafka-go",
        "0.2.1",
        extra_checks=frozenset({"admin_alter"}),
        expected_skips={
            "produce_consume_zstd": "kafka-go 0.2.1 has no zstd codec",
            "admin_alter": "kafka-go 0.2.1 has no AlterConfigs / CreatePartitions",
            "metadata_all_topics": "kafka-go 0.2.1 asks for all topics with an empty array (= none from v1)",
        },
    ),
]


class WireRecorder:
    """A loopback TCP proxy to the broker that counts the (API key, version) of each request."""

    def __init__(self, upstream_port: int, port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = port
        self.lock = threading.Lock()
        self.requests: collections.Counter = collections.Counter()
        threading.Thread(target=self._accept, daemon=True).start()

    def take(self) -> collections.Counter:
        """The requests counted since the last take."""
        with self.lock:
            taken, self.requests = self.requests, collections.Counter()
        return taken

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of _accept
        except OSError:
            pass
        self.listener.close()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        """Forwards one connection both ways until either side closes, then closes both."""
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        answers = threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True)
        answers.start()
        self._pump(client, upstream, True)
        answers.join(5)
        client.close()
        upstream.close()

    def _pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        pending, skip = b"", 0
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                if requests:
                    pending, skip = self._count_frames(pending + data, skip)
        except OSError:
            pass
        for sock in (sink, source):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _count_frames(self, pending: bytes, skip: int) -> tuple[bytes, int]:
        """Counts each request header in the stream; returns what is left to parse."""
        while True:
            dropped = min(skip, len(pending))
            pending, skip = pending[dropped:], skip - dropped
            if skip or len(pending) < 8:
                return pending, skip
            size, api_key, api_version = struct.unpack_from(">ihh", pending)
            with self.lock:
                self.requests[(api_key, api_version)] += 1
            skip = 4 + max(size, 0)


def describe_requests(requests: collections.Counter) -> str:
    names = []
    for (api_key, api_version), count in sorted(requests.items()):
        info = protocol.API_BY_KEY.get(api_key)
        names.append(f"{info.name if info else f'api{api_key}'} v{api_version} x{count}")
    return ", ".join(names) or "(none)"


@pytest.fixture(scope="module")
def recorded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, WireRecorder]]:
    """A broker that advertises a WireRecorder in front of it, so clients send everything through it."""
    proxy_port = free_port()
    process = BrokerProcess(
        tmp_path_factory.mktemp("go-clients") / "data",
        {"advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy_port}"},
    )
    recorder = WireRecorder(process.port, proxy_port)
    process.start()
    yield process, recorder
    recorder.close()
    process.stop()


@pytest.fixture(scope="module")
def existing_topic(recorded_broker: tuple[BrokerProcess, WireRecorder]) -> str:
    """A topic holding key-i / "existing value i" at offsets 0-4, written by librdkafka (magic 2)."""
    from confluent_kafka import Producer

    broker, recorder = recorded_broker
    topic = f"go-existing-{os.getpid()}"
    producer = Producer({"bootstrap.servers": recorder.bootstrap, "acks": "all", "linger.ms": 5})
    for index in range(5):
        producer.produce(topic, key=f"key-{index}", value=f"existing value {index}", partition=0)
    assert producer.flush(15) == 0, f"records for {topic} not delivered:\n{broker.log_text()[-3000:]}"
    recorder.take()
    return topic


def check_binary(name: str) -> Path:
    """The built binary; fails (never skips) when it is missing or older than its sources."""
    binary = BIN_DIR / name
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `{BUILD_COMMAND}` first")
    newest_source = max(SOURCES.rglob("*.go"), key=lambda path: path.stat().st_mtime)
    if newest_source.stat().st_mtime > binary.stat().st_mtime:
        pytest.fail(f"{binary} is older than {newest_source}: run `{BUILD_COMMAND}` again")
    return binary


def run_checks(binary: Path, client: GoClient, bootstrap: str, prefix: str, existing: str) -> list[dict]:
    args = [str(binary), "-bootstrap", bootstrap, "-topic-prefix", prefix, "-existing-topic", existing, *client.args]
    try:
        finished = subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{client.test_id} ran past {RUN_TIMEOUT_S}s; output so far:\n{e.stdout}\n{e.stderr}")
    results = [json.loads(line) for line in finished.stdout.splitlines() if line.startswith("{")]
    any_failed = any(not r["ok"] for r in results)
    assert any_failed == (finished.returncode != 0), f"exit {finished.returncode}, results {results}\n{finished.stderr}"
    return results


def batch_codecs(segment_dir: Path) -> list[tuple[int, int]]:
    """(magic, codec id) of each batch in a partition's log segments, as the broker stored them."""
    found = []
    for segment in sorted(segment_dir.glob("*.log")):
        data, pos = segment.read_bytes(), 0
        while pos + 22 <= len(data):
            (length,) = struct.unpack_from(">i", data, pos + 8)
            magic = data[pos + 16]
            attributes = struct.unpack_from(">h", data, pos + 21)[0] if magic >= 2 else data[pos + 17]
            found.append((magic, attributes & 0x07))
            pos += 12 + length
    return found


def wrong_codecs(data_dir: Path, prefix: str, results: list[dict]) -> list[str]:
    """Codec checks that passed while the broker holds batches of another codec than asked."""
    wrong = []
    for result in results:
        codec = result["check"].removeprefix("produce_consume_")
        if codec not in CODEC_IDS or not result["ok"] or result.get("skipped"):
            continue
        stored = batch_codecs(data_dir / f"{prefix}-codec-{codec}-0")
        if not stored or any(codec_id != CODEC_IDS[codec] for _, codec_id in stored):
            wrong.append(f"{codec}: stored (magic, codec) {stored}")
    return wrong


def broker_warnings(broker: BrokerProcess, since: int) -> list[str]:
    text = broker.log_text()[since:]
    return [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line]


@pytest.mark.parametrize("client", CLIENTS, ids=[client.test_id for client in CLIENTS])
def test_go_client(client: GoClient, recorded_broker, existing_topic: str) -> None:
    broker, recorder = recorded_broker
    binary = check_binary(client.binary)
    prefix = f"go-{client.test_id}-{os.getpid()}-{time.monotonic_ns() % 10**6}".replace(".", "_")
    log_start = len(broker.log_text())
    recorder.take()

    results = run_checks(binary, client, recorder.bootstrap, prefix, existing_topic)

    wire = describe_requests(recorder.take())
    by_check = {r["check"]: r for r in results}
    report = "\n".join(json.dumps(r) for r in results)
    context = f"{client.test_id} sent: {wire}\nbroker warnings:\n" + "\n".join(broker_warnings(broker, log_start)[-20:])
    print(f"{client.test_id}:\n{report}\n{context}")
    assert set(by_check) == COMMON_CHECKS | client.extra_checks, f"checks reported:\n{report}"
    reported = by_check["client"]["detail"]
    assert (reported["library"], reported["library_version"]) == (client.library, client.version), (
        f"the binary reports {reported}: update CLIENTS to the installed Debian package"
    )
    failed = [r for r in results if not r["ok"]]
    assert not failed, "failed checks:\n" + "\n".join(json.dumps(r) for r in failed) + f"\n{context}"
    skipped = {r["check"] for r in results if r.get("skipped")}
    assert skipped == set(client.expected_skips), f"skipped {skipped}, expected {set(client.expected_skips)}\n{report}"
    assert not wrong_codecs(broker.data_dir, prefix, results), wrong_codecs(broker.data_dir, prefix, results)
