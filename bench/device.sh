#!/usr/bin/env bash
# Issue 15's 16-core rows in one prepared run on a lent machine that reaches no network.
#
#   bash bench/device.sh prepare   # here: fastlog's wheel, the Rust generator and the wheels
#                                  # perf.py needs on CPython 3.12, all in .device/ (git-ignored)
#   bash bench/device.sh run       # there, from the repository root, with .device carried:
#                                  # installs the wheels, runs perf.py, logs under $OUT
#   DEVICE_QUICK=1 bash bench/device.sh run   # the same sequence with perf.py --quick (a rehearsal)
#
# The run is sized for the device's 15 minutes (about 6 minutes on 16 cores, machine start not
# included); every step has its own time limit (520 s in all, under one call's 600), so a step
# that hangs costs its limit and no more. The exit status is 0 when every step ended well.
# Its output, one log per step, is what bench/README.md's 16-core rows are read from.
set -uo pipefail

KIT=.device
PYTHON=${PYTHON:-python3}
# the client the 2-core rows were measured with; `prepare` takes the version installed here
CONFLUENT_KAFKA=${CONFLUENT_KAFKA:-$(python3 -c 'import confluent_kafka; print(confluent_kafka.__version__)' 2>/dev/null || echo 2.16.1)}

prepare() {
    set -e
    rm -rf "$KIT"
    mkdir -p "$KIT/wheels"
    maturin build --release --quiet -o "$KIT/wheels"
    cargo build --quiet --release --no-default-features --example loadgen
    cp target/release/examples/loadgen "$KIT/loadgen"
    local platforms=()
    # the oldest glibc first, where a package has a wheel for it: the device's glibc is not known
    # here (fastlog's own wheel needs the glibc this machine has, 2.34 or later)
    for p in manylinux1_x86_64 manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64; do
        platforms+=(--platform "$p")
    done
    # fastlog's own wheel names its dependencies; pip resolves them for the device's interpreter,
    # at the versions installed here where this machine has them (the 2-core rows' versions)
    python3 -m pip freeze --exclude-editable | grep -v -i -e '^fastlog' -e '^-e' -e ' @ ' > "$KIT/constraints.txt"
    python3 -m pip download --quiet --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
        -c "$KIT/constraints.txt" -d "$KIT/wheels" "$KIT"/wheels/fastlog-*.whl "confluent-kafka==$CONFLUENT_KAFKA"
    local size
    size=$(du -sm "$KIT" | cut -f1)
    echo "$KIT: $(ls "$KIT/wheels" | wc -l) wheels and the generator, $size MiB (the device takes 64 MiB in all)"
    if [ "$size" -gt 60 ]; then
        echo "too large to carry" >&2
        exit 1
    fi
}

# One perf.py run: its name (the log's), a time limit in seconds, then perf.py's arguments.
# A step that fails or runs out of time is counted in FAILED; the next one still runs.
step() {
    local name=$1 limit=$2 status
    shift 2
    echo "== $name: perf.py $* (limit ${limit} s)"
    timeout --kill-after=5 "$limit" "$PYTHON" bench/perf.py $QUICK "$@" 2>&1 | tee "$OUT/$name.log"
    status=${PIPESTATUS[0]}
    rm -rf "${TMPDIR:-/tmp}"/fastlog-perf-*  # what a step killed in its cleanup left behind
    echo "== $name: exit $status"
    [ "$status" = 0 ] || FAILED=$((FAILED + 1))
}

run() {
    OUT=${OUT:-/tmp/device-out}
    mkdir -p "$OUT"
    QUICK=""
    [ "${DEVICE_QUICK:-0}" = 1 ] && QUICK=--quick
    FAILED=0
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fastlog-site "$KIT"/wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/fastlog-site PYTHONUNBUFFERED=1
    {
        echo "date: $(date -u)"
        echo "kernel: $(uname -sr)"
        echo "glibc: $(ldd --version 2>&1 | head -1)"
        echo "cores: $(nproc)"
        grep -m1 "model name" /proc/cpuinfo || true
        grep -E "MemTotal" /proc/meminfo || true
        "$PYTHON" -c 'import sys, fastlog._core, confluent_kafka; print("python", sys.version.split()[0], "| fastlog", fastlog.__file__, "| confluent-kafka", confluent_kafka.__version__)'
        "$KIT/loadgen" --rate 1 2>&1 | head -1  # links here: says what it misses, not "cannot execute"
    } 2>&1 | tee "$OUT/machine.log"
    # Nothing measured is worth a run that cannot load fastlog's core.
    PYTHONPATH=/tmp/fastlog-site "$PYTHON" -c 'import fastlog._core' || exit 1
    local lg=(--loadgen "$KIT/loadgen")
    # 1 producer, with the machine's own limits (loopback, disk) and the mock's ceiling
    step 1-producer 80 --only machine,ceiling,produce --producers 1
    step 4-producers 80 --only produce --producers 4 --records-100b 8000000 --records-1kb 4000000
    # 8 producers, then the paced latency rows (up to 50 % of the 100 B peak just measured) and
    # consume: cold, then warm with 1 and 8 readers
    step 8-producers 280 --only produce,latency,consume --producers 8 --consumers 8 --records-100b 16000000 \
        --records-1kb 4000000 --seconds 2 --latency-rounds 3 "${lg[@]}"
    # the same 8 producers on one network loop: what the extra loops add
    step 8-producers-1-loop 80 --only produce --producers 8 --records-100b 16000000 --records-1kb 4000000 \
        --override num.network.threads=1
    echo "steps failed or out of time: $FAILED"
    [ "$FAILED" = 0 ]
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash bench/device.sh prepare|run" >&2; exit 2 ;;
esac
