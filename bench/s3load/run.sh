#!/bin/bash
# The 256-client mixed load (server/tests/it/load.rs, as bench/load.sh runs it) on S3: one
# weed mini, then the test with berth's --root swapped for the bucket by ./berth-s3, with one
# instance and with three behind nginx. Usage: bench/s3load/run.sh  (SECS=60, LOAD_RUNS="1 3")
# Needs the SeaweedFS venv tests/s3.sh installs, nginx, and a release build of berth.
set -u
HERE=$(cd "$(dirname "$0")" && pwd) ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -q --bin berth) || exit 1
D=$(mktemp -d /tmp/berth-s3load.XXXXXX)
V=${BERTH_S3_VENV:-$HOME/.local/share/berth-s3-venv}
fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
echo '{"identities":[{"name":"t","credentials":[{"accessKey":"loadkey","secretKey":"loadsecret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' >"$D/s3.json"
S3P=$(fp) FP=$(fp)
p() { echo "-$1=$(fp)"; }
setsid "$V/bin/weed" mini -dir="$D/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    "$(p master.port)" "$(p master.port.grpc)" "$(p volume.port)" "$(p volume.port.grpc)" \
    -filer.port="$FP" "$(p filer.port.grpc)" -s3.port="$S3P" "$(p s3.port.grpc)" \
    -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false \
    "$(p admin.port)" "$(p admin.port.grpc)" -s3.config="$D/s3.json" >"$D/weed.log" 2>&1 </dev/null &
WP=$!
for _ in $(seq 300); do curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$S3P/" && curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$FP/" && break; sleep 0.1; done
curl -s -f -o /dev/null -X POST "http://127.0.0.1:$FP/buckets/load/" || echo "no bucket"
export AWS_ACCESS_KEY_ID=loadkey AWS_SECRET_ACCESS_KEY=loadsecret LOAD_S3=http://127.0.0.1:$S3P \
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
kill -TERM $WP; sleep 4
rm -rf "$D"
