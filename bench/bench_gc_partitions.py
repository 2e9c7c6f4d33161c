"""Full garbage collections in a broker whose partitions were created at run time (issue 15).

Starts `fastlog serve` on free ports with a temp data dir, creates `--topics` topics of
`--partitions` partitions each over the wire (10,000 partitions by default), waits `--settle`
seconds (the broker checks every 30 s whether the partition count moved enough to freeze its
long-lived objects again; its log says when it did),
then runs bench/loadgen.rs at `--rate` records/s of 100 B for `--seconds`, `--rounds` times.
Prints per round the generator's latency, the broker's own Produce time and its GC pauses by
generation (`fastlog_request_total_seconds`, `fastlog_gc_pause_seconds`, read from /metrics
around the round; a pause is given as its histogram bucket's upper bound). With
`--scrape-every S`, the rounds alternate: one without scrapes, one with a scrape of /metrics
every S seconds (its duration printed), as Prometheus would.

    python bench/bench_gc_partitions.py [--topics 100] [--partitions 100] [--settle 40] [--scrape-every 3]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.perf import LOADGEN, find_loadgen, free_port, histogram_delta_percentile, histograms, run_loadgen  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=100, help="partitions per topic")
    parser.add_argument("--settle", type=float, default=40, help="seconds between the topics created and the first round")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scrape-every", type=float, default=0, help="seconds between scrapes of /metrics in every other round (0: none)")
    args = parser.parse_args()
    notes: list[str] = []
    loadgen = find_loadgen("", notes) or sys.exit(f"{notes[0]} ({LOADGEN})")
    from confluent_kafka.admin import AdminClient, NewTopic

    data = Path(tempfile.mkdtemp(prefix="fastlog-gc-"))
    port, metrics_port = free_port(), free_port()
    log_path = data.parent / f"{data.name}-broker.log"
    with open(log_path, "w") as log_file:
        broker = subprocess.Popen(
            [sys.executable, "-m", "fastlog", "serve", "--override", f"listeners=PLAINTEXT://127.0.0.1:{port}",
             "--override", f"log.dirs={data}", "--override", f"metrics.port={metrics_port}"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(3)
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        topics = [NewTopic(f"many-{i}", args.partitions, 1) for i in range(args.topics)] + [NewTopic("latency", 6, 1)]
        for future in admin.create_topics(topics).values():
            future.result(300)
        time.sleep(args.settle)
        for round_ in range(1, args.rounds + 1):
            scraping = args.scrape_every > 0 and round_ % 2 == 0
            before = histograms(metrics_port)
            with scrapes(metrics_port, args.scrape_every if scraping else 0) as took:
                run = run_loadgen(loadgen, f"127.0.0.1:{port}", "latency", 6, args.rate, args.seconds, 100, None)
            after = histograms(metrics_port)
            if scraping:
                print(f"round {round_}: {len(took)} scrapes of /metrics during it, each "
                      f"{min(took) * 1000:.0f}-{max(took) * 1000:.0f} ms" if took else f"round {round_}: no scrape finished", flush=True)
            own = [histogram_delta_percentile(before, after, ("fastlog_request_total_seconds", "Produce"), p)[0] * 1000 for p in (99, 99.9, 100)]
            gcs = [histogram_delta_percentile(before, after, ("fastlog_gc_pause_seconds", g), 100) for g in "012"]
            print(f"round {round_}: {args.topics * args.partitions:,} partitions, {args.rate:,}/s: client p99 {run['p99_ms']} ms, "
                  f"p99.9 {run['p999_ms']} ms, max {run['max_ms']} ms; broker's own Produce p99 {own[0]:.2f}, p99.9 {own[1]:.2f}, "
                  f"max ≤ {own[2]:.2f} ms; GC pauses gen0/1/2: "
                  + ", ".join(f"{n} ≤ {t * 1000:.2f} ms" if n else "0" for t, n in gcs), flush=True)
        frozen = [line.strip() for line in log_path.read_text().splitlines() if "frozen again" in line]
        print("broker log: " + ("; ".join(frozen) if frozen else "no refreeze"))
    finally:
        broker.terminate()
        try:
            broker.wait(120)
        except subprocess.TimeoutExpired:
            broker.kill()
        shutil.rmtree(data, ignore_errors=True)
        log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def scrapes(metrics_port: int, every: float) -> Iterator[list[float]]:
    """Scrapes /metrics every `every` seconds (none when 0) from a thread while the block runs;
    gives the list of scrape durations, filled in as they end."""
    took: list[float] = []
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(every):
            started = time.perf_counter()
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).read()
            took.append(time.perf_counter() - started)

    scraper = threading.Thread(target=scrape, daemon=True) if every > 0 else None
    if scraper:
        scraper.start()
    try:
        yield took
    finally:
        stop.set()
        if scraper:
            scraper.join(60)


if __name__ == "__main__":
    main()
