"""Where a broker's long steps go: on the CPU, in the garbage collector, or off the CPU.

Runs a one-loop broker (`num.network.threads=1`) in this process with a trio Instrument on its
loop, and the Rust generator (bench/loadgen.rs) against it at `--rate` for `--seconds`. Every
step of a connection's task (from the loop resuming it to it yielding: a request read, handled
and answered, or several) taken while the generator runs and longer than `--longer-than` ms is
kept with its wall time, the CPU time of the loop's thread in it (`time.thread_time`), and the
time of the loop thread's garbage collections in it. A long step with little CPU spent its time
off the CPU: a blocking system call, a wait for a lock, or the thread preempted (`perf record -e
sched:sched_switch` tells which). Time between steps (a wake-up that comes late) is not seen.

    python bench/bench_loop_steps.py [--rate 10000] [--seconds 10] [--longer-than 0.5]
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.perf import create_topic, find_loadgen, free_port, run_loadgen  # noqa: E402

CONNECTION_TASK = "fastlog.server.run_connection"


class Step(NamedTuple):
    wall: float  # seconds
    cpu: float  # the loop thread's CPU seconds in the step
    collecting: float  # seconds of the loop thread's garbage collections in the step
    at: float  # seconds from the generator's start


class LongSteps(trio.abc.Instrument):
    """Counts the connection tasks' steps once `measuring_from` is set, and keeps those longer
    than `threshold` seconds."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.measuring_from: Optional[float] = None  # perf_counter when the generator started
        self.connection_steps = 0
        self.long_steps: list[Step] = []
        self.loop_thread = threading.get_ident()
        self._step_wall = self._step_cpu = 0.0
        self._collecting = 0.0
        self._collection_started = 0.0

    def on_gc(self, phase: str, info: dict) -> None:
        if threading.get_ident() != self.loop_thread:  # another thread's collection
            return
        if phase == "start":
            self._collection_started = time.perf_counter()
        elif self._collection_started:
            self._collecting += time.perf_counter() - self._collection_started
            self._collection_started = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._collecting = 0.0
        self._step_cpu = time.thread_time()
        self._step_wall = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        wall = time.perf_counter() - self._step_wall
        if task.name != CONNECTION_TASK or self.measuring_from is None or self._step_wall < self.measuring_from:
            return
        self.connection_steps += 1
        if wall > self.threshold:
            cpu = time.thread_time() - self._step_cpu
            self.long_steps.append(Step(wall, cpu, self._collecting, self._step_wall - self.measuring_from))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=10_000, help="records/s of 100 B, one per request when the broker keeps up")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--longer-than", type=float, default=0.5, help="ms: the steps kept")
    args = parser.parse_args()
    notes: list[str] = []
    loadgen = find_loadgen("", notes)
    if loadgen is None:
        sys.exit("; ".join(notes))
    steps = LongSteps(args.longer_than / 1000)
    failures: list[BaseException] = []
    data = Path(tempfile.mkdtemp(prefix="fastlog-steps-"))
    gc.callbacks.append(steps.on_gc)
    try:
        run_broker(data, steps, lambda port: drive(loadgen, port, args, steps, failures))
    finally:
        gc.callbacks.remove(steps.on_gc)
        shutil.rmtree(data, ignore_errors=True)
    if failures:
        sys.exit(f"the load failed: {failures[0]!r}")
    report(steps, args.longer_than)


def run_broker(data: Path, steps: LongSteps, load: Callable[[int], None]) -> None:
    """Serves a one-loop broker on this thread, with `steps` on its loop, until `load` (run on
    a worker thread with the broker's port) returns."""
    from fastlog.broker import Broker, run_until_signalled
    from fastlog.config import BrokerConfig

    port = free_port()
    overrides = [f"listeners=PLAINTEXT://127.0.0.1:{port}", f"log.dirs={data}", "num.network.threads=1",
                 "metrics.port=-1", "schema.registry.listeners=-1"]
    broker = Broker(BrokerConfig.load(None, overrides))

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_until_signalled, broker)
            await trio.to_thread.run_sync(load, port)
            broker.request_shutdown()

    trio.run(serve, instruments=[steps])


def drive(loadgen: Path, port: int, args: argparse.Namespace, steps: LongSteps, failures: list[BaseException]) -> None:
    """Creates the topic and runs the generator, measuring the loop's steps while it runs."""
    bootstrap = f"127.0.0.1:{port}"
    try:
        create_topic(bootstrap, "steps", 6)
        steps.measuring_from = time.perf_counter()
        run = run_loadgen(loadgen, bootstrap, "steps", 6, args.rate, args.seconds, 100, None)
        print("generator:", json.dumps(run), flush=True)
    except Exception as e:  # reported by main once the broker has stopped
        failures.append(e)


def report(steps: LongSteps, longer_than_ms: float) -> None:
    longest = sorted(steps.long_steps, reverse=True)
    print(json.dumps({
        "connection_steps": steps.connection_steps,
        f"longer_than_{longer_than_ms}_ms": len(longest),
        "mostly_off_cpu": sum(step.cpu < step.wall / 2 for step in longest),
        "mostly_collecting": sum(step.collecting >= step.wall / 2 for step in longest),
    }))
    for step in longest[:20]:
        print(f"  step {step.wall * 1000:7.2f} ms at {step.at:6.3f} s: CPU {step.cpu * 1000:6.2f} ms, "
              f"garbage collector {step.collecting * 1000:6.2f} ms")


if __name__ == "__main__":
    main()
