"""`run_sync_stopped_on_cancel`: the broker's background work on a worker thread (a compaction
pass), cut short by its `stop` when the broker stops, and only then."""

from __future__ import annotations

import threading

import pytest
import trio

from fastlog.broker import run_sync_stopped_on_cancel


def test_a_run_that_ends_returns_its_result_and_is_never_stopped() -> None:
    stops: list[str] = []

    async def main() -> int:
        return await run_sync_stopped_on_cancel(lambda: 42, lambda: stops.append("stop"))

    assert trio.run(main) == 42
    assert stops == []


def test_a_run_that_raises_raises_as_itself_and_is_never_stopped() -> None:
    stops: list[str] = []

    def work() -> None:
        raise KeyError("bad")

    async def main() -> None:
        await run_sync_stopped_on_cancel(work, lambda: stops.append("stop"))

    with pytest.raises(KeyError):  # not wrapped in an exception group
        trio.run(main)
    assert stops == []


def test_a_cancelled_run_is_stopped_and_waited_for() -> None:
    stopped = threading.Event()
    finished: list[bool] = []

    def work() -> str:
        assert stopped.wait(10), "stop was not called"
        finished.append(True)
        return "cut short"

    async def main() -> None:
        with trio.move_on_after(0.2):
            await run_sync_stopped_on_cancel(work, stopped.set)
        assert finished == [True], "the thread was waited for"

    trio.run(main)
