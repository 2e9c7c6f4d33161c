"""A bounded fuzz run against a live broker (issue 22): requests recorded from real clients
(confluent-kafka's admin client, producer and consumer group, through a recording proxy) are
mutated (flipped bits, int32s set to large values such as 65,535 partitions, cut short) and
sent for a few seconds. The broker must stay up and serve a normal client afterwards, with its
partitions, open files and memory within the limits it was configured with."""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from tests.conftest import BrokerProcess, free_port

pytestmark = pytest.mark.timeout(180)
MAX_PARTITIONS = 200
FUZZ_SECONDS = 12.0
FUZZ_REQUESTS = 20_000


class RecordingProxy:
    """Forwards client connections to the broker (which advertises the proxy, so clients keep
    coming through it), keeping each request frame the clients sent."""

    def __init__(self) -> None:
        self.target_port = 0
        self.frames: list[bytes] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.running = True

    def start(self, target_port: int) -> None:
        self.target_port = target_port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:  # the broker is stopping
                client.close()
                continue
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                upstream.sendall(chunk)
                buffer += chunk
                while len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack(">i", buffer[:4])[0]:
                    size = struct.unpack(">i", buffer[:4])[0]
                    self.frames.append(buffer[4 : 4 + size])
                    buffer = buffer[4 + size :]
        except OSError:
            pass
        finally:
            upstream.close()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            sink.close()

    def close(self) -> None:
        self.running = False
        self.server.close()


def record_real_clients(proxy: RecordingProxy) -> list[bytes]:
    bootstrap = f"127.0.0.1:{proxy.port}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("fuzz-seed", 3, 1)])["fuzz-seed"].result(30)
    admin.create_partitions([NewPartitions("fuzz-seed", 4)])["fuzz-seed"].result(30)
    resource = ConfigResource(ConfigResource.Type.TOPIC, "fuzz-seed")
    admin.describe_configs([resource])[resource].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "compression.type": "lz4"})
    for i in range(50):
        producer.produce("fuzz-seed", key=str(i).encode(), value=b"v" * 100)
    producer.flush(30)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "fuzz-group", "auto.offset.reset": "earliest"})
    consumer.subscribe(["fuzz-seed"])
    deadline = time.monotonic() + 15
    seen = 0
    while seen < 20 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        seen += message is not None and not message.error()
    consumer.commit(asynchronous=False)
    consumer.close()
    del admin, producer
    return [f for f in proxy.frames if len(f) >= 8]


def mutate(rnd: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    kind = rnd.random()
    if kind < 0.4:
        for _ in range(rnd.randint(1, 4)):
            position = rnd.randrange(8, len(data)) if len(data) > 8 else 0
            data[position] ^= 1 << rnd.randrange(8)
    elif kind < 0.8 and len(data) >= 12:
        position = rnd.randrange(8, len(data) - 3)
        data[position : position + 4] = struct.pack(">i", rnd.choice([65_535, 1_000_000, 2**31 - 1, -1, -2**31, 10_000, 0x7FFF]))
    else:
        data = data[: rnd.randrange(4, len(data))]
    return bytes(data)


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_mutated_real_client_requests_stay_within_the_limits(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proxy = RecordingProxy()
    broker = BrokerProcess(data_dir, {
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy.port}",
        "max.partitions": str(MAX_PARTITIONS), "max.partitions.per.topic": "100", "max.connections.per.ip": "50",
        "max.request.entries": "10000", "console.enable": "false", "metrics.port": str(free_port()),
    }).start()
    proxy.start(broker.port)
    try:
        frames = record_real_clients(proxy)
        assert len(frames) >= 20, "the proxy recorded the clients' requests"
        assert broker.process is not None
        pid = broker.process.pid
        files_before, rss_before = open_files(pid), rss_bytes(pid)
        rnd = random.Random(22)
        sent = 0
        sock = None
        deadline = time.monotonic() + FUZZ_SECONDS
        while time.monotonic() < deadline and sent < FUZZ_REQUESTS:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", broker.port), timeout=2)
            frame = mutate(rnd, rnd.choice(frames))
            try:
                sock.sendall(struct.pack(">i", len(frame)) + frame)
                sent += 1
                if sent % 8 == 0:  # read what came back, so the broker is not held by a full socket
                    sock.settimeout(0.05)
                    try:
                        while sock.recv(1 << 16):
                            pass
                    except socket.timeout:
                        pass
                    sock.settimeout(2)
            except OSError:
                sock.close()
                sock = None
        if sock is not None:
            sock.close()
        time.sleep(1)
        assert broker.process.poll() is None, "the broker is still running"
        partitions = [p for p in data_dir.iterdir() if p.is_dir() and p.name.rsplit("-", 1)[-1].isdigit()]
        assert len(partitions) <= MAX_PARTITIONS, f"{len(partitions)} partition directories"
        assert open_files(pid) <= files_before + 2 * MAX_PARTITIONS + 60, (files_before, open_files(pid))
        assert rss_bytes(pid) <= rss_before + 200 * 1024 * 1024, (rss_before, rss_bytes(pid))
        # and it still serves a real client (through the proxy it advertises)
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{proxy.port}"})
        assert "fuzz-seed" in admin.list_topics(timeout=15).topics
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{proxy.port}"})
        producer.produce("fuzz-seed", b"after the fuzz", partition=0)
        assert producer.flush(15) == 0
    finally:
        proxy.close()
        broker.stop()
