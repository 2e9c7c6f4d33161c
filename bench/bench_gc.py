"""What a full garbage collection costs in a running broker, before and after `gc.freeze()`.

Runs a broker in this process (empty data dir, one network loop, no metrics endpoint), and at
the moment it would freeze its start-up objects times `gc.collect(2)`, freezes, and times it
again.

    python bench/bench_gc.py
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fastlog.broker as broker_module  # noqa: E402
from fastlog.config import BrokerConfig  # noqa: E402

timings: dict[str, float] = {}


def timed_freeze() -> None:
    started = time.perf_counter()
    gc.collect(2)
    timings["full collection before the freeze, ms"] = (time.perf_counter() - started) * 1000
    gc.freeze()
    started = time.perf_counter()
    gc.collect(2)
    timings["full collection after the freeze, ms"] = (time.perf_counter() - started) * 1000
    timings["objects frozen"] = gc.get_freeze_count()


async def main() -> None:
    broker_module.freeze_startup_objects = timed_freeze
    with tempfile.TemporaryDirectory() as data:
        config = BrokerConfig({"log.dirs": data, "listeners": "PLAINTEXT://127.0.0.1:0", "metrics.port": "-1", "num.network.threads": "1"})
        broker = broker_module.Broker(config)
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.run)
            broker.request_shutdown()


if __name__ == "__main__":
    trio.run(main)
    for name, value in timings.items():
        print(f"{name}: {value:,.2f}")
