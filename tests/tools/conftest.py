"""A broker per test module with its metrics endpoint on a free port of its own."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.conftest import BrokerProcess, free_port


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    metrics_port = free_port()
    overrides = {
        "metrics.port": str(metrics_port),
        "group.initial.rebalance.delay.ms": "0",
        "log.flush.scheduler.interval.ms": "100",
    }
    process = BrokerProcess(tmp_path_factory.mktemp("broker") / "data", overrides)
    process.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"  # type: ignore[attr-defined]
    process.start()
    yield process
    process.stop()
