#!/usr/bin/env bash
# Builds the rskafka client check (tests/clients/rust) into the repository's one target dir and
# prints the binary's path. Idempotent: a second run only asks cargo, which finds nothing to do.
# Needs crates.io (or a filled ~/.cargo registry) the first time; `--locked` keeps Cargo.lock as committed.
set -euo pipefail
repo_root="$(cd "$(dirname "$0")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo_root/target}"

cargo build --release --locked --quiet --manifest-path "$repo_root/tests/clients/rust/Cargo.toml" >&2
echo "$CARGO_TARGET_DIR/release/fastlog-rskafka-check"
