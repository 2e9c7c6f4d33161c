"""Where a broker's long steps go: on the CPU, in the garbage collector, or off the CPU.

Runs a one-loop broker (`num.network.threads=1`) in this process with a trio Instrument on its
loop, and the Rust generator (bench/loadgen.rs) against it at `--rate` for `--seconds`. Every
step of a connection's task (from the loop resuming it to it yielding: a request read, handled
and answered, or several) longer than `--longer-than` ms is kept with its wall time, the CPU time
of the loop's thread in it (`time.thread_time`), and the garbage collector's time in it. A long
step with little CPU spent its time off the CPU: a blocking system call, a wait for a lock, or
the thread preempted (`perf sched` or `perf record -e sched:sched_switch` tells which).

    python bench/bench_loop_steps.py [--rate 10000] [--seconds 10] [--longer-than 0.5]
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.perf import find_loadgen, free_port  # noqa: E402

CONNECTION_TASK = "fastlog.server.run_connection"


class LongSteps(trio.abc.Instrument):
    """Keeps the connection tasks' steps longer than `threshold` seconds: (wall, CPU, GC, when)
    each, when in seconds from the first connection step."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.steps = 0
        self.long: list[tuple[float, float, float, float]] = []
        self._first = 0.0
        self._gc_seconds = 0.0
        self._gc_started = 0.0

    def on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self._gc_seconds += time.perf_counter() - self._gc_started
            self._gc_started = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._gc_seconds = 0.0
        self._cpu = time.thread_time()
        self._wall = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        wall = time.perf_counter() - self._wall
        if task.name != CONNECTION_TASK:
            return
        self.steps += 1
        self._first = self._first or self._wall
        if wall > self.threshold:
            self.long.append((wall, time.thread_time() - self._cpu, self._gc_seconds, self._wall - self._first))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=10_000, help="records/s of 100 B, one per request when the broker keeps up")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--longer-than", type=float, default=0.5, help="ms: the steps kept")
    args = parser.parse_args()
    from fastlog.broker import Broker, run_until_signalled
    from fastlog.config import BrokerConfig

    notes: list[str] = []
    loadgen = find_loadgen("", notes)
    if loadgen is None:
        sys.exit("; ".join(notes))
    data = Path(tempfile.mkdtemp(prefix="fastlog-steps-"))
    port = free_port()
    overrides = [f"listeners=PLAINTEXT://127.0.0.1:{port}", f"log.dirs={data}", "num.network.threads=1",
                 "metrics.port=-1", "schema.registry.listeners=-1"]
    broker = Broker(BrokerConfig.load(None, overrides))
    steps = LongSteps(args.longer_than / 1000)
    gc.callbacks.append(steps.on_gc)
    stopped = threading.Event()

    def serve() -> None:
        try:
            trio.run(run_until_signalled, broker, instruments=[steps])
        finally:
            stopped.set()

    # trio takes SIGINT/SIGTERM only on the main thread: the broker runs there, the load beside it.
    runner = threading.Thread(target=drive, args=(loadgen, port, args, broker, stopped), daemon=True)
    runner.start()
    try:
        serve()
    finally:
        gc.callbacks.remove(steps.on_gc)
        shutil.rmtree(data, ignore_errors=True)
    runner.join(5)
    report(steps, args)


def drive(loadgen: Path, port: int, args: argparse.Namespace, broker: object, stopped: threading.Event) -> None:
    """Creates the topic, runs the generator, then stops the broker (SIGINT to this process)."""
    import os
    import signal

    from confluent_kafka.admin import AdminClient, NewTopic

    try:
        time.sleep(2)
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        admin.create_topics([NewTopic("steps", 6, 1)])["steps"].result(30)
        del admin
        done = subprocess.run([str(loadgen), "--bootstrap", f"127.0.0.1:{port}", "--topic", "steps", "--partitions", "6",
                               "--rate", str(args.rate), "--seconds", str(args.seconds)],
                              capture_output=True, text=True, timeout=args.seconds + 60)
        print(f"generator: {done.stdout.strip() or done.stderr.strip()}", flush=True)
    finally:
        if not stopped.is_set():
            os.kill(os.getpid(), signal.SIGINT)


def report(steps: LongSteps, args: argparse.Namespace) -> None:
    longest = sorted(steps.long, reverse=True)
    off_cpu = [s for s in longest if s[1] < s[0] / 2]
    in_gc = [s for s in longest if s[2] >= s[0] / 2]
    print(json.dumps({
        "connection_steps": steps.steps,
        f"longer_than_{args.longer_than}_ms": len(longest),
        "mostly_off_cpu": len(off_cpu),
        "mostly_in_gc": len(in_gc),
    }))
    for wall, cpu, in_collector, when in longest[:20]:
        print(f"  step {wall * 1000:7.2f} ms at {when:6.3f} s: CPU {cpu * 1000:6.2f} ms, garbage collector {in_collector * 1000:6.2f} ms")


if __name__ == "__main__":
    main()
