#!/bin/sh
# Build the Worker and serve it on 127.0.0.1:PORT with `wrangler dev`, R2 simulated on disk,
# until stopped (Ctrl-C, or SIGTERM to its process group).
#
#   worker/local.sh PORT [wrangler dev options...]
#
# Extra options go to `wrangler dev`, e.g. `--persist-to DIR` (default: .wrangler/state at the
# top of the checkout) or `--var BERTH_CONTRACT_TESTS:1`. Set BERTH_SKIP_BUILD=1 to serve the
# last build as it is, and BERTH_WORKER_OUT=build-test to serve the test build (the one with the
# test-only routes: `worker/build.sh --out-dir build-test --features contract`).
set -eu
[ $# -ge 1 ] || { echo "usage: $0 PORT [wrangler dev options...]" >&2; exit 2; }
# Started by a script (no terminal): lead a process group of our own, so that the caller can
# stop wrangler and both workerd processes with one `kill -- -PID` (killing only wrangler's
# node process leaves workerd running). From a terminal, stay in its group so Ctrl-C reaches
# all of them.
if [ ! -t 0 ] && [ "$(ps -o pgid= $$ | tr -d ' ')" != "$$" ]; then
    exec setsid "$0" "$@"
fi
port=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out="$here/${BERTH_WORKER_OUT:-build}"
[ "${BERTH_SKIP_BUILD:-}" = 1 ] || "$here/build.sh" --out-dir "$out" >&2

# wrangler.toml without its [build] section, beside the build: wrangler would otherwise rebuild
# on start. Paths in it are relative to the copy.
awk '
    /^\[build\]/ { skip = 1; next }
    /^\[/ { skip = 0 }
    skip { next }
    /^main *=/ { print "main = \"index.js\""; next }
    /^directory *=/ { print "directory = \"" root "/ui\""; next }
    { print }
' root="$root" "$root/wrangler.toml" > "$out/wrangler.local.toml"

export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false DO_NOT_TRACK=1 \
    CLOUDFLARE_CF_FETCH_ENABLED=false
export PATH="$here/node_modules/.bin:$PATH"
echo "local.sh: serving on http://127.0.0.1:$port (process group $$)" >&2
case " $* " in
    *" --persist-to"*) ;;
    *) set -- --persist-to "$root/.wrangler/state" "$@" ;;
esac
exec wrangler dev --config "$out/wrangler.local.toml" --local --ip 127.0.0.1 \
    --port "$port" --show-interactive-dev-session=false "$@"
