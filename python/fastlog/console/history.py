"""The last 15 minutes, for the console's charts: a sample of the cluster's cumulative counts
every few seconds (`ClusterView.sample`), from which rates and lag over time are derived.

Sampling starts when someone opens the console, so a broker nobody looks at does no extra
work, and stops again once nobody has looked for the length of the window.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Callable, Optional

import trio

from fastlog.console.cluster_view import ClusterView

log = logging.getLogger(__name__)

WINDOW_SECONDS = 15 * 60


class History:
    def __init__(self, view: ClusterView, interval: float, local_counters: Optional[Callable[[], dict]] = None) -> None:
        """`local_counters`: in a broker, its own cumulative byte counters (bytes in and out
        of its sockets), which no Kafka request can tell a standalone console."""
        self.view = view
        self.interval = interval
        self.local_counters = local_counters
        self.samples: collections.deque[dict] = collections.deque(maxlen=int(WINDOW_SECONDS / interval) + 1)
        self._wanted = trio.Event()
        self._viewed = 0.0  # trio time of the last page view

    def viewed(self) -> None:
        """A page asked for data: sample (again) from now on."""
        self._viewed = trio.current_time()
        self._wanted.set()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            while trio.current_time() - self._viewed < WINDOW_SECONDS:
                await self._sample()
                await trio.sleep(self.interval)
            self._wanted = trio.Event()

    async def _sample(self) -> None:
        try:
            sample = await trio.to_thread.run_sync(self.view.call, self.view.sample, abandon_on_cancel=True)
        except Exception as e:  # the cluster away for a while: a gap in the charts
            log.warning("console: sampling the cluster failed: %s", e)
            return
        if self.local_counters is not None:
            sample.update(self.local_counters())
        self.samples.append(sample)

    def rates(self) -> list[dict]:
        """Per interval: messages produced and consumed (committed) per second, bytes on disk,
        and in a broker its socket bytes in and out per second."""
        out = []
        for before, after in self._pairs():
            seconds = after["time"] - before["time"]
            point: dict[str, Any] = {
                "time": after["time"],
                "produced_per_s": max(0, after["produced"] - before["produced"]) / seconds,
                "consumed_per_s": max(0, after["consumed"] - before["consumed"]) / seconds,
                "size_bytes": after["size_bytes"],
            }
            for counter in ("bytes_in", "bytes_out"):
                if counter in after and counter in before:
                    point[f"{counter}_per_s"] = max(0, after[counter] - before[counter]) / seconds
            out.append(point)
        return out

    def topic_rates(self) -> dict[str, float]:
        """Messages per second into each topic over the last interval."""
        pairs = self._pairs()
        if not pairs:
            return {}
        before, after = pairs[-1]
        seconds = after["time"] - before["time"]
        return {
            topic: max(0, offsets - before["topic_offsets"].get(topic, offsets)) / seconds
            for topic, offsets in after["topic_offsets"].items()
        }

    def lag(self, group_id: str) -> list[dict]:
        return [{"time": s["time"], "lag": s["lag"][group_id]} for s in self.samples if group_id in s["lag"]]

    def latest_lag(self) -> dict[str, int]:
        return dict(self.samples[-1]["lag"]) if self.samples else {}

    def _pairs(self) -> list[tuple[dict, dict]]:
        samples = list(self.samples)
        return [(a, b) for a, b in zip(samples, samples[1:]) if b["time"] > a["time"]]
