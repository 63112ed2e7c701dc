#!/usr/bin/env bash
# The long load run: keep-alive clients mixing manifest and blob pulls with pushes against the
# release `berth serve` and, in the same run, Distribution 2.8 (`docker-registry`, filesystem
# driver); every body's digest is checked, and any error fails. Each row gets a fresh server and
# data directory. Prints requests/s, p50, p99, the server's peak RSS and peak thread count.
# The generator's own ceiling: the same clients, pulls only, against nginx serving the same
# manifests and blobs as files.
#
#   bench/load.sh [SECS] [CLIENTS...]      default: 60 s, 256 clients
#   LOAD_WHO="berth" bench/load.sh 20 32   some of berth, dist, nginx (default: all installed)
#   LOAD_OUT=FILE bench/load.sh ...        also write the section between the `load begin`/
#                                          `load end` markers of FILE (bench/run.sh does)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
CLIENTS=("${@:-256}")
WHO=${LOAD_WHO:-berth dist nginx}
command -v docker-registry >/dev/null || WHO=${WHO//dist/}
command -v nginx >/dev/null || WHO=${WHO//nginx/}

cargo build --release --quiet --bin berth
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
# The generator is built as the server is (release): it must not be what limits the rows.
cargo test --release -p berth-server --test it --no-run --quiet 2>/dev/null
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
    nginx)
        # Two workers, as berth has two runtime threads; the test writes the files before its
        # clients start. Its memory and threads are the master's only: not compared.
        mkdir -p "$data/v2" "$WORK/nginx"
        cat >"$WORK/nginx/nginx.conf" <<EOF
user root;
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    fastcgi_temp_path $WORK/nginx;
    uwsgi_temp_path $WORK/nginx;
    scgi_temp_path $WORK/nginx;
    types { }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$PORT;
        root $data;
        location = /v2/ { return 200 "{}"; }
    }
}
EOF
        nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>"$WORK/nginx.log" &
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
        two_step=0 static=()
        [ "$who" = dist ] && two_step=1
        [ "$who" = nginx ] && static=(BERTH_LOAD_STATIC="$WORK/$who-data")
        out=$(env "${static[@]}" BERTH_LOAD_SECS=$SECS BERTH_LOAD_CLIENTS=$n \
            BERTH_LOAD_ADDR=127.0.0.1:$PORT BERTH_LOAD_PID=$SERVER BERTH_LOAD_TWO_STEP=$two_step \
            cargo test --release -q -p berth-server --test it -- load::mixed_load_without_errors --exact \
            --nocapture 2>&1) || { echo "$out" >&2; exit 1; }
        stop
        grep '^load:' <<<"$out" | sed "s/^/$who /" >&2
        read -r _ c s rps p50 p99 rss threads < <(grep '^load-figures' <<<"$out")
        case $who in
        berth) name=berth mem="$((rss / 1024)) MiB | $threads" ;;
        dist) name=Distribution mem="$((rss / 1024)) MiB | $threads" ;;
        nginx) name="nginx, pulls only (the generator's ceiling)" mem="— | —" ;;
        esac
        ROWS+=("| $c | $name | $s s | $(python3 -c "print(f'{int(float(\"$rps\")):,}')") | $p50 ms | $p99 ms | $mem | $load |")
    done
done
section() {
    echo "## Many clients (\`bench/load.sh $SECS ${CLIENTS[*]}\`, $(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "The load test of \`server/tests/it/load.rs\` (keep-alive connections): clients mixing"
    echo "manifest and blob pulls with pushes of 16 KiB layers (one request in ten), every body's"
    echo "digest checked, no error allowed. Each row has a fresh server and data directory;"
    echo "berth's release build and Distribution 2.8 (\`docker-registry\`, filesystem driver)"
    echo "alternate in one run. Distribution takes no body in the POST, so its pushes are POST"
    echo "then PUT (one more request per blob, counted). Peak threads are sampled every 10 ms."
    echo "The nginx rows are the same client, pulls only, against nginx (two workers) serving the"
    echo "same manifests and blobs as files: what the generator itself reaches on this machine."
    echo "The load average before a row includes the row before it."
    echo
    echo "| clients | server | duration | requests/s | p50 | p99 | peak RSS | peak threads | load average before |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    printf '%s\n' "${ROWS[@]}"
}
echo
section
if [ -n "${LOAD_OUT:-}" ]; then
    section >"$WORK/load.md"
    python3 bench/report.py splice "$LOAD_OUT" "$WORK/load.md" load
fi
