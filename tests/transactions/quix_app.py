"""A quixstreams application with exactly-once processing, run by tests/transactions/test_other_clients.py
in the quixstreams virtualenv (scripts/clients/python.sh): it reads JSON values {"n": N} from
the input topic and writes {"n": N, "square": N*N} to the output topic, in transactions that
also commit its group's offsets (a checkpoint every `--commit-every` inputs, and one at the
stop), then stops after `--count` outputs (or `--timeout` seconds without a new message) and
prints one JSON line: {"outputs": [N, ...]}. With `--fail-at N` the input N raises ValueError
("poison N"): the application stops, aborting its open transaction, and exits non-zero.

Run as `python quix_app.py --broker HOST:PORT --input T --output T --group G --count N`.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from typing import Optional


def transform(value: dict, fail_at: Optional[int]) -> dict:
    if value["n"] == fail_at:
        raise ValueError(f"poison {fail_at}")
    return {"n": value["n"], "square": value["n"] * value["n"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--broker", "--input", "--output", "--group"):
        parser.add_argument(name, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--commit-every", type=int, default=0)
    parser.add_argument("--fail-at", type=int, default=None)
    args = parser.parse_args()

    from quixstreams import Application

    with tempfile.TemporaryDirectory() as state_dir:
        app = Application(
            broker_address=args.broker,
            consumer_group=args.group,
            auto_offset_reset="earliest",
            processing_guarantee="exactly-once",
            state_dir=state_dir,
            use_changelog_topics=False,
            loglevel=logging.INFO,
            request_timeout=20,
            commit_every=args.commit_every,
        )
        source = app.topic(args.input, value_deserializer="json")
        sink = app.topic(args.output, value_serializer="json")
        sdf = app.dataframe(source)
        sdf = sdf.apply(lambda value: transform(value, args.fail_at))
        sdf.to_topic(sink)
        outputs = app.run(count=args.count, timeout=args.timeout)
    print(json.dumps({"outputs": [row["n"] for row in outputs]}), flush=True)


if __name__ == "__main__":
    main()
