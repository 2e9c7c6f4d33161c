"""A broker whose console (beside /metrics) and schema registry listen on free ports of their
own, sampling every half second so charts move within a test."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from tests.conftest import BrokerProcess, free_port

REPO = Path(__file__).resolve().parents[2]


def console_broker_process(data_dir: Path, **overrides: str) -> BrokerProcess:
    console_port, registry_port = free_port(), free_port()
    process = BrokerProcess(data_dir, {
        "metrics.port": str(console_port),
        "schema.registry.listeners": f"http://127.0.0.1:{registry_port}",
        "console.sample.interval.ms": "500",
        "group.initial.rebalance.delay.ms": "0",
        **overrides,
    })
    process.console_url = f"http://127.0.0.1:{console_port}"  # type: ignore[attr-defined]
    process.registry_url = f"http://127.0.0.1:{registry_port}"  # type: ignore[attr-defined]
    return process


PLAIN_USERS_JAAS = """KafkaServer {
  org.apache.kafka.common.security.plain.PlainLoginModule required
    username="admin" password="admin-secret"
    user_admin="admin-secret"
    user_alice="alice-secret";
};
"""


def sasl_console_broker(tmp_path: Path, **overrides: str) -> BrokerProcess:
    """A started broker whose only listener is SASL_PLAINTEXT (PLAIN users admin and alice),
    so its console asks people to log in."""
    jaas = tmp_path / "jaas.conf"
    jaas.write_text(PLAIN_USERS_JAAS)
    port = free_port()
    broker = console_broker_process(tmp_path / "data", **{
        "listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}", "java.security.auth.login.config": str(jaas),
        "schema.registry.listeners": "-1", "connection.failed.authentication.delay.ms": "10", **overrides,
    })
    broker.port = port
    return broker.start()


def wait_for_registry(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/subjects", timeout=2):
                return
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def console_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = console_broker_process(tmp_path_factory.mktemp("console") / "data").start()
    wait_for_registry(process.registry_url)  # type: ignore[attr-defined]
    yield process
    process.stop()


def call(url: str, body: Any = None, *, cookie: Optional[str] = None) -> tuple[int, Any, Any]:
    """(status, JSON document, headers) of a GET, or of a POST when `body` is given."""
    headers = {"Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = cookie
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response), response.headers
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.load(e), e.headers


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where browser tests leave their screenshots (FASTLOG_TEST_ARTIFACTS, or test-artifacts/)."""
    path = Path(os.environ.get("FASTLOG_TEST_ARTIFACTS", REPO / "test-artifacts")) / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path
