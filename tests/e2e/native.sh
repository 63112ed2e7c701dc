#!/usr/bin/env bash
# Run suites.sh (clients.sh and client.sh) against berth's native server: build it (release), start
# `berth serve --listen 127.0.0.1:PORT --root TMP` on a free port, run the checks, stop the
# server by its PID. Passes through clients.sh's exit status and closing line.
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
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
    fi
    if [ "${E2E_KEEP:-0}" = 1 ]; then echo "# kept $WORK (server log $WORK/berth.log)" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BERTH_BIN" serve --listen "127.0.0.1:$PORT" --root "$WORK/root" >"$WORK/berth.log" 2>&1 &
PID=$!
up=0
for _ in $(seq 100); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/v2/"; then up=1; break; fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
if [ $up != 1 ]; then
    echo "not ok - berth serve did not answer on 127.0.0.1:$PORT"
    tail -n 20 "$WORK/berth.log" | sed 's/^/#   /'
    echo "0 passed, 1 failed"
    exit 1
fi
echo "# berth $("$BERTH_BIN" --version 2>/dev/null | awk '{print $NF}') pid $PID on 127.0.0.1:$PORT, root $WORK/root"

BERTH_BIN="$BERTH_BIN" "$HERE/suites.sh" "127.0.0.1:$PORT" | tee "$WORK/clients.out"
rc=${PIPESTATUS[0]}
if [ "$rc" != 0 ]; then
    # The server's view of the failure, then the closing line again so it stays the last.
    echo "# last lines of the server log ($WORK/berth.log):"
    tail -n 15 "$WORK/berth.log" | cut -c1-300 | sed 's/^/#   /'
    tail -n 1 "$WORK/clients.out"
fi
exit "$rc"
