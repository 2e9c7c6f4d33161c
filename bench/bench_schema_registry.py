"""What the built-in schema registry answers per second, and what broker-side validation adds
to a produce.

One `fastlog serve` with its registry on a free port, and in one run:

1. registrations/s: confluent-kafka's SchemaRegistryClient registering distinct Avro schemas
   (each a new version: a write to `_schemas`, read back before the answer);
2. lookups/s: GET /schemas/ids/{id} (what a deserializer asks) and POST /subjects/{s} (what a
   serializer with auto.register.schemas=false asks), each over one keep-alive connection,
   uncached (every request names another schema: the registry parses it) and cached (the same
   schema again);
3. the same client loops against a stub that answers every request with a fixed body at once:
   the client's own cost, the floor of each row;
4. produce latency with and without `confluent.value.schema.validation` on the topic: p50/p99
   of 1 KB Avro-framed records at a steady rate, and records/s of a burst.

    python bench/bench_schema_registry.py [--schemas 300] [--lookups 3000] [--records 20000] [--rate 2000]
"""

from __future__ import annotations

import argparse
import json
import warnings
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore", "The httpx module is deprecated")  # authlib, imported by the registry client

import httpx  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: E402

from tests.schema_registry.conftest import RegistryBroker  # noqa: E402


def avro(i: int) -> str:
    return json.dumps({"type": "record", "name": "R", "fields": [{"name": "f", "type": "string"}, {"name": f"g{i}", "type": "int", "default": 0}]})


class Stub:
    """A keep-alive HTTP/1.1 responder answering every request with one fixed JSON body."""

    def __init__(self, body: bytes) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.response = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            connection, _ = self.listener.accept()
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        buffer = b""
        with connection:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
                while len(buffer) < length:
                    buffer += connection.recv(65536)
                buffer = buffer[length:]
                connection.sendall(self.response)


def rate(count: int, work) -> float:
    started = time.perf_counter()
    for i in range(count):
        work(i)
    return count / (time.perf_counter() - started)


def registrations(url: str, count: int, subject: str) -> float:
    client = SchemaRegistryClient({"url": url})
    return rate(count, lambda i: client.register_schema(f"{subject}-{i % 50}", Schema(avro(i), "AVRO")))


def lookups(url: str, count: int, ids: list[int], subject: str, texts: list[str]) -> dict[str, float]:
    with httpx.Client(base_url=url) as http:
        return {
            "GET /schemas/ids/{id}, each id new": rate(min(count, len(ids)), lambda i: http.get(f"/schemas/ids/{ids[i]}").raise_for_status()),
            "GET /schemas/ids/{id}, the same id": rate(count, lambda i: http.get(f"/schemas/ids/{ids[0]}").raise_for_status()),
            "POST /subjects/{s}, each schema new": rate(min(count, len(texts)), lambda i: http.post(f"/subjects/{subject}", json={"schema": texts[i]}).raise_for_status()),
            "POST /subjects/{s}, the same schema": rate(count, lambda i: http.post(f"/subjects/{subject}", json={"schema": texts[0]}).raise_for_status()),
        }


def produce_latency(bootstrap: str, topic: str, value: bytes, records: int, pace: int) -> dict[str, float]:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    latencies: list[float] = []
    failed: list = []

    def sent_at(started: float):
        return lambda e, m: failed.append(e) if e else latencies.append(time.perf_counter() - started)

    producer.produce(topic, value=value)  # connections and metadata first
    producer.flush(30)
    begin = time.perf_counter()
    for i in range(records // 4):  # paced
        due = begin + i / pace
        while time.perf_counter() < due:
            producer.poll(0.0005)
        producer.produce(topic, value=value, on_delivery=sent_at(time.perf_counter()))
    producer.flush(60)
    assert not failed, failed[:3]
    latencies.sort()
    started = time.perf_counter()
    for _ in range(records):  # a burst
        while True:
            try:
                producer.produce(topic, value=value)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(60) == 0
    return {"p50 ms": 1000 * latencies[len(latencies) // 2], "p99 ms": 1000 * latencies[int(len(latencies) * 0.99)],
            "burst records/s": records / (time.perf_counter() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemas", type=int, default=300)
    parser.add_argument("--lookups", type=int, default=3000)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        broker = RegistryBroker(Path(root) / "data").start()
        try:
            registered = registrations(broker.url, args.schemas, "bench")
            stub_registered = registrations(Stub(b'{"id":1}').url, args.schemas, "bench")
            client = SchemaRegistryClient({"url": broker.url})
            ids = [client.register_schema("lookup", Schema(avro(i), "AVRO")) for i in range(100_000, 100_000 + min(args.lookups, 300))]
            del ids  # only the first subject-version of each matters below
            texts = [avro(i) for i in range(args.schemas)]
            known_ids = sorted({client.get_latest_version(f"bench-{i}").schema_id for i in range(50)} | set(range(1, args.schemas)))
            looked = lookups(broker.url, args.lookups, known_ids, "bench-0", [avro(i) for i in range(0, args.schemas, 50)])
            stub = Stub(json.dumps({"subject": "s", "version": 1, "id": 1, "schema": texts[0]}).encode())
            stub_looked = lookups(stub.url, args.lookups, known_ids, "bench-0", [avro(i) for i in range(0, args.schemas, 50)])
            print("schema registry, one client, keep-alive; per line: fastlog's registry | a stub answering at once")
            print(f"  registrations/s (new Avro schemas): {registered:8,.0f} | {stub_registered:8,.0f}")
            for name, value in looked.items():
                print(f"  {name + ' /s:':40} {value:8,.0f} | {stub_looked[name]:8,.0f}")

            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            for topic, configs in (("plain", {}), ("validated", {"confluent.value.schema.validation": "true"})):
                admin.create_topics([NewTopic(topic, 1, 1, config=configs)])[topic].result(30)
            schema_id = client.register_schema("validated-value", Schema(avro(0), "AVRO"))
            value = b"\x00" + schema_id.to_bytes(4, "big") + b"x" * 1019
            print(f"produce, 1 KB Avro-framed values, {args.rate}/s paced ({args.records // 4} records) then a burst of {args.records}:")
            for topic in ("plain", "validated", "plain", "validated"):
                r = produce_latency(broker.bootstrap, topic, value, args.records, args.rate)
                print(f"  {topic:10} p50 {r['p50 ms']:6.2f} ms  p99 {r['p99 ms']:6.2f} ms  burst {r['burst records/s']:9,.0f} records/s")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
