"""What the authorizer costs: produce and consume on a broker without an authorizer next to one
with the built-in authorizer holding many ACLs, in one run.

    python bench/bench_acls.py [--records 300000] [--size 100] [--acls 1000]

Brokers on PLAINTEXT, one at a time: without an authorizer, with, with, without (each figure
the mean of its two runs). The second has
`authorizer.class.name` set, `--acls` ACLs on other principals and topics (half LITERAL, half
PREFIXED, so each decision scans the prefixed ones) and the client's rights given by a PREFIXED
ACL. confluent-kafka produces `--records` records of `--size` bytes (small records: many
requests per second, where a per-request check would show) and reads them back. Decisions
are cached per principal and topic, so the check is a dictionary lookup per topic of a request.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, AdminClient, ResourcePatternType, ResourceType  # noqa: E402

from bench.bench_security import consume, produce  # noqa: E402
from tests.conftest import BrokerProcess  # noqa: E402

AUTHORIZER = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "super.users": "User:admin"}


def grant(bootstrap: str, acls: int) -> None:
    """The client's rights (ANONYMOUS on PLAINTEXT) and `acls` others, made through CreateAcls."""
    mine = [
        AclBinding(ResourceType.TOPIC, "bench-", ResourcePatternType.PREFIXED, "User:ANONYMOUS", "*", op, AclPermissionType.ALLOW)
        for op in (AclOperation.WRITE, AclOperation.READ, AclOperation.CREATE)
    ]
    mine.append(AclBinding(ResourceType.GROUP, "*", ResourcePatternType.LITERAL, "User:ANONYMOUS", "*", AclOperation.READ, AclPermissionType.ALLOW))
    mine.append(AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, "User:ANONYMOUS", "*", AclOperation.ALL, AclPermissionType.ALLOW))
    others = [
        AclBinding(ResourceType.TOPIC, f"team-{i}-", ResourcePatternType.PREFIXED if i % 2 else ResourcePatternType.LITERAL,
                   f"User:user{i}", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
        for i in range(acls)
    ]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_acls(mine + others).values():
        future.result(60)


def run(overrides: dict, acls: int, records: int, size: int, data_dir: Path) -> tuple[float, float]:
    broker = BrokerProcess(data_dir, overrides)
    broker.start()
    try:
        if acls >= 0:
            grant(broker.bootstrap, acls)
        conf = {"bootstrap.servers": broker.bootstrap}
        produced = records / produce(conf, "bench-acls", records, size)
        consumed = records / consume(conf, "bench-acls", records)
        return produced, consumed
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--acls", type=int, default=1000)
    args = parser.parse_args()
    # Run in the order plain, ACLs, ACLs, plain and averaged, so warm-up and drift (the first
    # broker of a run was the slower one) fall on both alike.
    acl_overrides = {**AUTHORIZER, "allow.everyone.if.no.acl.found": "true"}  # open until the client's CLUSTER ACL exists
    runs: dict[str, list] = {"plain": [], "acls": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i, which in enumerate(("plain", "acls", "acls", "plain")):
            overrides, acls = ({}, -1) if which == "plain" else (acl_overrides, args.acls)
            runs[which].append(run(overrides, acls, args.records, args.size, Path(tmp) / f"run-{i}"))
    plain = [sum(r[k] for r in runs["plain"]) / 2 for k in (0, 1)]
    acl = [sum(r[k] for r in runs["acls"]) / 2 for k in (0, 1)]
    print(f"{'':24}{'no authorizer':>16}{f'{args.acls} ACLs':>16}{'ratio':>8}")
    for name, a, b in (("produce (records/s)", plain[0], acl[0]), ("consume (records/s)", plain[1], acl[1])):
        print(f"{name:24}{a:>16,.0f}{b:>16,.0f}{b / a:>8.2f}")


if __name__ == "__main__":
    main()
