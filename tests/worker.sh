#!/usr/bin/env bash
# The Worker, locally: build it, serve it with `wrangler dev` (R2 simulated on disk, in a fresh
# directory) on a free port of 127.0.0.1 with the contract-suite route enabled, run
# worker/test/*.test.mjs (the storage contract on R2, a large chunked upload, monolithic
# uploads, digest mismatches, ranges, tags pagination, referrers...) and tests/e2e/suites.sh
# (skopeo, podman, oras, and berth's own client) against it; then stop it by its process group.
# Then serve it again with tests/e2e/auth-policy.toml as BERTH_AUTH_POLICY (and its key as
# BERTH_AUTH_KEY) and run tests/e2e/auth.sh (access control with real clients).
#
#   tests/worker.sh
#   BERTH_BIG_MIB=N        size of the large chunked and monolithic blobs (default 300)
#   BERTH_SKIP_BUILD=1     serve the last build as it is
#   WORKER_KEEP=1          keep the R2 state and the wrangler log
#
# Prints `ok - ...` / `not ok - ...` per check and a last line `N passed, N failed`; exits 1 if
# anything failed. worker/setup.sh must have run (tests/setup.sh runs it).
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W="$ROOT/worker"
NODE="$W/node_modules/.bin/node"
WORK=$(mktemp -d /tmp/berth-worker.XXXXXX)
PGID=
passed=0 failed=0

stop_server() {
    if [ -n "$PGID" ] && kill -0 -- "-$PGID" 2>/dev/null; then
        kill -TERM -- "-$PGID" 2>/dev/null
        for _ in $(seq 100); do kill -0 -- "-$PGID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$PGID" 2>/dev/null
    fi
    PGID=
}
stop() {
    stop_server
    if [ "${WORKER_KEEP:-0}" = 1 ]; then echo "# kept $WORK"; else rm -rf "$WORK"; fi
}
trap stop EXIT
trap 'exit 130' INT TERM

# serve LOG ARGS...: the last build under `wrangler dev` on a free port (PORT), its process
# group in PGID (setsid: wrangler, its node child and both workerd processes), ARGS passed on.
serve() {
    local log=$1
    shift
    PORT=$("$NODE" -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
    BERTH_SKIP_BUILD=1 setsid "$W/local.sh" "$PORT" "$@" >"$log" 2>&1 &
    PGID=$!
    for _ in $(seq 600); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/v2/" && return 0
        kill -0 "$PGID" 2>/dev/null || break
        sleep 0.2
    done
    echo "not ok - wrangler dev did not answer on 127.0.0.1:$PORT"
    tail -n 20 "$log" | sed 's/^/#   /'
    failed=$((failed + 1)); finish
}

# tally NAME OUT LOG: add OUT's closing `N passed, N failed` line to ours; on failures, show
# the last lines of the wrangler log LOG.
tally() {
    local line
    line=$(tail -n 1 "$2")
    if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1])) failed=$((failed + BASH_REMATCH[2]))
        [ "${BASH_REMATCH[2]}" = 0 ] && return
    else
        echo "not ok - $1 ended without its summary line"
        failed=$((failed + 1))
    fi
    echo "# last lines of the wrangler log ($3):"
    grep -v '^\s*$' "$3" | tail -n 15 | cut -c1-300 | sed 's/^/#   /'
}

finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ]
    exit
}

if [ ! -x "$NODE" ]; then
    echo "not ok - worker/node_modules is missing: run worker/setup.sh"
    failed=1; finish
fi

if [ "${BERTH_SKIP_BUILD:-0}" != 1 ]; then
    echo "# building the Worker (worker/build.sh)"
    if ! "$W/build.sh" >"$WORK/build.log" 2>&1; then
        echo "not ok - worker/build.sh"
        tail -n 20 "$WORK/build.log" | sed 's/^/#   /'
        failed=1; finish
    fi
fi
if [ ! -s "$W/build/index_bg.wasm" ]; then
    echo "not ok - no build in worker/build"
    failed=1; finish
fi
wasm=$(wc -c <"$W/build/index_bg.wasm") gz=$(gzip -9c "$W/build/index_bg.wasm" | wc -c)
passed=$((passed + 1)); echo "ok - the Worker builds (wasm $wasm bytes, $gz gzipped)"

serve "$WORK/wrangler.log" --persist-to "$WORK/r2" --var BERTH_CONTRACT_TESTS:1
echo "# the Worker: pid $PGID on 127.0.0.1:$PORT, R2 state in $WORK/r2"

# node --test's TAP: top-level results become our lines, diagnostics our comments.
BERTH_URL="http://127.0.0.1:$PORT" "$NODE" --test --test-reporter=tap \
    "$W"/test/*.test.mjs >"$WORK/node.tap" 2>&1
awk '
    /^(not )?ok [0-9]+ - / { sub(/ [0-9]+ - /, " - "); print; next }
    /^# Subtest/ { next }
    /^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) / { next }
    /^#/ { print; next }
    /^ +(error|expected|actual|location):/ { sub(/^ +/, "#   "); print }
' "$WORK/node.tap"
n_pass=$(grep -cE '^ok [0-9]+ - ' "$WORK/node.tap")
n_fail=$(grep -cE '^not ok [0-9]+ - ' "$WORK/node.tap")
passed=$((passed + n_pass)) failed=$((failed + n_fail))
if [ $((n_pass + n_fail)) = 0 ]; then
    echo "not ok - node --test ran nothing"
    tail -n 20 "$WORK/node.tap" | sed 's/^/#   /'
    failed=$((failed + 1))
fi

echo "# tests/e2e/suites.sh 127.0.0.1:$PORT (real clients, then berth's own)"
bash "$ROOT/tests/e2e/suites.sh" "127.0.0.1:$PORT" | tee "$WORK/clients.out" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$'
tally suites.sh "$WORK/clients.out" "$WORK/wrangler.log"
stop_server

# Access control: the same build, the policy and key as vars (secrets in production).
E2E="$ROOT/tests/e2e"
serve "$WORK/wrangler-auth.log" --persist-to "$WORK/r2-auth" \
    --var "BERTH_AUTH_POLICY:$(cat "$E2E/auth-policy.toml")" \
    --var "BERTH_AUTH_KEY:$(cat "$E2E/auth-e2e.key")"
echo "# tests/e2e/auth.sh 127.0.0.1:$PORT (the Worker with tests/e2e/auth-policy.toml)"
bash "$E2E/auth.sh" "127.0.0.1:$PORT" | tee "$WORK/auth.out" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$'
tally auth.sh "$WORK/auth.out" "$WORK/wrangler-auth.log"
finish
