#!/bin/bash
# The 256-client mixed load (server/tests/it/load.rs, as bench/load.sh runs it) on S3: one
# weed mini, then the test with berth's --root swapped for the bucket by ./berth-s3, with one
# instance and with three behind nginx. Usage: bench/s3load/run.sh  (SECS=60, LOAD_RUNS="1 3")
# Needs SeaweedFS (tests/seaweed.sh installs it), nginx, and a release build of berth.
set -u
HERE=$(cd "$(dirname "$0")" && pwd) ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -q --bin berth) || exit 1
D=$(mktemp -d /tmp/berth-s3load.XXXXXX)
. "$ROOT/tests/seaweed.sh"
seaweed_start "$D" loadkey loadsecret && seaweed_bucket load || { echo "no SeaweedFS" >&2; exit 1; }
export AWS_ACCESS_KEY_ID=loadkey AWS_SECRET_ACCESS_KEY=loadsecret LOAD_S3=$S3 \
    LOAD_BERTH=$TARGET/release/berth LOAD_DIR=$D
ulimit -n 65536 2>/dev/null || true
for n in ${LOAD_RUNS:-1 3}; do
    echo "== $n instance(s)"
    (cd "$ROOT" && LOAD_INSTANCES=$n BERTH_LOAD_SECS=${SECS:-60} BERTH_LOAD_CLIENTS=256 BERTH_LOAD_BIN="$HERE/berth-s3" \
        cargo test --release -q -p berth-server --test it -- load::mixed_load_without_errors --exact --nocapture 2>&1 | grep -E "load:|panicked|error|FAILED|test result")
    for pid in $(cat "$D/extra.pids" 2>/dev/null); do kill "$pid" 2>/dev/null; done
    rm -f "$D/extra.pids"
    sleep 1
done
kill -TERM $WEED_PID; sleep 4
rm -rf "$D"
