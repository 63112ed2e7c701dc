#!/usr/bin/env bash
# The long load run: keep-alive clients mixing manifest and blob pulls with pushes against the
# release `berth serve` and, in the same run, Distribution 2.8 (`docker-registry`, filesystem
# driver); every body's digest is checked, and any error fails. Each row gets a fresh server and
# data directory. Prints requests/s, p50, p99, the server's peak RSS and peak thread count.
#
#   bench/load.sh [SECS] [CLIENTS...]      default: 60 s, 256 clients
#   LOAD_WHO="berth" bench/load.sh 20 32   berth only (default: berth and dist when installed)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
CLIENTS=("${@:-256}")
WHO=${LOAD_WHO:-berth dist}
command -v docker-registry >/dev/null || WHO=${WHO//dist/}

cargo build --release --quiet --bin berth
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
cargo test -p berth-server --test it --no-run --quiet 2>/dev/null
ulimit -n 65536 2>/dev/null || true

WORK=$(mktemp -d /tmp/berth-load.XXXXXX)
SERVER=""
stop() {
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
        SERVER=""
    fi
}
trap 'stop; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start WHO: a fresh server on a fresh directory; sets SERVER (its pid) and PORT.
start() {
    PORT=$(free_port)
    local data=$WORK/$1-data
    rm -rf "$data"
    case $1 in
    berth)
        "$TARGET_DIR/release/berth" serve --listen "127.0.0.1:$PORT" --root "$data" \
            >"$WORK/berth.log" 2>&1 &
        ;;
    dist)
        mkdir -p "$data"
        cat >"$WORK/dist.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$PORT
EOF
        # Its storage comes from the file alone: no AWS_* or REGISTRY_* settings leak in.
        local unset=()
        for v in $(compgen -e | grep -E '^(AWS_|REGISTRY_)' || true); do unset+=(-u "$v"); done
        env "${unset[@]}" docker-registry serve "$WORK/dist.yml" >"$WORK/dist.log" 2>&1 &
        ;;
    esac
    SERVER=$!
    for _ in $(seq 200); do
        curl -sf -o /dev/null "http://127.0.0.1:$PORT/v2/" && return 0
        sleep 0.05
    done
    echo "load: $1 did not come up" >&2
    return 1
}

ROWS=()
for n in "${CLIENTS[@]}"; do
    for who in $WHO; do
        start "$who"
        load=$(cut -d' ' -f1 /proc/loadavg)
        two_step=0
        [ "$who" = dist ] && two_step=1
        out=$(BERTH_LOAD_SECS=$SECS BERTH_LOAD_CLIENTS=$n BERTH_LOAD_ADDR=127.0.0.1:$PORT \
            BERTH_LOAD_PID=$SERVER BERTH_LOAD_TWO_STEP=$two_step \
            cargo test -q -p berth-server --test it -- load::mixed_load_without_errors --exact \
            --nocapture 2>&1) || { echo "$out" >&2; exit 1; }
        stop
        grep '^load:' <<<"$out" | sed "s/^/$who /" >&2
        read -r _ c s rps p50 p99 rss threads < <(grep '^load-figures' <<<"$out")
        ROWS+=("| $c | $who | $s s | $rps | $p50 ms | $p99 ms | $((rss / 1024)) MiB | $threads | $load |")
    done
done
echo
echo "| clients | registry | duration | requests/s | p50 | p99 | peak RSS | peak threads | load average before |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"
