"""The oldest confluent-kafka of the client matrix with its schema registry client and Avro
serde (2.3.0, in its virtualenv from scripts/clients/python.sh) against the built-in registry;
the newest is the rest of this directory."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.schema_registry.conftest import RegistryBroker

REPO_ROOT = Path(__file__).resolve().parents[2]
OLD_CLIENT = REPO_ROOT / ".cache" / "clients" / "python" / "confluent-kafka-2.3.0" / "bin" / "python"
SCENARIO = Path(__file__).parent / "scenarios" / "confluent_registry_scenario.py"


def test_confluent_kafka_2_3_serdes(registry_broker: RegistryBroker, unique_topic: str) -> None:
    if not OLD_CLIENT.exists():
        pytest.fail(f"{OLD_CLIENT} is missing: run bash scripts/clients/python.sh")
    done = subprocess.run([str(OLD_CLIENT), str(SCENARIO), registry_broker.bootstrap, registry_broker.url, unique_topic],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["version"] == "2.3.0"
    assert result["read"] == list(range(10))
    assert result["versions"] == [1, 2]
    assert result["refused"] == [409, 40901]
