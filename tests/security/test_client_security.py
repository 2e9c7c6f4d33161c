"""Real clients over SSL, SASL_PLAINTEXT and SASL_SSL with each mechanism: confluent-kafka
(1.9.2, 2.3.0, newest), kafka-python (2.0.2, newest) and aiokafka (0.8.1, newest), each in its
own interpreter (the old ones from `bash scripts/clients/python.sh`), and kcat. Every client
produces records to a new topic and reads them back in a consumer group; a wrong password
and an unknown user are refused with SASL_AUTHENTICATION_FAILED, and the broker serves on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Optional

import pytest

from tests.clients.test_python_clients import VENVS, newest
from tests.security.conftest import PLAIN_USERS, SCRAM_USERS, SecureBroker

SCRIPT = Path(__file__).with_name("secure_client.py")
RECORDS = 5
RUN_TIMEOUT_S = 90

# (protocol, mechanism): mechanism None is TLS alone, with a client certificate.
MODES = [("SSL", None), ("SASL_PLAINTEXT", "PLAIN"), ("SASL_SSL", "SCRAM-SHA-256"), ("SASL_SSL", "SCRAM-SHA-512"), ("SASL_PLAINTEXT", "SCRAM-SHA-512"), ("SASL_SSL", "PLAIN")]
# Old versions: TLS with a certificate and the strongest SASL mechanism over TLS.
OLD_MODES = [("SSL", None), ("SASL_SSL", "SCRAM-SHA-512"), ("SASL_PLAINTEXT", "PLAIN")]
CLIENTS = [
    ("confluent-kafka", "1.9.2", "confluent-kafka-1.9.2"),
    ("confluent-kafka", "2.3.0", "confluent-kafka-2.3.0"),
    ("confluent-kafka", newest("confluent-kafka"), None),
    ("kafka-python", "2.0.2", "kafka-python-2.0.2"),
    ("kafka-python", newest("kafka-python"), None),
    ("aiokafka", "0.8.1", "aiokafka-0.8.1"),
    ("aiokafka", newest("aiokafka"), None),
]
CASES = [
    pytest.param(client, venv, protocol, mechanism, id=f"{client}-{version}{'' if venv else '-newest'}-{protocol}-{mechanism or 'cert'}")
    for client, version, venv in CLIENTS
    for protocol, mechanism in (OLD_MODES if venv else MODES)
]


def credentials(mechanism: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    if mechanism is None:
        return None, None
    if mechanism == "PLAIN":
        return "alice", PLAIN_USERS["alice"]
    return SCRAM_USERS[mechanism]


def run_client(client: str, venv: Optional[str], broker: SecureBroker, protocol: str, mechanism: Optional[str],
               username: Optional[str], password: Optional[str], records: int = RECORDS, **extra: object) -> dict:
    python = Path(sys.executable) if venv is None else VENVS / venv / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no virtualenv {venv}: run `bash scripts/clients/python.sh` first")
    options = {
        "bootstrap": broker.address(protocol), "protocol": protocol, "mechanism": mechanism, "username": username,
        "password": password, "ca": str(broker.ca.pem), "topic": f"secure-{uuid.uuid4().hex[:10]}", "records": records,
        "cert": str(broker.client.cert) if mechanism is None else None, "key": str(broker.client.key) if mechanism is None else None,
        **extra,
    }
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([str(python), str(SCRIPT), client, json.dumps(options)], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, env=env, stdin=subprocess.DEVNULL)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from {client}: rc {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1])


@pytest.mark.parametrize("client, venv, protocol, mechanism", CASES)
def test_client_produces_and_consumes(secure_broker: SecureBroker, client: str, venv: Optional[str], protocol: str, mechanism: Optional[str]) -> None:
    username, password = credentials(mechanism)
    result = run_client(client, venv, secure_broker, protocol, mechanism, username, password)
    assert result["ok"], f"{result['error']}\n{result.get('trace', '')}\n{secure_broker.process.log_text()[-3000:]}"
    assert sorted(result["values"]) == [f"value-{i}" for i in range(RECORDS)]


@pytest.mark.parametrize("client, mechanism, username, password", [  # wrong password, unknown user
    ("confluent-kafka", "PLAIN", "alice", "wrong"), ("confluent-kafka", "PLAIN", "mallory", "x"),
    ("confluent-kafka", "SCRAM-SHA-256", "bob", "wrong"), ("confluent-kafka", "SCRAM-SHA-512", "nobody", "x"),
    ("kafka-python", "SCRAM-SHA-256", "bob", "wrong"), ("aiokafka", "SCRAM-SHA-512", "carol", "wrong"),
])
def test_bad_credentials_are_refused(secure_broker: SecureBroker, client: str, mechanism: str, username: str, password: str) -> None:
    log_start = len(secure_broker.process.log_text())
    # kafka-python 3 retries a refused bootstrap until bootstrap_timeout_ms (30 s by default)
    # before it gives up; a few seconds see the same refusals.
    result = run_client(client, None, secure_broker, "SASL_SSL", mechanism, username, password, records=1, bootstrap_timeout_ms=5000)
    assert not result["ok"]
    if client == "confluent-kafka":  # the others report any failed bootstrap alike
        assert "Authentication failed" in result["error"], result["error"]
    assert f"failed authentication with {mechanism} on SASL_SSL" in secure_broker.process.log_text()[log_start:]
    # ... and the broker serves others meanwhile.
    good_user, good_password = credentials(mechanism)
    assert run_client("confluent-kafka", None, secure_broker, "SASL_SSL", mechanism, good_user, good_password, records=1)["ok"]


def kcat(broker: SecureBroker, protocol: str, extra: list[str], *args: str, input: Optional[bytes] = None) -> subprocess.CompletedProcess:
    settings = ["-X", f"security.protocol={protocol}", "-X", f"ssl.ca.location={broker.ca.pem}"] if "SSL" in protocol else ["-X", f"security.protocol={protocol}"]
    return subprocess.run(["kcat", "-b", broker.address(protocol), *settings, *extra, *args], input=input, capture_output=True, timeout=60)


@pytest.mark.parametrize("protocol, extra", [
    ("SSL", []),
    ("SASL_SSL", ["-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username=bob", "-X", "sasl.password=bob-secret"]),
    ("SASL_PLAINTEXT", ["-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=alice", "-X", "sasl.password=alice-secret"]),
])
def test_kcat(secure_broker: SecureBroker, protocol: str, extra: list[str]) -> None:
    topic = f"kcat-{protocol.lower()}-{uuid.uuid4().hex[:8]}"
    produced = kcat(secure_broker, protocol, extra, "-P", "-t", topic, input=b"one\ntwo\nthree\n")
    assert produced.returncode == 0, produced.stderr.decode()
    consumed = kcat(secure_broker, protocol, extra, "-C", "-t", topic, "-o", "beginning", "-c", "3", "-e")
    assert consumed.returncode == 0, consumed.stderr.decode()
    assert consumed.stdout.decode().split() == ["one", "two", "three"]


def test_kcat_wrong_password(secure_broker: SecureBroker) -> None:
    extra = ["-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=carol", "-X", "sasl.password=nope", "-m", "5"]
    listed = kcat(secure_broker, "SASL_SSL", extra, "-L")
    assert listed.returncode != 0
    assert b"Authentication failed" in listed.stderr
