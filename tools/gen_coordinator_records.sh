#!/bin/sh
# Generate the codec of __consumer_offsets records (fastlog's own schemas, Kafka's format)
# with the wire-codec generator, into its own package.
set -e
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" tools/gen_protocol.py --schemas schemas/fastlog/coordinator \
    --out python/fastlog/coordinator_records/_generated
