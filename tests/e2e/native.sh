#!/usr/bin/env bash
# Run suites.sh (clients.sh and client.sh) against berth's native server: build it (release), start
# `berth serve --listen 127.0.0.1:PORT --root TMP` on a free port, run the checks; then a second
# server with `--auth tests/e2e/auth-policy.toml` for auth.sh (access control with real
# clients). Stops the servers by their PIDs. Ends with one line `N passed, N failed` for both.
#
# Usage: tests/e2e/native.sh
#   BERTH_BIN=PATH        use this binary instead of building
#   CARGO_TARGET_DIR=DIR  honoured by the build and when locating the binary
#   E2E_KEEP=1            keep the server's root, its log and the clients' logs
# Every check runs against berth; no E2E_NO_* flag is set here.
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

if [ -z "${BERTH_BIN:-}" ]; then
    echo "# building berth (cargo build --release)"
    if ! (cd "$ROOT" && cargo build --release --quiet --bin berth) >&2; then
        echo "not ok - cargo build --release"
        echo "0 passed, 1 failed"
        exit 1
    fi
    BERTH_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/berth
fi

WORK=$(mktemp -d /tmp/e2e-berth.XXXXXX)
PID=
stop() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
    fi
    PID=
}
cleanup() {
    stop
    if [ "${E2E_KEEP:-0}" = 1 ]; then echo "# kept $WORK (server log $WORK/berth.log)" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start LOG ARGS...: berth serve on a free port with ARGS; sets PORT and PID, or fails.
start() {
    local log=$1
    shift
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$BERTH_BIN" serve --listen "127.0.0.1:$PORT" "$@" >"$log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do
        if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/v2/"; then return 0; fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "not ok - berth serve $* did not answer on 127.0.0.1:$PORT"
    tail -n 20 "$log" | sed 's/^/#   /'
    return 1
}

# run_suite SCRIPT LOG: run it against the server on $PORT; adds its counts to the totals.
passed=0 failed=0
run_suite() {
    "$@" "127.0.0.1:$PORT" | tee "$WORK/clients.out" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$'
    local line
    line=$(tail -n 1 "$WORK/clients.out")
    if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1])) failed=$((failed + BASH_REMATCH[2]))
        [ "${BASH_REMATCH[2]}" = 0 ] && return 0
    else
        echo "not ok - $* ended without its summary line"
        failed=$((failed + 1))
    fi
    return 1
}

if start "$WORK/berth.log" --root "$WORK/root"; then
    echo "# berth $("$BERTH_BIN" --version 2>/dev/null | awk '{print $NF}') pid $PID on 127.0.0.1:$PORT, root $WORK/root"
    if ! BERTH_BIN="$BERTH_BIN" run_suite "$HERE/suites.sh"; then
        echo "# last lines of the server log ($WORK/berth.log):"
        tail -n 15 "$WORK/berth.log" | cut -c1-300 | sed 's/^/#   /'
    fi
    stop
else
    failed=$((failed + 1))
fi

if start "$WORK/berth-auth.log" --root "$WORK/root-auth" --auth "$HERE/auth-policy.toml"; then
    echo "# berth with --auth $HERE/auth-policy.toml: pid $PID on 127.0.0.1:$PORT"
    if ! run_suite "$HERE/auth.sh"; then
        echo "# last lines of the server log ($WORK/berth-auth.log):"
        tail -n 15 "$WORK/berth-auth.log" | cut -c1-300 | sed 's/^/#   /'
    fi
    stop
else
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
