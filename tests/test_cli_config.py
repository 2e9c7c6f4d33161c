"""The command line and the configuration rules."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastlog import __version__
from fastlog.config import BrokerConfig, ConfigError, parse_properties, validate_topic_configs
from tests.schema_registry.conftest import wait_for_registry


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastlog", *args], capture_output=True, text=True, timeout=60, **kwargs)


def test_version_and_help() -> None:
    assert run("--version").stdout.strip() == f"fastlog {__version__}"
    assert "serve" in run("--help").stdout
    out = subprocess.run(["fastlog", "serve", "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "--override KEY=VALUE" in out and "--config FILE" in out


@pytest.mark.parametrize(
    "override, message",
    [
        ("no.such.key=1", "unknown config key 'no.such.key'"),
        ("num.partitions=zero", "num.partitions: 'zero' is not an integer"),
        ("num.partitions=0", "num.partitions: 0 is outside"),
        ("auto.create.topics.enable=maybe", "is not true or false"),
        ("listeners=127.0.0.1:9092", "is not NAME://host:port"),
        ("log.cleanup.policy=shred", "must be a list of delete, compact"),
        ("garbage", "--override expects KEY=VALUE"),
    ],
)
def test_invalid_configuration_stops_start_up(override: str, message: str) -> None:
    result = run("serve", "--override", override)
    assert result.returncode == 2
    assert message in result.stderr


def test_precedence_file_then_environment_then_override(tmp_path: Path) -> None:
    config_file = tmp_path / "server.properties"
    config_file.write_text(
        "# a comment\nnum.partitions=3\nlog.retention.hours: 1\nnum.io.threads=8\nmessage.max.bytes=5000\n"
    )
    config = BrokerConfig.load(
        config_file,
        ["message.max.bytes=7000"],
        environ={"FASTLOG_NUM_PARTITIONS": "4", "FASTLOG_UNRELATED": "x"},
    )
    assert config["num.partitions"] == 4
    assert config["message.max.bytes"] == 7000
    assert config.topic_defaults()["retention.ms"] == 3_600_000
    assert config.topic_defaults()["max.message.bytes"] == 7000
    with pytest.raises(ConfigError, match="cannot read config file"):
        BrokerConfig.load(tmp_path / "missing.properties")


def test_properties_parsing_and_topic_configs() -> None:
    assert parse_properties("a=1\n! c\nb : two=2\n") == {"a": "1", "b": "two=2"}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_properties("just words")
    assert validate_topic_configs({"retention.ms": "100", "cleanup.policy": "compact,delete"}) == {
        "retention.ms": 100,
        "cleanup.policy": "compact,delete",
    }
    with pytest.raises(ConfigError, match="unknown topic config"):
        validate_topic_configs({"retention.hours": "1"})


def test_default_serve_uses_9092_and_a_data_dir_here(tmp_path: Path) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 9092)) == 0:
            pytest.skip("port 9092 is taken on this machine")
    with socket.socket() as probe:
        registry_port_free = probe.connect_ex(("127.0.0.1", 8081)) != 0
    process = subprocess.Popen(
        [sys.executable, "-m", "fastlog", "serve"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", 9092), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("fastlog serve did not listen on 127.0.0.1:9092")
        assert (tmp_path / "fastlog-data" / "meta.properties").exists()
        if registry_port_free:  # the schema registry comes with it, on 8081
            wait_for_registry("http://127.0.0.1:8081")
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "received SIGINT" in out and "logs flushed and closed" in out
    if registry_port_free:
        assert "schema registry on http://127.0.0.1:8081" in out
