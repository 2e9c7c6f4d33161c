"""What the Python client scenarios share: their command line, bounded checks that print one
JSON line each, the records every produce/consume check sends, and unique topic names.

Imported by the scenario scripts beside it, which run under each client version's own
interpreter (CPython 3.11 venvs), so it needs nothing beyond the standard library.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator, Optional, Sequence

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
RECORD_COUNT = 20
# Records the group check sends, and how many of them the first member consumes and commits.
GROUP_RECORDS = 10
GROUP_FIRST_PART = 4
# Timestamps for offsets_for_times: one record a second from here.
BASE_TIMESTAMP_MS = 1_700_000_000_000
TIMESTAMPED_RECORDS = 5

Header = tuple[str, bytes]
Record = tuple[Optional[bytes], Optional[bytes], list[Header]]


class Skip(Exception):
    """Raised by a check whose API this client version does not have."""


class CheckTimeout(Exception):
    """A check ran past its time limit."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    parser.add_argument("--expect-version", help="fail unless the client library has this version")
    parser.add_argument("--expect-librdkafka", help="fail unless librdkafka has this version")
    parser.add_argument("--check-timeout", type=float, default=30.0, help="seconds each check may take")
    return parser.parse_args()


def unique_name(what: str) -> str:
    return f"pyclients-{what}-{uuid.uuid4().hex[:10]}"


def expected_records(count: int = RECORD_COUNT) -> list[Record]:
    """Keys, values (compressible, so codecs have work) and headers, with a null key and a tombstone."""
    records: list[Record] = []
    for i in range(count):
        key = None if i == 1 else b"key-%d" % i
        value = None if i == 2 else b"value-%d " % i * 8
        headers = [("index", str(i).encode()), ("empty", b"")] if i % 2 == 0 else []
        records.append((key, value, headers))
    return records


def timestamped_times() -> list[int]:
    """The timestamps of the offsets-by-time check's records: one a second from BASE_TIMESTAMP_MS."""
    return [BASE_TIMESTAMP_MS + 1000 * i for i in range(TIMESTAMPED_RECORDS)]


def resumed_report(rest: Sequence[tuple[int, Any]]) -> str:
    """Checks that the group's second member read exactly the records after the commit."""
    offsets = [offset for offset, _ in rest]
    assert offsets == list(range(GROUP_FIRST_PART, GROUP_RECORDS)), f"second member read offsets {offsets}"
    return f"committed {GROUP_FIRST_PART}; the next member resumed at {offsets[0]} and read to {offsets[-1]}"


def compare_records(expected: Sequence[Record], got: Sequence[tuple[int, Record]]) -> str:
    """Raises AssertionError at the first difference; `got` holds (offset, record) in order."""
    assert len(got) == len(expected), f"consumed {len(got)} records, expected {len(expected)}"
    for index, ((offset, record), wanted) in enumerate(zip(got, expected)):
        assert offset == index, f"record {index} has offset {offset}"
        assert record == wanted, f"record {index}: got {record!r}, expected {wanted!r}"
    return f"{len(got)} records, offsets 0..{len(got) - 1}, keys, values and headers match"


def normalized_headers(headers: Any) -> list[Header]:
    return [(name, bytes(value) if value is not None else None) for name, value in (headers or [])]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def describe_error(error: BaseException) -> str:
    """The exception, and the scenario line it came through, for the JSON detail."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "scenario" in os.path.basename(f.filename)]
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


@dataclass
class Report:
    """Runs checks one at a time, each bounded, and prints one JSON line per check."""

    check_timeout: float
    failed: list[str] = field(default_factory=list)

    def emit(self, check: str, ok: bool, detail: Any, started: float, skipped: Optional[str] = None) -> None:
        line: dict[str, Any] = {"check": check, "ok": ok, "detail": detail, "seconds": round(time.monotonic() - started, 2)}
        if skipped is not None:
            line["skipped"] = skipped
        print(json.dumps(line, default=str), flush=True)
        if not ok:
            self.failed.append(check)

    def outcome(self, check: str, started: float, result: Any = None, error: Optional[BaseException] = None) -> None:
        if error is None:
            self.emit(check, True, result, started)
        elif isinstance(error, Skip):
            self.emit(check, True, None, started, skipped=str(error))
        else:
            self.emit(check, False, describe_error(error), started)

    def run(self, check: str, body: Callable[[], Any]) -> None:
        """Runs a blocking check; SIGALRM interrupts it past the time limit."""
        started = time.monotonic()

        def on_alarm(signum: int, frame: Any) -> None:
            raise CheckTimeout(f"check ran past {self.check_timeout}s")

        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.check_timeout)
        try:
            result = body()
        except BaseException as error:  # noqa: BLE001 - every failure becomes a JSON line
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.outcome(check, started, error=error)
        else:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.outcome(check, started, result)

    async def run_async(self, check: str, body: Callable[[], Awaitable[Any]]) -> None:
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(body(), self.check_timeout)
        except asyncio.TimeoutError:
            self.outcome(check, started, error=CheckTimeout(f"check ran past {self.check_timeout}s"))
        except Exception as error:  # noqa: BLE001
            self.outcome(check, started, error=error)
        else:
            self.outcome(check, started, result)

    def finish(self) -> None:
        """Exits at once (client threads left behind by a failed check must not hold the exit)."""
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1 if self.failed else 0)


def plain(result: Any) -> Any:
    """A raw protocol response (kafka-python 2.0.2, aiokafka) as nested dicts; dicts stay as they are."""
    return result.to_object() if hasattr(result, "to_object") else result


def error_codes(result: Any, path: str = "") -> Iterator[str]:
    """Every non-zero error_code anywhere in a result, with where it was."""
    if isinstance(result, dict):
        for key, value in result.items():
            if key == "error_code" and value:
                yield f"{path or 'response'}: error_code {value} {result.get('error_message') or ''}".strip()
            else:
                yield from error_codes(value, f"{path}.{key}" if path else str(key))
    elif isinstance(result, (list, tuple)):
        for index, value in enumerate(result):
            yield from error_codes(value, f"{path}[{index}]")


def assert_no_errors(result: Any) -> Any:
    result = plain(result[0] if isinstance(result, list) and len(result) == 1 else result)
    errors = list(error_codes(result))
    assert not errors, "; ".join(errors)
    return result


DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs' config_source of a topic's own override


def configs_from_response(response: dict) -> dict[str, tuple[str, Any]]:
    """name -> (value, source) from a DescribeConfigs response, as plain() gives it."""
    entries = response["resources"][0]["config_entries"]
    return {entry["config_names"]: (entry["config_value"], entry["config_source"]) for entry in entries}


def check_version(actual: str, expected: Optional[str], what: str) -> str:
    assert expected is None or actual == expected, f"{what} is {actual}, expected {expected}"
    return actual
