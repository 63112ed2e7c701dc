#!/usr/bin/env bash
# berth's Worker under local `wrangler dev` (R2 simulated on disk): a blob pushed whole (POST,
# then PUT with the body), pushed in chunks (POST, PATCHes of a fixed size, PUT ?digest=), and,
# as the local limit, the same bytes PUT to a plain-JS Worker that only streams the request body
# into R2 (bench/worker-limit/). Writes the section between the `worker begin`/`worker end`
# markers of BENCHMARKS.md; the sections other scripts write stay as they are.
#
#   bench/worker.sh             256 MiB blob, 5 repetitions, chunks of 16 and 32 MiB (~4 min)
#   bench/worker.sh --quick     64 MiB blob, 1 repetition
#
# Options: --reps N, --blob-mb MB, --chunks LIST (chunk sizes in MiB, comma-separated; 16 is
#          what the Worker advertises as OCI-Chunk-Min-Length), --out FILE, --keep (keep the work
#          dir: logs, raw results), --only LIST (some of: mono,chunked,limit).
# BERTH_SKIP_BUILD=1 serves the last build as it is; otherwise worker/build.sh builds it first.
# BERTH_WORKER_OUT=DIR serves worker/DIR instead of worker/build (with BERTH_SKIP_BUILD=1: to
# measure another build). worker/setup.sh must have run.
#
# Both Workers listen on 127.0.0.1 only, each with its own R2 directory. Every push is of fresh
# random bytes (a blob the bucket does not hold yet); the contenders alternate, their order
# rotating each repetition, and the table quotes the median and the range. MiB/s counts the
# whole push: every request of it, from the first byte sent to the last answer.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
W="$ROOT/worker"
REPS=5 BLOB_MB=256 CHUNKS=16,32 OUT="$ROOT/BENCHMARKS.md" KEEP=0 ONLY=mono,chunked,limit
while (($#)); do
    case $1 in
    --quick) REPS=1 BLOB_MB=64 ;;
    --reps) REPS=$2; shift ;;
    --blob-mb) BLOB_MB=$2; shift ;;
    --chunks) CHUNKS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --keep) KEEP=1 ;;
    --only) ONLY=$2; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }
NODE="$W/node_modules/.bin/node"
for tool in curl openssl python3 split; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 2; }
done
[ -x "$NODE" ] || { echo "bench: worker/node_modules is missing (run worker/setup.sh)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/berth-wbench.XXXXXX)
GROUPS_=()
# stop_group PGID: a process group started with setsid (wrangler, its node child and both
# workerd processes): TERM, then KILL after 5 s.
stop_group() {
    if kill -0 -- "-$1" 2>/dev/null; then
        kill -TERM -- "-$1" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 -- "-$1" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$1" 2>/dev/null || true
    fi
}
cleanup() {
    local g
    for g in "${GROUPS_[@]}"; do stop_group "$g"; done
    if ((KEEP)); then echo "bench: work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() { "$NODE" -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
RESULTS=$WORK/results.tsv
: >"$RESULTS"
# record TEST WHO REP METRIC VALUE
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }
now() { echo "$EPOCHREALTIME"; }
# mibps BYTES START: MiB/s from START (an EPOCHREALTIME) to now.
mibps() { python3 -c "import sys; b, t0, t1 = map(float, sys.argv[1:]); print(f'{b / 1048576 / (t1 - t0):.2f}')" "$1" "$2" "$(now)"; }

# ------------------------------------------------------------------------------ servers
if [ "${BERTH_SKIP_BUILD:-0}" != 1 ]; then
    log "building the Worker (worker/build.sh)"
    "$W/build.sh" --out-dir "$W/${BERTH_WORKER_OUT:-build}" >"$WORK/build.log" 2>&1 || { tail -n 20 "$WORK/build.log" >&2; exit 1; }
fi
# wrangler wants the Node in worker/node_modules, not the system's.
export PATH="$W/node_modules/.bin:$PATH"
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false DO_NOT_TRACK=1 \
    CLOUDFLARE_CF_FETCH_ENABLED=false
# serve NAME LOG COMMAND...: run COMMAND (a `wrangler dev` on port $PORT, which it sets) in a
# process group of its own until it answers on 127.0.0.1:$PORT; URL is then its address. A
# start that fails is retried on another port: wrangler takes more ports than --port as it
# starts, and another wrangler on this machine may take one of them first.
serve() {
    local name=$1 log=$2 try pgid args a
    shift 2
    for try in 1 2 3; do
        PORT=$(free_port)
        args=()
        for a in "$@"; do args+=("${a//@PORT@/$PORT}"); done
        setsid "${args[@]}" >"$log" 2>&1 &
        pgid=$!
        GROUPS_+=("$pgid")
        URL="http://127.0.0.1:$PORT"
        for _ in $(seq 600); do
            curl -s -o /dev/null --max-time 1 "$URL/" && return 0
            kill -0 "$pgid" 2>/dev/null || break
            sleep 0.2
        done
        stop_group "$pgid"
        log "$name did not start on port $PORT (try $try); the end of its log:"
        tail -n 5 "$log" >&2
    done
    exit 1
}
# One after the other, for the same reason.
serve "berth's Worker" "$WORK/berth.log" env BERTH_SKIP_BUILD=1 \
    BERTH_WORKER_OUT="${BERTH_WORKER_OUT:-build}" "$W/local.sh" @PORT@ \
    --persist-to "$WORK/berth-r2" --var BERTH_OPEN:true
B=$URL
serve "the limit Worker" "$WORK/limit.log" wrangler dev --config "$HERE/worker-limit/wrangler.toml" \
    --local --ip 127.0.0.1 --port @PORT@ --show-interactive-dev-session=false \
    --persist-to "$WORK/limit-r2"
L=$URL
PART_MB=$(curl -sS -X POST -D - -o /dev/null "$B/v2/bench/warm/blobs/uploads/" |
    awk 'tolower($1) == "oci-chunk-min-length:" { printf "%d", $2 / 1048576 }')
log "berth's Worker on $B (OCI-Chunk-Min-Length: ${PART_MB:-none} MiB), the limit on $L"

# ------------------------------------------------------------------------------ pushes
BLOB=$WORK/blob
SIZE=$((BLOB_MB << 20))
# fresh: new random bytes in $BLOB, their digest in DIGEST, and their chunks of $1 MiB (if
# given) in $WORK/chunks/.
fresh() {
    head -c "$SIZE" /dev/urandom >"$BLOB"
    DIGEST=sha256:$(openssl dgst -sha256 -r "$BLOB" | cut -d' ' -f1)
    rm -rf "$WORK/chunks"
    if [ -n "${1:-}" ]; then
        mkdir -p "$WORK/chunks"
        split -b "${1}M" -d -a 4 "$BLOB" "$WORK/chunks/c."
    fi
    # What the pushes before wrote (R2 on disk, these files) reaches the disk now, not while
    # the next push is timed: without this, every repetition after the first ran at half speed.
    sync
}
# location HEADERS-FILE: the Location header's value, absolute.
location() {
    local loc
    loc=$(awk 'tolower($1) == "location:" { sub(/\r$/, "", $2); print $2 }' "$1" | tail -n 1)
    case $loc in http*) echo "$loc" ;; *) echo "$B$loc" ;; esac
}
# qs URL: the separator before one more query parameter.
qs() { case $1 in *\?*) echo "&" ;; *) echo "?" ;; esac; }
# expect CODE CURL-ARGS...: run curl, fail unless the answer is CODE.
expect() {
    local want=$1 got
    shift
    got=$(curl -sS -o "$WORK/answer" -w '%{http_code}' -H 'Expect:' "$@")
    if [ "$got" != "$want" ]; then
        echo "bench: $* answered $got, not $want:" >&2
        head -c 500 "$WORK/answer" >&2
        exit 1
    fi
}

push_mono() {
    local t0 loc
    t0=$(now)
    expect 202 -X POST -D "$WORK/h" "$B/v2/bench/mono/blobs/uploads/"
    loc=$(location "$WORK/h")
    expect 201 -X PUT -T "$BLOB" -H 'Content-Type: application/octet-stream' \
        "$loc$(qs "$loc")digest=$DIGEST"
    mibps "$SIZE" "$t0"
}

push_chunked() {
    local t0 loc at=0 n c
    t0=$(now)
    expect 202 -X POST -D "$WORK/h" "$B/v2/bench/chunked/blobs/uploads/"
    loc=$(location "$WORK/h")
    for c in "$WORK"/chunks/c.*; do
        n=$(stat -c %s "$c")
        expect 202 -X PATCH -T "$c" -D "$WORK/h" -H 'Content-Type: application/octet-stream' \
            -H "Content-Range: $at-$((at + n - 1))" "$loc"
        loc=$(location "$WORK/h")
        at=$((at + n))
    done
    expect 201 -X PUT "$loc$(qs "$loc")digest=$DIGEST"
    mibps "$SIZE" "$t0"
}

push_limit() {
    local t0
    t0=$(now)
    expect 201 -X PUT -T "$BLOB" "$L/blob-$RANDOM$RANDOM"
    mibps "$SIZE" "$t0"
}

# The contenders: "mono", "chunked:<MiB>", "limit".
CONTENDERS=()
want mono && CONTENDERS+=(mono)
if want chunked; then
    for c in ${CHUNKS//,/ }; do CONTENDERS+=("chunked:$c"); done
fi
want limit && CONTENDERS+=(limit)
log "$BLOB_MB MiB blobs, $REPS repetitions: ${CONTENDERS[*]}"
# One warm-up push each, not recorded: the first request of an isolate compiles the wasm.
fresh 16
push_mono >/dev/null
push_chunked >/dev/null
push_limit >/dev/null
for rep in $(seq "$REPS"); do
    n=${#CONTENDERS[@]}
    for i in $(seq 0 $((n - 1))); do
        who=${CONTENDERS[$(((i + rep - 1) % n))]}
        case $who in
        mono) fresh; v=$(push_mono) ;;
        chunked:*) fresh "${who#chunked:}"; v=$(push_chunked) ;;
        limit) fresh; v=$(push_limit) ;;
        esac
        log "rep $rep: $who $v MiB/s"
        record push "$who" "$rep" mibps "$v"
    done
done

# ------------------------------------------------------------------------------ report
{
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "reps=$REPS"
    echo "blob_mb=$BLOB_MB"
    echo "part_mb=${PART_MB:-}"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') x $(nproc)"
    echo "load=$(cut -d' ' -f1-3 /proc/loadavg)"
    # BENCHMARKS.md itself is not a change to what is measured (bench/run.sh writes it first).
    echo "berth=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && git diff --quiet -- . ':!BENCHMARKS.md' 2>/dev/null || echo '+changes')"
    echo "wrangler=$("$W/node_modules/.bin/wrangler" --version 2>/dev/null | tail -n 1)"
    echo "wasm_gz=$(gzip -9c "$W/${BERTH_WORKER_OUT:-build}/index_bg.wasm" | wc -c)"
} >"$WORK/meta.txt"
python3 "$HERE/report.py" report-worker "$RESULTS" "$WORK/meta.txt" >"$WORK/worker.md"
cat "$WORK/worker.md"
python3 "$HERE/report.py" splice "$OUT" "$WORK/worker.md" worker
log "wrote $OUT"
