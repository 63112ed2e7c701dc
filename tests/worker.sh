#!/usr/bin/env bash
# The Worker, locally: build it twice (as deployed, and a test build with the test-only routes),
# check that the deployed build holds none of the test code, serve the test build with
# `wrangler dev` (R2 simulated on disk, in a fresh directory) on a free port of 127.0.0.1 with
# the contract-suite route enabled, run
# worker/test/*.test.mjs (the storage contract on R2, a large chunked upload, monolithic
# uploads, digest mismatches, ranges, tags pagination, referrers...); then serve the deployed
# build and run tests/e2e/suites.sh (skopeo, podman, oras, and berth's own client) against it;
# stop each by its process group.
# Then serve it again with tests/e2e/auth-policy.toml as BERTH_AUTH_POLICY (and its key as
# BERTH_AUTH_KEY) and run tests/e2e/auth.sh (access control with real clients); and once more
# with tests/ui/policy.toml for tests/ui.sh (the web page in chromium; UI_WORKER_TAGS tags in
# its big repository, default 1000).
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

# serve OUT LOG ARGS...: the build in worker/OUT under `wrangler dev` on a free port (PORT), its
# process group in PGID (setsid: wrangler, its node child and both workerd processes), ARGS
# passed on.
serve() {
    local out=$1 log=$2
    shift 2
    PORT=$("$NODE" -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
    BERTH_SKIP_BUILD=1 BERTH_WORKER_OUT=$out setsid "$W/local.sh" "$PORT" "$@" >"$log" 2>&1 &
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

# node_tests FILES...: run node --test on FILES against the server on PORT; its TAP's top-level
# results become our lines, its diagnostics our comments.
node_tests() {
    local tap="$WORK/node-$PORT.tap" n_pass n_fail
    BERTH_URL="http://127.0.0.1:$PORT" "$NODE" --test --test-concurrency=1 --test-reporter=tap \
        "$@" >"$tap" 2>&1
    awk '
        /^(not )?ok [0-9]+ - / { sub(/ [0-9]+ - /, " - "); print; next }
        /^# Subtest/ { next }
        /^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) / { next }
        /^#/ { print; next }
        /^ +(error|expected|actual|location):/ { sub(/^ +/, "#   "); print }
    ' "$tap"
    n_pass=$(grep -cE '^ok [0-9]+ - ' "$tap")
    n_fail=$(grep -cE '^not ok [0-9]+ - ' "$tap")
    passed=$((passed + n_pass)) failed=$((failed + n_fail))
    if [ $((n_pass + n_fail)) = 0 ]; then
        echo "not ok - node --test ran nothing"
        tail -n 20 "$tap" | sed 's/^/#   /'
        failed=$((failed + 1))
    fi
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
    for variant in "build" "build-test --features contract"; do
        echo "# building the Worker (worker/build.sh --out-dir $variant)"
        # shellcheck disable=SC2086 # the variant is the out dir and its feature flags
        if ! "$W/build.sh" --out-dir $variant >"$WORK/build.log" 2>&1; then
            echo "not ok - worker/build.sh --out-dir $variant"
            tail -n 20 "$WORK/build.log" | sed 's/^/#   /'
            failed=1; finish
        fi
    done
fi
for out in build build-test; do
    if [ ! -s "$W/$out/index_bg.wasm" ]; then
        echo "not ok - no build in worker/$out"
        failed=1; finish
    fi
done
wasm=$(wc -c <"$W/build/index_bg.wasm") gz=$(gzip -9c "$W/build/index_bg.wasm" | wc -c)
passed=$((passed + 1)); echo "ok - the Worker builds (wasm $wasm bytes, $gz gzipped)"
# A size budget, so that growth is a decision: 361 KiB with GC, the web extension, events and
# throttling; issue 17 targets 300 KiB (the TOML parser is the next thing to take out).
budget=${BERTH_WASM_BUDGET:-$((375 * 1024))}
if [ "$gz" -le "$budget" ]; then
    passed=$((passed + 1)); echo "ok - the deployed wasm is within its budget ($gz <= $budget bytes gzipped)"
else
    failed=$((failed + 1)); echo "not ok - the deployed wasm is $gz bytes gzipped, past its budget of $budget"
fi
# The contract suite's own messages are in the test build and must not be in the deployed one.
marker="a missing blob is NotFound"
if grep -q "$marker" "$W/build-test/index_bg.wasm" && ! grep -q "$marker" "$W/build/index_bg.wasm"; then
    passed=$((passed + 1)); echo "ok - the deployed build holds no contract suite; the test build does"
else
    failed=$((failed + 1)); echo "not ok - the contract suite is in the deployed build, or missing from the test build"
fi

# No policy and no BERTH_OPEN: reads answer, writes are refused with the reason.
serve build "$WORK/wrangler-closed.log" --persist-to "$WORK/r2-closed"
closed=$(curl -s -o "$WORK/closed.json" -w '%{http_code}' -X POST \
    "http://127.0.0.1:$PORT/v2/closed/blobs/uploads/")
base=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v2/")
if [ "$closed" = 403 ] && [ "$base" = 200 ] && grep -q BERTH_OPEN "$WORK/closed.json"; then
    passed=$((passed + 1)); echo "ok - without a policy or BERTH_OPEN, writes are refused (403, saying why)"
else
    failed=$((failed + 1)); echo "not ok - without a policy or BERTH_OPEN: POST $closed, GET /v2/ $base"
    sed 's/^/#   /' "$WORK/closed.json"
fi
stop_server

serve build-test "$WORK/wrangler.log" --persist-to "$WORK/r2" --var BERTH_CONTRACT_TESTS:1 \
    --var BERTH_OPEN:true
echo "# the Worker: pid $PGID on 127.0.0.1:$PORT, R2 state in $WORK/r2"

node_tests "$W"/test/*.test.mjs
stop_server

# Real clients against the Worker as deployed.
serve build "$WORK/wrangler-e2e.log" --persist-to "$WORK/r2-e2e" --var BERTH_OPEN:true
echo "# tests/e2e/suites.sh 127.0.0.1:$PORT (real clients, then berth's own)"
bash "$ROOT/tests/e2e/suites.sh" "127.0.0.1:$PORT" | tee "$WORK/clients.out" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$'
tally suites.sh "$WORK/clients.out" "$WORK/wrangler-e2e.log"
stop_server

# Garbage collection and the content policy: the test build (for its key listing and the GC
# contract route) on a bucket of its own, with a short grace and a pass due at every cron.
serve build-test "$WORK/wrangler-gc.log" --persist-to "$WORK/r2-gc" \
    --var BERTH_CONTRACT_TESTS:1 --var BERTH_OPEN:true --var BERTH_GC_GRACE:4 --var BERTH_GC_INTERVAL:1 \
    --var "BERTH_GC_POLICY:$(cat "$W/test-gc/policy.toml")"
echo "# garbage collection on 127.0.0.1:$PORT (worker/test-gc)"
node_tests "$W"/test-gc/*.test.mjs
stop_server

# Access control: the same build, the policy and key as vars (secrets in production).
E2E="$ROOT/tests/e2e"
serve build "$WORK/wrangler-auth.log" --persist-to "$WORK/r2-auth" \
    --var "BERTH_AUTH_POLICY:$(cat "$E2E/auth-policy.toml")" \
    --var "BERTH_AUTH_KEY:$(cat "$E2E/auth-e2e.key")"
echo "# tests/e2e/auth.sh 127.0.0.1:$PORT (the Worker with tests/e2e/auth-policy.toml)"
bash "$E2E/auth.sh" "127.0.0.1:$PORT" | tee "$WORK/auth.out" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$'
tally auth.sh "$WORK/auth.out" "$WORK/wrangler-auth.log"
stop_server

# The web page in chromium (tests/ui.sh) on the Worker, with tests/ui/policy.toml.
serve build "$WORK/wrangler-ui.log" --persist-to "$WORK/r2-ui" \
    --var "BERTH_AUTH_POLICY:$(cat "$ROOT/tests/ui/policy.toml")" \
    --var "BERTH_AUTH_KEY:$(cat "$E2E/auth-e2e.key")"
UI_HOSTPORT="127.0.0.1:$PORT" UI_HOME=worker UI_TAGS=${UI_WORKER_TAGS:-1000} bash "$ROOT/tests/ui.sh" |
    tee "$WORK/ui.out" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$'
tally ui.sh "$WORK/ui.out" "$WORK/wrangler-ui.log"
finish
