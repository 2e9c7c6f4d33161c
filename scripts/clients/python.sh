#!/usr/bin/env bash
# Sets up the Python Kafka clients that tests/clients/test_python_clients.py runs against a
# fastlog broker: one virtualenv per OLD client version under .cache/clients/python/<client>-<version>
# (git-ignored), and quixstreams for tests/transactions. The NEWEST versions, with their codec
# libraries, come with pyproject's [test] extra.
#
# Idempotent: a venv whose stamp file matches what it should hold is left alone, so a second
# run takes a fraction of a second. PYTHON picks the interpreter (default python3).
#
# confluent-kafka 1.9.2 has no wheel for CPython 3.11. Its cp310 wheel bundles librdkafka 1.9.2
# as one self-contained library (OpenSSL, SASL, zstd, lz4 and zlib linked in; it needs only glibc).
# We build the 1.9.2 binding from its sdist against librdkafka's headers (Debian's
# librdkafka-dev, 2.0.x: the C API and ABI only grew since 1.9), linking it to that bundled
# library by its own soname (librdkafka-<hash>.so.1) with a $ORIGIN rpath, exactly as the wheel
# lays it out. No LD_LIBRARY_PATH is needed, and the system's librdkafka.so.1 is never picked up.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
CACHE=.cache/clients/python
DOWNLOADS=.cache/clients/downloads
PIP_FLAGS=(-q --disable-pip-version-check --no-input)
# Codec libraries with CPython 3.11 wheels; kafka-python (and aiokafka < 0.9, which compresses
# through kafka-python's codec module) imports them by these names.
CODECS=(python-snappy==0.7.3 lz4==4.4.5 zstandard==0.25.0)

log() { echo "python clients: $*" >&2; }

# venv_is_ready DIR SPEC: the venv exists and was completed for exactly SPEC on this interpreter.
venv_is_ready() {
  [ -x "$1/bin/python" ] && [ "$(cat "$1/.fastlog-spec" 2>/dev/null)" = "$2 on $INTERPRETER" ]
}

new_venv() {
  rm -rf "$1"
  "$PYTHON" -m venv "$1"
}

mark_ready() {
  printf '%s' "$2 on $INTERPRETER" >"$1/.fastlog-spec"
}

# wheel_venv NAME PACKAGE...: a venv holding exactly these wheels (no source builds).
wheel_venv() {
  local dir=$CACHE/$1
  shift
  local spec="$*"
  venv_is_ready "$dir" "$spec" && return 0
  log "creating $dir ($spec)"
  new_venv "$dir"
  "$dir/bin/pip" install "${PIP_FLAGS[@]}" --only-binary=:all: "$@"
  mark_ready "$dir" "$spec"
}

ensure_librdkafka_headers() {
  [ -f /usr/include/librdkafka/rdkafka.h ] && return 0
  local as_root=""
  [ "$(id -u)" = 0 ] || as_root="sudo"
  log "installing librdkafka-dev (headers for building confluent-kafka 1.9.2)"
  $as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq librdkafka-dev >/dev/null
}

# download_confluent_192: the 1.9.2 sdist and its cp310 manylinux wheel (for the bundled library).
download_confluent_192() {
  mkdir -p "$DOWNLOADS"
  ls "$DOWNLOADS"/confluent-kafka-1.9.2.tar.gz >/dev/null 2>&1 ||
    "$PYTHON" -m pip download "${PIP_FLAGS[@]}" --no-deps --no-binary=:all: \
      -d "$DOWNLOADS" confluent-kafka==1.9.2
  ls "$DOWNLOADS"/confluent_kafka-1.9.2-cp310-*.whl >/dev/null 2>&1 ||
    "$PYTHON" -m pip download "${PIP_FLAGS[@]}" --no-deps --only-binary=:all: \
      --python-version 3.10 --platform manylinux2014_x86_64 -d "$DOWNLOADS" confluent-kafka==1.9.2
}

# bundle_librdkafka_192 LIBS_DIR: unpacks the wheel's confluent_kafka.libs/ into LIBS_DIR and
# adds a librdkafka.so link so that the linker's -lrdkafka finds it.
bundle_librdkafka_192() {
  local libs_dir=$1 wheel bundled
  wheel=$(ls "$DOWNLOADS"/confluent_kafka-1.9.2-cp310-*.whl)
  mkdir -p "$libs_dir"
  "$PYTHON" - "$wheel" "$libs_dir" <<'EOF'
import sys, zipfile, pathlib
wheel, libs_dir = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith("confluent_kafka.libs/") and not name.endswith("/"):
            (libs_dir / pathlib.Path(name).name).write_bytes(archive.read(name))
EOF
  bundled=$(cd "$libs_dir" && ls librdkafka-*.so.1)
  ln -sf "$bundled" "$libs_dir/librdkafka.so"
}

confluent_192_venv() {
  local dir=$CACHE/confluent-kafka-1.9.2 spec="confluent-kafka==1.9.2 (sdist, librdkafka 1.9.2 from the cp310 wheel)"
  venv_is_ready "$dir" "$spec" && return 0
  ensure_librdkafka_headers
  download_confluent_192
  log "creating $dir ($spec)"
  new_venv "$dir"
  local site libs_dir
  site=$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  libs_dir=$site/confluent_kafka.libs
  bundle_librdkafka_192 "$libs_dir"
  "$dir/bin/pip" install "${PIP_FLAGS[@]}" --only-binary=:all: wheel
  LDFLAGS="-L$libs_dir -Wl,-rpath,\$ORIGIN/../confluent_kafka.libs" \
    "$dir/bin/pip" install "${PIP_FLAGS[@]}" --no-deps --no-build-isolation --no-cache-dir \
    "$DOWNLOADS"/confluent-kafka-1.9.2.tar.gz
  rm "$libs_dir/librdkafka.so"
  "$dir/bin/python" -c 'import confluent_kafka as c; v = c.libversion()[0]; assert v == "1.9.2", v'
  mark_ready "$dir" "$spec"
}

main() {
  mkdir -p "$CACHE"
  INTERPRETER=$("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')
  confluent_192_venv
  # with what its schema registry client and Avro serde import (tests/schema_registry)
  wheel_venv confluent-kafka-2.3.0 confluent-kafka==2.3.0 fastavro==1.9.7 requests==2.32.3
  wheel_venv kafka-python-2.0.2 kafka-python==2.0.2 "${CODECS[@]}"
  # aiokafka 0.8 imports kafka-python's internals: keep the kafka-python of its day.
  wheel_venv aiokafka-0.8.1 aiokafka==0.8.1 kafka-python==2.0.2 "${CODECS[@]}"
  # quixstreams (tests/transactions: exactly-once processing) pins confluent-kafka below 2.13,
  # older than this interpreter's newest: it gets a venv of its own.
  wheel_venv quixstreams-3.28.1 quixstreams==3.28.1 confluent-kafka==2.12.2
  log "ready: $(cd "$CACHE" && ls -d -- */ | tr -d / | tr '\n' ' ')"
}

main "$@"
