"""`fastlog users scram set|list|delete` against a broker: a user set by the tool logs in with
librdkafka, a deleted one no longer does, and bad input is refused with the broker's error."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.security.conftest import SecureBroker


def fastlog(*args: str, password: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastlog", *args], input=password, capture_output=True, text=True, timeout=60)


def logs_in(broker: SecureBroker, user: str, password: str, mechanism: str) -> bool:
    from confluent_kafka.admin import AdminClient

    errors: list = []
    admin = AdminClient({"bootstrap.servers": broker.address("SASL_SSL"), "security.protocol": "SASL_SSL",
                         "ssl.ca.location": str(broker.ca.pem), "sasl.mechanism": mechanism, "sasl.username": user,
                         "sasl.password": password, "error_cb": errors.append})
    try:
        admin.list_topics(timeout=5)
        return True
    except Exception:
        return False


def test_set_list_delete(secure_broker: SecureBroker) -> None:
    bootstrap = ["--bootstrap-server", secure_broker.process.bootstrap]
    done = fastlog("users", "scram", "set", "dave", "--mechanism", "SCRAM-SHA-512", "--iterations", "4096", *bootstrap, password="dave-pw\n")
    assert done.returncode == 0, done.stderr
    assert logs_in(secure_broker, "dave", "dave-pw", "SCRAM-SHA-512")
    assert not logs_in(secure_broker, "dave", "dave-pw", "SCRAM-SHA-256")  # that mechanism has no credential

    listed = fastlog("users", "scram", "list", "dave", "--json", *bootstrap)
    assert json.loads(listed.stdout) == [{"user": "dave", "mechanism": "SCRAM-SHA-512", "iterations": 4096}]

    deleted = fastlog("users", "scram", "delete", "dave", "--mechanism", "SCRAM-SHA-512", *bootstrap)
    assert deleted.returncode == 0, deleted.stderr
    assert not logs_in(secure_broker, "dave", "dave-pw", "SCRAM-SHA-512")


def test_refusals(secure_broker: SecureBroker) -> None:
    bootstrap = ["--bootstrap-server", secure_broker.process.bootstrap]
    few = fastlog("users", "scram", "set", "erin", "--iterations", "100", *bootstrap, password="pw\n")
    assert few.returncode == 1 and "UNACCEPTABLE_CREDENTIAL" in few.stderr
    missing = fastlog("users", "scram", "delete", "nobody", *bootstrap)
    assert missing.returncode == 1 and "RESOURCE_NOT_FOUND" in missing.stderr
    empty = fastlog("users", "scram", "set", "erin", *bootstrap, password="\n")
    assert empty.returncode == 1 and "empty password" in empty.stderr
