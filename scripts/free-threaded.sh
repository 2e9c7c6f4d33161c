#!/usr/bin/env bash
# Prepares a free-threaded CPython with fastlog installed, for the test brokers that scripts/test
# runs on it (FASTLOG_TEST_BROKER_PYTHON). Prints the interpreter's path.
#
#   bash scripts/free-threaded.sh        CPython 3.14 (python3.14t): what scripts/test uses
#   bash scripts/free-threaded.sh 3.13   CPython 3.13 (python3.13t)
#
# No registry this project may use ships a free-threaded CPython, so it is built once from
# Debian's own source (the python3.14 and python3.13 source packages, checked against the
# sha256 that their .dsc gives) into .cache/python3.14t or .cache/python3.13t.
#
# On 3.14t every dependency has a free-threaded wheel on PyPI, and none turns the GIL back on.
# On 3.13t, cramjam has no wheel and its newest releases do not build, so 2.11.0 is built from
# source, and it does not declare itself GIL-free (run the brokers with PYTHON_GIL=0 there);
# cryptography (cffi) does not install, so fastlog goes in with --no-deps beside its other
# dependencies (the brokers tested on it use no PKCS12 keystores).
set -euo pipefail
cd "$(dirname "$0")/.."

SERIES="${1:-3.14}"
# "version sha256" of the sources tried in turn, newest first: the sha256 is the one the
# package's .dsc (python3.14_<version>-<revision>.dsc) gives for its .orig.tar.xz. Debian's pool drops
# old versions in time: add the newest one here when none of these downloads any more.
case "$SERIES" in
  3.14)
    SOURCES=("3.14.7 3b48dac8fb59f62eaa67ac83c1eb12bda1b7a08406dd286e252c11a66be27f81"
             "3.14.6 143b1dddefaec3bd2e21e3b839b34a2b7fb9842272883c576420d605e9f30c63"
             "3.14.5 7e32597b99e5d9a39abed35de4693fa169df3e5850d4c334337ffd6a19a36db6")
    ;;
  3.13)
    SOURCES=("3.13.5 93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640")
    ;;
  *)
    echo "usage: $0 [3.14|3.13]" >&2
    exit 2
    ;;
esac
PREFIX="$PWD/.cache/python${SERIES}t"
PY="$PREFIX/bin/python${SERIES}t"
BUILT="$PREFIX/.built"  # written once the interpreter works: an interrupted build is redone
DEPENDENCIES_313=(trio outcome prometheus_client xxhash hypercorn starlette avro jsonschema protobuf
                  proto-schema-parser pyjwt cramjam==2.11.0)

build_python() {
  # A compiler, the headers CPython's ssl, zlib and ctypes modules need (trio imports ssl; pip
  # needs zlib), and what fetches and unpacks the source.
  local packages=(build-essential libssl-dev zlib1g-dev libffi-dev curl xz-utils)
  if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
    as_root=""
    [ "$(id -u)" = 0 ] || as_root="sudo"
    $as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "${packages[@]}" >/dev/null
  fi
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  local version="" source candidate sha256
  for source in "${SOURCES[@]}"; do
    read -r candidate sha256 <<<"$source"
    if curl -fsSL --retry 3 -o "$work/python.tar.xz" \
         "http://deb.debian.org/debian/pool/main/p/python${SERIES}/python${SERIES}_${candidate}.orig.tar.xz" &&
       echo "$sha256  $work/python.tar.xz" | sha256sum -c --quiet; then
      version="$candidate"
      break
    fi
  done
  if [ -z "$version" ]; then
    echo "no CPython $SERIES source in scripts/free-threaded.sh's list downloads from Debian's pool with its sha256:" \
         "add the newest there (its .dsc gives the sha256)" >&2
    return 1
  fi
  tar -xJf "$work/python.tar.xz" -C "$work"
  rm -rf "$PREFIX"
  if ! (cd "$work/Python-$version" &&
         ./configure --disable-gil --prefix="$PREFIX" --with-ensurepip=install &&
         make -j"$(nproc)" &&
         make altinstall) >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log"
    rm -rf "$PREFIX"
    return 1
  fi
  # The modules trio (ssl) and pip (zlib) need, ctypes, and no GIL.
  "$PY" -c 'import sys, ssl, zlib, ctypes; assert not sys._is_gil_enabled(), "not a free-threaded build"'
  touch "$BUILT"
}

if [ ! -f "$BUILT" ]; then
  build_python >&2
fi

if [ "$SERIES" = 3.13 ]; then
  # --prefer-binary: the newest releases of some (rpds-py, under jsonschema) build with a PyO3
  # that no longer supports 3.13t, while earlier ones have wheels for it.
  "$PY" -m pip install -q --disable-pip-version-check --prefer-binary "${DEPENDENCIES_313[@]}" >&2
  install_options=(--no-deps)
else
  install_options=(--prefer-binary)
fi
# Editable, as for the interpreter that runs the tests, so the brokers run the working tree: the
# build for this interpreter (abi3 does not load on free-threaded builds) sits beside the other
# in python/fastlog as _core.cpython-314t-*.so (or -313t-), in the one target/.
"$PY" -m pip install -q --disable-pip-version-check "${install_options[@]}" -e . >&2
if [ "$SERIES" = 3.13 ]; then
  "$PY" -c 'import sys, fastlog._core; assert not sys._is_gil_enabled(), "fastlog._core turned the GIL on"'
else  # nothing a broker loads at start-up may turn the GIL back on (a test checks the rest)
  env -u PYTHON_GIL "$PY" -c 'import sys, fastlog.broker, fastlog.cli; assert not sys._is_gil_enabled(), "a module fastlog loads turned the GIL on"'
fi
echo "$PY"
