"""`fastlog perf produce|consume`: a quick, bounded load test (Kafka's *-perf-test.sh).

produce sends `--num-records` records of `--record-size` bytes in batches of `--batch-size`,
one request at a time, and reports records/s, MB/s and the latency of each produce request
(send to acknowledgement). consume reads `--num-records` records from the earliest offsets
and reports records/s, MB/s and the latency of each fetch that returned data. Both stop at
`--timeout-ms` whatever happened, so a run is always bounded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from fastlog.client import EARLIEST
from fastlog.records import Record
from fastlog.tools import ToolError, add_common, command, connect, percentiles, positive_int, print_json
from fastlog.tools.console import COMPRESSION

MB = 1024 * 1024


def register(commands: "argparse._SubParsersAction") -> None:
    perf = commands.add_parser("perf", help="quick produce and consume load tests", description="Quick, bounded produce and consume load tests.")
    sub = perf.add_subparsers(dest="perf_command", metavar="ACTION", required=True)

    produce = command(sub, "produce", do_produce, full_name="perf produce", help="measure produce throughput and latency", description=__doc__)
    produce.add_argument("--topic", required=True)
    produce.add_argument("--num-records", type=positive_int, default=100_000)
    produce.add_argument("--record-size", type=positive_int, default=100, metavar="BYTES")
    produce.add_argument("--batch-size", type=positive_int, default=500, metavar="RECORDS", help="records per produce request (default 500)")
    produce.add_argument("--compression", choices=sorted(COMPRESSION), default="none")
    produce.add_argument("--acks", type=int, choices=[-1, 1], default=-1)
    produce.add_argument("--timeout-ms", type=positive_int, default=60_000, help="stop after this long (default 60000)")
    add_common(produce)

    consume = command(sub, "consume", do_consume, full_name="perf consume", help="measure consume throughput and latency", description=__doc__)
    consume.add_argument("--topic", required=True)
    consume.add_argument("--num-records", type=positive_int, default=100_000)
    consume.add_argument("--timeout-ms", type=positive_int, default=60_000, help="stop after this long (default 60000)")
    consume.add_argument("--fetch-max-bytes", type=positive_int, default=1_048_576, help="per partition (default 1 MiB)")
    add_common(consume)


def report(args: argparse.Namespace, kind: str, records: int, size: int, elapsed: float, latencies: list[float]) -> None:
    ms = [x * 1000 for x in latencies]
    result = {
        "records": records,
        "bytes": size,
        "seconds": round(elapsed, 3),
        "records_per_second": round(records / elapsed, 1) if elapsed else 0.0,
        "mb_per_second": round(size / MB / elapsed, 3) if elapsed else 0.0,
        "latency_ms": {
            "avg": round(sum(ms) / len(ms), 3) if ms else 0.0,
            "max": round(max(ms), 3) if ms else 0.0,
            **{k: round(v, 3) for k, v in percentiles(ms).items()},
        },
        "requests": len(ms),
    }
    if args.json:
        print_json(result)
        return
    lat = result["latency_ms"]
    print(
        f"{records} records {kind} in {elapsed:.2f}s: {result['records_per_second']:,.1f} records/s "
        f"({result['mb_per_second']:.2f} MB/s); {len(ms)} requests, latency ms "
        f"avg {lat['avg']:.2f}, p50 {lat['p50']:.2f}, p95 {lat['p95']:.2f}, p99 {lat['p99']:.2f}, "
        f"p99.9 {lat['p99.9']:.2f}, max {lat['max']:.2f}"
    )


def do_produce(args: argparse.Namespace) -> int:
    payload = os.urandom(args.record_size // 2 + 1).hex()[: args.record_size].encode()
    compression = COMPRESSION[args.compression]
    with connect(args) as client:
        partitions = list(client.topic(args.topic).partitions)
        sent = 0
        latencies: list[float] = []
        started = time.monotonic()
        deadline = started + args.timeout_ms / 1000
        turn = 0
        while sent < args.num_records and time.monotonic() < deadline:
            count = min(args.batch_size, args.num_records - sent)
            now_ms = int(time.time() * 1000)
            batch = [Record(i, now_ms, None, payload) for i in range(count)]
            partition = partitions[turn % len(partitions)]
            turn += 1
            t0 = time.perf_counter()
            client.produce({(args.topic, partition): batch}, compression=compression, acks=args.acks)
            latencies.append(time.perf_counter() - t0)
            sent += count
        elapsed = time.monotonic() - started
    report(args, "produced", sent, sent * args.record_size, elapsed, latencies)
    if sent < args.num_records:
        print(f"fastlog perf produce: stopped at --timeout-ms={args.timeout_ms} after {sent} records", file=sys.stderr)
    return 0


def do_consume(args: argparse.Namespace) -> int:
    with connect(args) as client:
        keys = [(args.topic, p) for p in client.topic(args.topic).partitions]
        positions = client.list_offsets(keys, EARLIEST)
        received = size = 0
        latencies: list[float] = []
        started = time.monotonic()
        deadline = started + args.timeout_ms / 1000
        while received < args.num_records:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            t0 = time.perf_counter()
            results = client.fetch(positions, max_wait_ms=min(500, left_ms), partition_max_bytes=args.fetch_max_bytes)
            took = time.perf_counter() - t0
            got = 0
            for key, result in results.items():
                if result.error_code:
                    raise ToolError(f"fetch from {key[0]}-{key[1]}: error code {result.error_code}")
                for record in result.records:
                    got += 1
                    size += len(record.value or b"") + len(record.key or b"")
                if result.next_offset > positions[key]:
                    positions[key] = result.next_offset
            if got:
                latencies.append(took)
                received += got
        elapsed = time.monotonic() - started
    report(args, "consumed", received, size, elapsed, latencies)
    if received < args.num_records:
        print(f"fastlog perf consume: stopped at --timeout-ms={args.timeout_ms} after {received} records", file=sys.stderr)
    return 0
