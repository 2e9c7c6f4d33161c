"""`fastlog produce` and `fastlog consume` (Kafka's console producer and consumer).

produce: one record per input line (stdin or `--file`); `--key-separator` splits a key off
each line; keyed records go to the partition Kafka's Java client would choose (murmur2), the
others fill one partition's batch at a time (sticky). With `--file`, a progress bar goes to
stderr when stderr is a terminal (or with `--progress`).

consume: reads every partition of a topic (or one with `--partition`) from the latest offset,
or the earliest with `--from-beginning`. With `--group`, it starts from the group's committed
offsets and commits what it printed when it stops. It does so as a standalone consumer: it
does not join the group (no rebalance), as Kafka's console consumer does with `--partition`.
It stops after `--max-messages`, or when nothing arrived for `--timeout-ms`, or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from typing import Any, BinaryIO, Iterator, Optional

from fastlog.client import EARLIEST, LATEST, Client, KafkaError, murmur2_partition
from fastlog.protocol import ErrorCode
from fastlog.records import Compression, Record
from fastlog.tools import (
    ToolError,
    add_common,
    command,
    connect,
    key_value,
    positive_int,
    print_json,
    text,
)

COMPRESSION = {"none": Compression.NONE, "gzip": Compression.GZIP, "snappy": Compression.SNAPPY, "lz4": Compression.LZ4, "zstd": Compression.ZSTD}
BATCH_BYTES = 1 << 20
RETRIABLE = {
    ErrorCode.NOT_LEADER_OR_FOLLOWER,
    ErrorCode.LEADER_NOT_AVAILABLE,
    ErrorCode.FENCED_LEADER_EPOCH,
    ErrorCode.UNKNOWN_LEADER_EPOCH,
    ErrorCode.REPLICA_NOT_AVAILABLE,
}


def register(commands: "argparse._SubParsersAction") -> None:
    produce = command(
        commands,
        "produce",
        do_produce,
        full_name="produce",
        help="write lines from stdin or a file as records",
        description="Write records to a topic, one per line of stdin or --file.",
    )
    produce.add_argument("--topic", required=True)
    produce.add_argument("--file", metavar="PATH", help="read lines from this file instead of stdin")
    produce.add_argument("--key-separator", metavar="SEP", help="split each line at the first SEP into key and value")
    produce.add_argument("--header", type=key_value, action="append", default=[], metavar="KEY=VALUE", help="a header on every record (repeatable)")
    produce.add_argument("--compression", choices=sorted(COMPRESSION), default="none")
    produce.add_argument("--partition", type=int, help="write every record to this partition")
    produce.add_argument("--acks", type=int, choices=[-1, 0, 1], default=-1, help="acknowledgements to wait for (default -1: all)")
    produce.add_argument("--batch-size", type=positive_int, default=1000, metavar="RECORDS", help="records per batch (default 1000)")
    progress = produce.add_mutually_exclusive_group()
    progress.add_argument("--progress", action="store_true", default=None, help="show a progress bar on stderr (default: with --file on a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    add_common(produce)

    consume = command(
        commands,
        "consume",
        do_consume,
        full_name="consume",
        help="print records of a topic",
        description="Print records of a topic, one per line.",
    )
    consume.add_argument("--topic", required=True)
    consume.add_argument("--partition", type=int, help="read only this partition")
    start = consume.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="start at the earliest offset (when the group has no committed offset)")
    start.add_argument("--offset", type=int, metavar="N", help="start at this offset (needs --partition)")
    consume.add_argument("--group", help="start from this group's committed offsets and commit what was printed")
    consume.add_argument("--max-messages", type=positive_int, help="stop after this many records")
    consume.add_argument("--timeout-ms", type=positive_int, help="stop when no record arrived for this long (default: wait forever)")
    consume.add_argument("--format", choices=["value", "key-value", "json"], default="value", help="value only; key<TAB>value; or JSON lines with offset, partition, timestamp, key, value, headers")
    consume.add_argument("--key-separator", default="\t", metavar="SEP", help="between key and value with --format key-value (default TAB)")
    consume.add_argument("--isolation-level", choices=["read_uncommitted", "read_committed"], default="read_uncommitted")
    add_common(consume, json_output=False)


# -- produce ---------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.started = time.monotonic()
        self.drawn = 0.0

    def update(self, done: int, records: int, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.drawn < 0.1):
            return
        self.drawn = now
        share = min(done / self.total, 1.0)
        width = 30
        filled = int(share * width)
        rate = records / max(now - self.started, 1e-9)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r[{bar}] {share * 100:5.1f}%  {records} records  {rate:,.0f} rec/s")
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def read_lines(stream: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """(line without its newline, bytes consumed)."""
    for line in stream:
        size = len(line)
        if line.endswith(b"\n"):
            line = line[:-1]
            if line.endswith(b"\r"):
                line = line[:-1]
        yield line, size


class Batcher:
    """Collects records per partition and sends a partition's batch when it is full."""

    def __init__(self, client: Client, topic: str, partitions: int, args: argparse.Namespace) -> None:
        self.client = client
        self.topic = topic
        self.partitions = partitions
        self.args = args
        self.pending: dict[int, list[Record]] = {}
        self.pending_bytes: dict[int, int] = {}
        self.sticky = 0
        self.records = 0
        self.bytes = 0
        self.offsets: dict[int, list[int]] = {}

    def partition_for(self, key: Optional[bytes]) -> int:
        if self.args.partition is not None:
            return self.args.partition
        if key is not None:
            return murmur2_partition(key, self.partitions)
        return self.sticky

    def add(self, key: Optional[bytes], value: bytes, headers: list) -> None:
        partition = self.partition_for(key)
        batch = self.pending.setdefault(partition, [])
        batch.append(Record(len(batch), int(time.time() * 1000), key, value, headers))
        self.pending_bytes[partition] = self.pending_bytes.get(partition, 0) + len(value) + len(key or b"")
        if len(batch) >= self.args.batch_size or self.pending_bytes[partition] >= BATCH_BYTES:
            self.send(partition)

    def send(self, partition: int) -> None:
        batch = self.pending.pop(partition, [])
        size = self.pending_bytes.pop(partition, 0)
        if not batch:
            return
        base = self.client.produce(
            {(self.topic, partition): batch}, compression=COMPRESSION[self.args.compression], acks=self.args.acks
        )[(self.topic, partition)]
        self.records += len(batch)
        self.bytes += size
        first_last = self.offsets.setdefault(partition, [base, base + len(batch) - 1])
        first_last[1] = base + len(batch) - 1
        if partition == self.sticky and self.args.partition is None:
            self.sticky = (self.sticky + 1) % self.partitions

    def flush(self) -> None:
        for partition in list(self.pending):
            self.send(partition)


def do_produce(args: argparse.Namespace) -> int:
    headers = [(k, v.encode()) for k, v in args.header]
    separator = args.key_separator.encode() if args.key_separator else None
    if args.key_separator == "":
        raise ToolError("--key-separator must not be empty")
    if args.file:
        stream: BinaryIO = open(args.file, "rb")
        total = os.fstat(stream.fileno()).st_size
    else:
        stream = sys.stdin.buffer
        total = 0
    show = args.progress if args.progress is not None else bool(args.file) and sys.stderr.isatty()
    progress = Progress(total, show and bool(args.file))
    try:
        with connect(args) as client:
            info = client.topic(args.topic)
            if args.partition is not None and args.partition not in info.partitions:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, context=f"partition {args.topic}-{args.partition}")
            batcher = Batcher(client, args.topic, len(info.partitions), args)
            consumed = 0
            for number, (line, size) in enumerate(read_lines(stream), 1):
                consumed += size
                key = None
                value = line
                if separator is not None:
                    key, sep, value = line.partition(separator)
                    if not sep:
                        raise ToolError(f"line {number} has no key separator {args.key_separator!r}")
                batcher.add(key, value, headers)
                progress.update(consumed, batcher.records)
            batcher.flush()
            progress.update(consumed, batcher.records, final=True)
    finally:
        if args.file:
            stream.close()
    summary = {
        "topic": args.topic,
        "records": batcher.records,
        "bytes": batcher.bytes,
        "partitions": {str(p): {"first_offset": f, "last_offset": l} for p, (f, l) in sorted(batcher.offsets.items())},
    }
    if args.json:
        print_json(summary)
    else:
        print(f"Produced {batcher.records} records ({batcher.bytes} bytes) to {args.topic}.")
    return 0


# -- consume ---------------------------------------------------------------------------------


def format_record(args: argparse.Namespace, topic: str, partition: int, record: Record) -> str:
    if args.format == "value":
        return text(record.value) or ""
    if args.format == "key-value":
        return f"{text(record.key) or ''}{args.key_separator}{text(record.value) or ''}"
    return json.dumps(
        {
            "topic": topic,
            "partition": partition,
            "offset": record.offset,
            "timestamp": record.timestamp,
            "key": json_bytes(record.key),
            "value": json_bytes(record.value),
            "headers": [[k, json_bytes(v)] for k, v in record.headers],
        }
    )


def json_bytes(data: Optional[bytes]) -> Any:
    """Text when the bytes are UTF-8, else {"base64": ...}."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


def starting_offsets(client: Client, args: argparse.Namespace, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    reset = EARLIEST if args.from_beginning else LATEST
    if args.offset is not None:
        return {p: args.offset for p in partitions}
    positions: dict[tuple[str, int], int] = {}
    if args.group:
        for c in client.committed_offsets(args.group, partitions):
            if c.error_code == 0 and c.offset >= 0:
                positions[(c.topic, c.partition)] = c.offset
    missing = [p for p in partitions if p not in positions]
    if missing:
        positions.update(client.list_offsets(missing, reset))
    return positions


def do_consume(args: argparse.Namespace) -> int:
    if args.offset is not None and args.partition is None:
        raise ToolError("--offset needs --partition")
    printed = 0
    out = sys.stdout
    with connect(args) as client:
        info = client.topic(args.topic)
        if args.partition is not None:
            if args.partition not in info.partitions:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, context=f"partition {args.topic}-{args.partition}")
            partitions = [(args.topic, args.partition)]
        else:
            partitions = [(args.topic, p) for p in info.partitions]
        positions = starting_offsets(client, args, partitions)
        committed = dict(positions)
        last_record = time.monotonic()
        isolation = 1 if args.isolation_level == "read_committed" else 0
        try:
            while args.max_messages is None or printed < args.max_messages:
                wait_ms = 500
                if args.timeout_ms is not None:
                    left = args.timeout_ms - (time.monotonic() - last_record) * 1000
                    if left <= 0:
                        break
                    wait_ms = int(max(1, min(wait_ms, left)))
                results = client.fetch(positions, max_wait_ms=wait_ms, isolation_level=isolation)
                for key, result in sorted(results.items()):
                    if result.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                        reset = EARLIEST if args.from_beginning else LATEST
                        positions[key] = client.list_offsets([key], reset)[key]
                        continue
                    if result.error_code in RETRIABLE:
                        client.metadata([key[0]])  # the leader moved or is being elected
                        time.sleep(0.1)
                        continue
                    if result.error_code:
                        raise KafkaError(result.error_code, context=f"fetch from {key[0]}-{key[1]}")
                    for record in result.records:
                        if args.max_messages is not None and printed >= args.max_messages:
                            break
                        out.write(format_record(args, key[0], key[1], record) + "\n")
                        printed += 1
                        positions[key] = record.offset + 1
                        last_record = time.monotonic()
                    else:
                        if result.next_offset > positions[key]:
                            positions[key] = result.next_offset  # past control batches
                out.flush()
        except KeyboardInterrupt:
            pass  # stop as asked; commit what was printed
        if args.group:
            changed = {k: v for k, v in positions.items() if committed.get(k) != v}
            if changed:
                client.commit_offsets(args.group, changed)
    print(f"Processed a total of {printed} messages", file=sys.stderr)
    return 0
