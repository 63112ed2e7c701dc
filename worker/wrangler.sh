#!/bin/sh
# wrangler from worker/node_modules, on its own Node 22, quiet and without telemetry, run at the
# top of the checkout (where wrangler.toml is):
#   worker/wrangler.sh r2 bucket create berth
#   worker/wrangler.sh deploy
set -eu
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$here/node_modules/.bin/wrangler" ] || { echo "run worker/setup.sh first" >&2; exit 1; }
export PATH="$here/node_modules/.bin:$PATH"
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false DO_NOT_TRACK=1
cd "$(dirname "$here")"
exec wrangler "$@"
