"""What one small Produce or Fetch request costs the broker's loop, measured without other processes.

A one-loop broker (`num.network.threads=1`) runs in this process, and a client task on the
same trio loop sends one Produce request of one 100-byte record (acks=1) over a loopback TCP
connection, waits for its response, and sends the next; or, with `--api fetch`, one Fetch
(v12, no session, as librdkafka sends it) of the first batch of the partition (one 100-byte
record, `max_wait_ms=0`). With `--tls`, the same over an SSL listener (a certificate made for
the run). Each request is read after a wait,
handled and answered alone, as at a low request rate. Everything runs on one thread, so the
thread's CPU time per round trip (`time.thread_time`) is the broker's cost per request plus
the client's (a send and a receive of fixed bytes, the same for every build). The least round
of each run varied by about 5 % on the 2-core VM, where the cross-process figures (`perf stat`
of a broker under bench/loadgen.rs at 1,000-10,000 requests/s) swing by 20 %. For an exact
count, run it under callgrind twice and take the difference (instructions per request):

    python bench/bench_request_cost.py [--requests 2000] [--rounds 15] [--api produce|fetch] [--tls]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python3.11 bench/bench_request_cost.py --requests 200 --rounds 1 --exact
    (and --requests 1200: the difference of the two "Collected" counts / 1000)

`--exact` stops a connection from yielding to the loop because it has held it for
`transport.HOLD_SECONDS`: under callgrind everything runs ~50 times slower, so those yields come
at random and moved the count by 10,000-35,000 instructions between runs of the same code.
"""

from __future__ import annotations

import argparse
import shutil
import ssl
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.perf import free_port  # noqa: E402

TOPIC = "cost"
SIZE = struct.Struct(">i")


def request_frame(api_key: int, version: int, body: object) -> bytes:
    from fastlog import protocol

    header = protocol.RequestHeader(request_api_key=api_key, request_api_version=version, correlation_id=1, client_id="cost")
    payload = protocol.encode_request(header, body).getvalue()
    return SIZE.pack(len(payload)) + payload


def produce_frame() -> bytes:
    from fastlog import protocol
    from fastlog.records import Record, encode_batch

    Req = protocol.request_class(0)
    records = encode_batch([Record(0, int(time.time() * 1000), None, b"v" * 100)])
    body = Req(transactional_id=None, acks=1, timeout_ms=1000, topic_data=[
        Req.TopicProduceData(name=TOPIC, partition_data=[Req.PartitionProduceData(index=0, records=records)])])
    return request_frame(0, 9, body)


def fetch_frame() -> bytes:
    from fastlog import protocol

    Req = protocol.request_class(1)
    body = Req(replica_id=-1, max_wait_ms=0, min_bytes=1, max_bytes=1 << 20, isolation_level=0, session_id=0,
               session_epoch=-1, topics=[Req.FetchTopic(topic=TOPIC, partitions=[
                   Req.FetchPartition(partition=0, current_leader_epoch=-1, fetch_offset=0, log_start_offset=-1,
                                      partition_max_bytes=1)])],
               forgotten_topics_data=[], rack_id="")
    return request_frame(1, 12, body)


def create_topic_frame() -> bytes:
    from fastlog import protocol

    Req = protocol.request_class(19)
    body = Req(topics=[Req.CreatableTopic(name=TOPIC, num_partitions=1, replication_factor=1, assignments=[], configs=[])],
               timeout_ms=10000, validate_only=False)
    return request_frame(19, 5, body)


async def exchange(stream: trio.abc.Stream, frame: bytes, buffer: bytearray) -> None:
    """Sends one request and reads its whole response."""
    await stream.send_all(frame)
    while len(buffer) < 4 or len(buffer) < 4 + SIZE.unpack_from(buffer)[0]:
        data = await stream.receive_some(65536)
        if not data:
            raise RuntimeError("the broker closed the connection")
        buffer += data
    del buffer[: 4 + SIZE.unpack_from(buffer)[0]]


async def measure(port: int, api: str, requests: int, rounds: int, tls: Optional[ssl.SSLContext]) -> list[tuple[float, float]]:
    """(wall µs, CPU µs) per request of each round."""
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
    if tls is not None:
        stream = trio.SSLStream(stream, tls, server_hostname="127.0.0.1")
    buffer = bytearray()
    await exchange(stream, create_topic_frame(), buffer)
    frame = produce_frame()
    for _ in range(1000):  # warm-up: the partition's files, the codec's caches
        await exchange(stream, frame, buffer)
    if api == "fetch":
        frame = fetch_frame()
        for _ in range(1000):
            await exchange(stream, frame, buffer)
    results = []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(requests):
            await exchange(stream, frame, buffer)
        results.append(((time.perf_counter() - wall) / requests * 1e6, (time.thread_time() - cpu) / requests * 1e6))
    await stream.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="round trips per round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--api", choices=("produce", "fetch"), default="produce", help="the request measured")
    parser.add_argument("--tls", action="store_true", help="over an SSL listener")
    parser.add_argument("--exact", action="store_true", help="no yields on time, for a count that does not move (callgrind)")
    args = parser.parse_args()
    if args.requests < 1 or args.rounds < 1:
        parser.error("--requests and --rounds must be at least 1")

    from fastlog import transport
    from fastlog.broker import Broker, run_until_signalled
    from fastlog.config import BrokerConfig

    if args.exact:
        transport.HOLD_SECONDS = float("inf")

    data = Path(tempfile.mkdtemp(prefix="fastlog-cost-"))
    port = free_port()
    overrides = [f"listeners=PLAINTEXT://127.0.0.1:{port}", f"log.dirs={data}", "num.network.threads=1",
                 "metrics.port=-1", "schema.registry.listeners=-1"]
    tls = None
    if args.tls:
        from tests.security.certs import PASSWORD, CertificateAuthority

        ca = CertificateAuthority(data / "pki")
        server = ca.issue("broker", server=True)
        overrides[0] = f"listeners=SSL://127.0.0.1:{port}"
        overrides += [f"ssl.keystore.location={server.p12}", f"ssl.keystore.password={PASSWORD}", "ssl.keystore.type=PKCS12"]
        tls = ssl.create_default_context(cafile=str(ca.pem))
    broker = Broker(BrokerConfig.load(None, overrides))
    results: list[tuple[float, float]] = []

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_until_signalled, broker)
            results.extend(await measure(port, args.api, args.requests, args.rounds, tls))
            broker.request_shutdown()

    try:
        trio.run(serve)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    for i, (wall, cpu) in enumerate(results, 1):
        print(f"round {i}: {wall:6.1f} µs wall, {cpu:6.1f} µs CPU per request")
    print(f"median: {statistics.median(w for w, _ in results):6.1f} µs wall, {statistics.median(c for _, c in results):6.1f} µs CPU per request")
    # The VM's neighbours slow a round now and then, never speed one up: the least is the cost.
    print(f"least: {min(w for w, _ in results):6.1f} µs wall, {min(c for _, c in results):6.1f} µs CPU per request")


if __name__ == "__main__":
    main()
