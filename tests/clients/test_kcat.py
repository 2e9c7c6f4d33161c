"""kcat (Debian's package, with the librdkafka it links) against a real broker: listing all topics,
produce and consume with every codec, a consumer group that commits and resumes, and offsets by
time. kcat has no admin commands, so topics are created by auto-creation on produce.

`bash scripts/test` installs kcat; the test fails (never skips) without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

TIMEOUT = 30  # seconds, for each kcat run
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def kcat(broker, *args: str, stdin: str | None = None) -> str:
    assert shutil.which("kcat"), "kcat is missing: run `bash scripts/test`, which installs it from Debian"
    done = subprocess.run(
        ["kcat", "-b", broker.bootstrap, *args], input=stdin, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, f"kcat {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def produce(broker, topic: str, lines: list[str], *options: str) -> None:
    kcat(broker, "-P", "-t", topic, "-K:", "-p", "0", *options, stdin="".join(f"{line}\n" for line in lines))


def consume(broker, topic: str, *options: str) -> list[str]:
    return kcat(broker, "-C", "-t", topic, "-e", "-f", "%o %k %s\n", *options).splitlines()


def test_kcat_version_is_reported() -> None:
    banner = subprocess.run(["kcat", "-V"], capture_output=True, text=True, timeout=TIMEOUT).stdout
    assert re.search(r"Version \S+ .*librdkafka \S+", banner), banner


def test_kcat_lists_all_topics(broker, unique_topic) -> None:
    produce(broker, unique_topic, ["k:v"])
    metadata = json.loads(kcat(broker, "-L", "-J"))
    assert unique_topic in {t["topic"] for t in metadata["topics"]}
    assert metadata["brokers"] == [{"id": 0, "name": broker.bootstrap}]


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_produces_and_consumes_with(broker, unique_topic, codec) -> None:
    lines = [f"key{i}:value {i} {'x' * i}" for i in range(50)]
    produce(broker, unique_topic, lines, "-z", codec)
    assert consume(broker, unique_topic) == [f"{i} {line.replace(':', ' ', 1)}" for i, line in enumerate(lines)]


def test_kcat_consumer_group_commits_and_resumes(broker, unique_topic) -> None:
    produce(broker, unique_topic, ["k0:a", "k1:b", "k2:c"])
    group = ["-G", f"group-{unique_topic}", "-e", "-f", "%o %k %s\n", "-X", "auto.offset.reset=earliest", unique_topic]
    assert kcat(broker, *group).splitlines() == ["0 k0 a", "1 k1 b", "2 k2 c"]
    produce(broker, unique_topic, ["k3:d"])
    assert kcat(broker, *group).splitlines() == ["3 k3 d"]  # resumed at the committed offset


def test_kcat_offsets_by_time(broker, unique_topic) -> None:
    for i in range(3):  # one kcat run each: distinct timestamps
        produce(broker, unique_topic, [f"k{i}:v{i}"])
    stamped = [line.split() for line in kcat(broker, "-C", "-t", unique_topic, "-e", "-f", "%o %T\n").splitlines()]
    timestamps = [int(t) for _, t in stamped]
    assert [int(o) for o, _ in stamped] == [0, 1, 2] and timestamps[0] < timestamps[1]
    from_second = consume(broker, unique_topic, "-o", f"s@{timestamps[1]}")
    assert [line.split()[0] for line in from_second] == ["1", "2"]
