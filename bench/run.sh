#!/usr/bin/env bash
# berth beside the reference registry (CNCF Distribution, Debian's `docker-registry`), in one
# run on this machine, and the machine's own limits measured in the same run. Writes the
# section between the `main begin`/`main end` markers of BENCHMARKS.md (the table, then
# bench/analysis.md); the sections other scripts write stay as they are.
#
#   bench/run.sh            full run: 1 GiB blob, 3 repetitions, 10 s load runs (~12 min),
#                           then the Worker's pushes (bench/worker.sh, ~5 min) and the
#                           many-clients rows (bench/load.sh 20 32 128 256, ~5 min), each writing
#                           its own section: one run regenerates all of BENCHMARKS.md but S3
#   bench/run.sh --quick    256 MiB blob, 1 repetition, 3 s load runs (~2 min; the other two
#                           shortened to match)
#   bench/run.sh --s3       both registries on one SeaweedFS (`weed mini`, installed as tests/s3.sh
#                           does) instead of the filesystem; the bucket itself (signed curl PUT and
#                           GET) stands in for the machine's limits, berth --redirect is measured
#                           on pulls, and the end-to-end client suites (tests/e2e/suites.sh) are
#                           counted on S3 and on the filesystem for both. Writes the section
#                           between the `s3 begin`/`s3 end` markers of BENCHMARKS.md (or --out).
#
# Options: --reps N, --duration SECONDS, --blob-mb MB, --image-mb MB, --out FILE,
#          --keep (keep the work dir: logs, raw results),
#          --only LIST (some of: uploads,first,pulls,skopeo,small,load,worker; comma-separated;
#          load and worker are not run with --s3).
# Needs: a Rust toolchain, curl, openssl, python3, docker-registry, nginx, wrk, hey, skopeo
# (tests/setup.sh installs them all).
#
# Everything listens on 127.0.0.1 only. The machine is shared and noisy: every figure is
# measured REPS times, the contenders alternate (their order rotates each repetition), and
# the table quotes medians. Raw samples land in $WORK/results.tsv.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
REPS=3 DUR=10 BLOB_MB=1024 IMAGE_MB=200 OUT="$ROOT/BENCHMARKS.md" KEEP=0 MODE=full S3MODE=0
ONLY=uploads,first,pulls,skopeo,small,load,worker
while (($#)); do
    case $1 in
    --quick) REPS=1 DUR=3 BLOB_MB=256 IMAGE_MB=50 MODE=quick ;;
    --reps) REPS=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --blob-mb) BLOB_MB=$2; shift ;;
    --image-mb) IMAGE_MB=$2; shift ;;
    --out) OUT=$2; shift ;;
    --keep) KEEP=1 ;;
    --only) ONLY=$2; shift ;;
    --s3) S3MODE=1 ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
# The first-pull section compares with nginx on the local disk: not an S3 figure.
# The many-clients and Worker sections are not S3's either (bench/s3load/ is).
if ((S3MODE)); then ONLY=$(echo ",$ONLY," | sed -E 's/,(first|load|worker)(,(first|load|worker))*,/,/g; s/^,//; s/,$//'); fi
CONNS=32
CHUNK_MB=16
want() { [[ ",$ONLY," == *",$1,"* ]]; }

for tool in curl openssl python3 docker-registry nginx wrk hey skopeo cargo; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (run tests/setup.sh)" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/berth-bench.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    if ((KEEP)); then echo "bench: work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RESULTS=$WORK/results.tsv
: >"$RESULTS"
# record TEST WHO REP METRIC VALUE
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }
CLK_TCK=$(getconf CLK_TCK)
# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v t="$CLK_TCK" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }
# Peak RSS in KiB since the last reset_hwm (VmHWM; writing 5 to clear_refs resets it).
hwm_of() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
reset_hwm() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }
now() { echo "$EPOCHREALTIME"; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.6f}')" "$1" "$(now)"; }
div() { python3 -c "import sys; a, b = map(float, sys.argv[1:]); print(f'{a / b:.6f}' if b else 'nan')" "$1" "$2"; }
sub() { python3 -c "import sys; a, b = map(float, sys.argv[1:]); print(f'{a - b:.6f}')" "$1" "$2"; }
wait_http() {
    for _ in $(seq 200); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.05
    done
    echo "bench: $1 did not come up" >&2
    return 1
}

# ------------------------------------------------------------------------------ build, data
log "building berth (release)"
(cd "$ROOT" && cargo build --release --quiet --bin berth)
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BERTH_BIN=${BERTH_BIN:-$TARGET_DIR/release/berth}

log "generating a $BLOB_MB MiB blob, its ${CHUNK_MB} MiB chunks, and a ${IMAGE_MB} MB image"
mkdir -p "$WORK/www" "$WORK/chunks"
chmod 755 "$WORK" "$WORK/www"
BLOB=$WORK/www/blob
head -c "$((BLOB_MB << 20))" /dev/urandom >"$BLOB"
BLOB_SIZE=$(stat -c %s "$BLOB")
BLOB_DIGEST=sha256:$(openssl dgst -sha256 -r "$BLOB" | cut -d' ' -f1)
split -b "${CHUNK_MB}M" -d -a 4 "$BLOB" "$WORK/chunks/c."
SMALL=$WORK/www/small
head -c 2048 /dev/urandom >"$SMALL"
SMALL_DIGEST=sha256:$(openssl dgst -sha256 -r "$SMALL" | cut -d' ' -f1)
read -r IMAGE_DIGEST IMAGE_BYTES < <(python3 "$HERE/mkimage.py" "$WORK/image" "$IMAGE_MB" 5)
IMAGE_MANIFEST=$WORK/image/blobs/sha256/${IMAGE_DIGEST#sha256:}
cp "$IMAGE_MANIFEST" "$WORK/www/manifest"
GB() { div "$1" 1000000000; }
BLOB_GB=$(GB "$BLOB_SIZE")
IMAGE_GB=$(GB "$IMAGE_BYTES")

# ------------------------------------------------------------------------------ servers
# dist_config PORT STORAGE-YAML: a Distribution config file's text.
dist_config() {
    cat <<EOF
version: 0.1
log:
  level: info
storage:
$2
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$1
EOF
}
# Distribution's Go AWS SDK fails to start with this machine's AWS_CA_BUNDLE: no AWS_* at all.
NO_AWS=()
for v in $(env | grep -o '^AWS_[A-Za-z0-9_]*' || true); do NO_AWS+=(-u "$v"); done
BERTH_PORT=$(free_port) DIST_PORT=$(free_port)
mkdir -p "$WORK/dist-data"
if ((S3MODE)); then
    . "$ROOT/tests/seaweed.sh"
    KEY=benchkey SECRET=benchsecret
    seaweed_start "$WORK/weed" "$KEY" "$SECRET" || { echo "bench: SeaweedFS did not start" >&2; exit 1; }
    PIDS+=("$WEED_PID")
    for b in berth dist limit; do
        seaweed_bucket "$b" || { echo "bench: no bucket $b" >&2; exit 1; }
    done
    log "SeaweedFS on $S3 (pid $WEED_PID)"
    export AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET
    BERTH_STORE=(--storage s3://berth/reg --s3-endpoint "$S3")
    DIST_STORE="  s3:
    accesskey: $KEY
    secretkey: $SECRET
    region: us-east-1
    regionendpoint: $S3
    bucket: dist
    secure: false
    v4auth: true
    forcepathstyle: true
    chunksize: 16777216
  redirect:
    disable: true"
    # berth with --redirect on the same bucket: measured on pulls only.
    REDIR_PORT=$(free_port)
    "$BERTH_BIN" serve --listen "127.0.0.1:$REDIR_PORT" "${BERTH_STORE[@]}" --redirect \
        >"$WORK/redir.log" 2>&1 &
    REDIR_PID=$!
    PIDS+=("$REDIR_PID")
else
    BERTH_STORE=(--root "$WORK/berth-data")
    DIST_STORE="  filesystem:
    rootdirectory: $WORK/dist-data"
fi
"$BERTH_BIN" serve --listen "127.0.0.1:$BERTH_PORT" "${BERTH_STORE[@]}" >"$WORK/berth.log" 2>&1 &
BERTH_PID=$!
PIDS+=("$BERTH_PID")
dist_config "$DIST_PORT" "$DIST_STORE" >"$WORK/dist.yml"
env "${NO_AWS[@]}" docker-registry serve "$WORK/dist.yml" >"$WORK/dist.log" 2>&1 &
DIST_PID=$!
PIDS+=("$DIST_PID")

SINK_PORT=$(free_port)
python3 "$HERE/sink.py" "$SINK_PORT" sha256 &
PIDS+=($!)
NULL_SINK_PORT=$(free_port)
python3 "$HERE/sink.py" "$NULL_SINK_PORT" none &
PIDS+=($!)
# Hashes, writes to a file on the same filesystem as the registries' data, and fsyncs.
DURABLE_SINK_PORT=$(free_port)
mkdir -p "$WORK/durable"
python3 "$HERE/sink.py" "$DURABLE_SINK_PORT" durable "$WORK/durable" &
PIDS+=($!)

NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
user root;
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 256; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    fastcgi_temp_path $WORK/nginx;
    uwsgi_temp_path $WORK/nginx;
    scgi_temp_path $WORK/nginx;
    types { }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/www;
    }
}
EOF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>"$WORK/nginx/stderr.log" &
PIDS+=($!)

BERTH=http://127.0.0.1:$BERTH_PORT
DIST=http://127.0.0.1:$DIST_PORT
wait_http "$BERTH/v2/"
wait_http "$DIST/v2/"
wait_http "http://127.0.0.1:$NGINX_PORT/small"
if ((S3MODE)); then REDIR=http://127.0.0.1:$REDIR_PORT; wait_http "$REDIR/v2/"; fi
for p in "$SINK_PORT" "$NULL_SINK_PORT" "$DURABLE_SINK_PORT"; do
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.05; done
done
url_of() { case $1 in berth) echo "$BERTH" ;; dist) echo "$DIST" ;; redir) echo "$REDIR" ;; esac; }
pid_of() { case $1 in berth) echo "$BERTH_PID" ;; dist) echo "$DIST_PID" ;; redir) echo "$REDIR_PID" ;; esac; }
# order REP A B [C]: the contenders rotated by the repetition number.
order() {
    local rep=$1; shift
    local n=$# i
    for ((i = 0; i < n; i++)); do
        local k=$(((i + rep) % n + 1))
        printf '%s ' "${!k}"
    done
}

# ------------------------------------------------------------------------------ uploads
# An upload's Location, absolute.
location() {
    local base=$1 loc
    loc=$(tr -d '\r' <"$2" | awk 'tolower($1) == "location:" { print $2 }' | tail -n 1)
    case $loc in http*) echo "$loc" ;; *) echo "$base$loc" ;; esac
}
with_digest() { case $1 in *\?*) echo "$1&digest=$2" ;; *) echo "$1?digest=$2" ;; esac; }
CURL=(curl -sS -L --fail-with-body -H 'Expect:')
# send METHOD URL FILE [CURL ARGS...]: FILE as the body, streamed with its Content-Length (not
# `-T FILE`, which appends the file's name to a URL that ends in `/`). Prints the status.
send() {
    local method=$1 url=$2 file=$3
    shift 3
    "${CURL[@]}" -o /dev/null -w '%{http_code}' -X "$method" -H 'Transfer-Encoding:' \
        -H "Content-Length: $(stat -c %s "$file")" -H 'Content-Type: application/octet-stream' \
        "$@" -T - "$url" <"$file"
}

# push_mono BASE REPO FILE DIGEST: POST, then the whole blob in the closing PUT. Prints seconds.
push_mono() {
    local base=$1 repo=$2 file=$3 digest=$4 t0 loc
    t0=$(now)
    "${CURL[@]}" -o /dev/null -D "$WORK/h" -X POST "$base/v2/$repo/blobs/uploads/"
    loc=$(location "$base" "$WORK/h")
    send PUT "$(with_digest "$loc" "$digest")" "$file" >/dev/null
    since "$t0"
}

# push_single BASE REPO FILE DIGEST: one POST with ?digest= and the body.
push_single() {
    local base=$1 repo=$2 file=$3 digest=$4 t0 code
    t0=$(now)
    code=$(send POST "$base/v2/$repo/blobs/uploads/?digest=$digest" "$file")
    [ "$code" = 201 ] || { echo "single POST answered $code" >&2; return 1; }
    since "$t0"
}

# push_chunked BASE REPO DIGEST: POST, one PATCH per chunk file with Content-Range, PUT.
push_chunked() {
    local base=$1 repo=$2 digest=$3 t0 loc start=0 size c
    t0=$(now)
    "${CURL[@]}" -o /dev/null -D "$WORK/h" -X POST "$base/v2/$repo/blobs/uploads/"
    loc=$(location "$base" "$WORK/h")
    for c in "$WORK"/chunks/c.*; do
        size=$(stat -c %s "$c")
        send PATCH "$loc" "$c" -D "$WORK/h" -H "Content-Range: $start-$((start + size - 1))" >/dev/null
        loc=$(location "$base" "$WORK/h")
        start=$((start + size))
    done
    "${CURL[@]}" -o /dev/null -X PUT -H 'Content-Length: 0' "$(with_digest "$loc" "$digest")"
    since "$t0"
}

# measure TEST WHO REP GB CMD...: run CMD (which prints seconds); record GB/s, and for a
# registry its peak RSS and CPU seconds per GB over the run.
measure() {
    local test=$1 who=$2 rep=$3 gb=$4 pid="" cpu0 secs
    shift 4
    case $who in berth | dist | redir) pid=$(pid_of "$who") ;; esac
    if [ -n "$pid" ]; then reset_hwm "$pid"; cpu0=$(cpu_of "$pid"); fi
    if ! secs=$("$@"); then
        log "  $test $who: FAILED"
        record "$test" "$who" "$rep" fail 1
        return 0
    fi
    record "$test" "$who" "$rep" gbps "$(div "$gb" "$secs")"
    if [ -n "$pid" ]; then
        record "$test" "$who" "$rep" rss_kib "$(hwm_of "$pid")"
        record "$test" "$who" "$rep" cpu_s_per_gb "$(div "$(sub "$(cpu_of "$pid")" "$cpu0")" "$gb")"
    fi
    log "  $test $who: $(div "$gb" "$secs") GB/s"
}

# S3 mode's limit: the bucket itself, one PUT signed by curl (SigV4, unsigned payload).
S3_SIGN=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "${KEY:-}:${SECRET:-}")
bucket_put() {
    local t0
    t0=$(now)
    # Not `send`: curl 7.88 signs the empty `Expect:` it sends, and the signature then fails.
    curl -sS --fail -o /dev/null -X PUT "${S3_SIGN[@]}" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
        -T "$1" "$S3/limit/blob"
    since "$t0"
}

sink_put() { # the limits: one PUT of the file into a sink
    local t0
    t0=$(now)
    send PUT "http://127.0.0.1:$1/blob" "$2" >/dev/null
    since "$t0"
}

# Does a registry take a whole blob in the POST? (Distribution 2.8 does not.)
single_supported() {
    local code
    code=$(send POST "$1/v2/bench/probe/blobs/uploads/?digest=$SMALL_DIGEST" "$SMALL" 2>/dev/null)
    [ "$code" = 201 ]
}
SINGLE=()
for who in berth dist; do
    if single_supported "$(url_of $who)"; then SINGLE+=("$who"); else record push_single "$who" 0 unsupported 1; fi
done

for ((rep = 1; rep <= REPS; rep++)); do
    want uploads || want pulls || break
    log "uploads, repetition $rep/$REPS"
    for who in $(order "$rep" berth dist limit); do
        case $who in
        limit)
            if ((S3MODE)); then
                measure push_mono limit "$rep" "$BLOB_GB" bucket_put "$BLOB"
                continue
            fi
            measure push_mono limit "$rep" "$BLOB_GB" sink_put "$SINK_PORT" "$BLOB"
            measure push_mono loopback "$rep" "$BLOB_GB" sink_put "$NULL_SINK_PORT" "$BLOB"
            measure push_mono durable "$rep" "$BLOB_GB" sink_put "$DURABLE_SINK_PORT" "$BLOB"
            ;;
        *)
            base=$(url_of "$who")
            measure push_mono "$who" "$rep" "$BLOB_GB" push_mono "$base" "bench/mono-$rep" "$BLOB" "$BLOB_DIGEST"
            if [[ " ${SINGLE[*]} " == *" $who "* ]]; then
                measure push_single "$who" "$rep" "$BLOB_GB" push_single "$base" "bench/single-$rep" "$BLOB" "$BLOB_DIGEST"
            fi
            measure push_chunked "$who" "$rep" "$BLOB_GB" push_chunked "$base" "bench/chunked-$rep" "$BLOB_DIGEST"
            ;;
        esac
    done
done

# ------------------------------------------------------------------------------ first pull
# pull_null URL [SIGNING ARGS...]: a signed GET goes without CURL's `Expect:` (see bucket_put).
pull_null() {
    local t0 url=$1 cmd=("${CURL[@]}")
    shift
    (($#)) && cmd=(curl -sS --fail "$@")
    t0=$(now)
    "${cmd[@]}" -o /dev/null "$url"
    since "$t0"
}
# What a user sees pulling a blob just pushed: a fresh blob each repetition (same size, new
# bytes, so no registry holds it yet), pushed with POST + PUT (a push_mono sample too), then one
# GET at once. nginx gets the same bytes written into its root (cp, then fsync) just before
# its GET.
pull_first_of() {
    local file=$1 digest=$2 rep=$3 who=$4
    case $who in
    limit)
        cp "$file" "$WORK/www/fresh-$rep"
        sync "$WORK/www/fresh-$rep"
        measure pull_first limit "$rep" "$BLOB_GB" pull_null "http://127.0.0.1:$NGINX_PORT/fresh-$rep"
        rm -f "$WORK/www/fresh-$rep"
        ;;
    *)
        local base
        base=$(url_of "$who")
        measure push_mono "$who" "$rep" "$BLOB_GB" push_mono "$base" "bench/first-$rep" "$file" "$digest"
        measure pull_first "$who" "$rep" "$BLOB_GB" pull_null "$base/v2/bench/first-$rep/blobs/$digest"
        ;;
    esac
}
for ((rep = 1; rep <= REPS; rep++)); do
    want first || break
    log "first pull after a push, repetition $rep/$REPS"
    FRESH=$WORK/fresh
    cp "$BLOB" "$FRESH"
    head -c 4096 /dev/urandom | dd of="$FRESH" conv=notrunc status=none
    FRESH_DIGEST=sha256:$(openssl dgst -sha256 -r "$FRESH" | cut -d' ' -f1)
    for who in $(order "$rep" berth dist limit); do
        pull_first_of "$FRESH" "$FRESH_DIGEST" "$rep" "$who"
    done
    rm -f "$FRESH"
done

# ------------------------------------------------------------------------------ pulls
pull_sha() {
    local t0 got url=$1 cmd=("${CURL[@]}")
    shift
    (($#)) && cmd=(curl -sS --fail "$@")
    t0=$(now)
    got=$("${cmd[@]}" "$url" | openssl dgst -sha256 -r | cut -d' ' -f1)
    [ "sha256:$got" = "$BLOB_DIGEST" ] || { echo "digest mismatch: sha256:$got" >&2; return 1; }
    since "$t0"
}
blob_url() {
    case $1 in
    limit) if ((S3MODE)); then echo "$S3/limit/blob"; else echo "http://127.0.0.1:$NGINX_PORT/blob"; fi ;;
    *) echo "$(url_of "$1")/v2/bench/mono-1/blobs/$BLOB_DIGEST" ;;
    esac
}
PULLERS="berth dist limit"
if ((S3MODE)); then PULLERS="berth dist redir limit"; fi
for ((rep = 1; rep <= REPS; rep++)); do
    want pulls || break
    log "pulls, repetition $rep/$REPS"
    for who in $(order "$rep" $PULLERS); do
        sign=()
        if ((S3MODE)) && [ "$who" = limit ]; then sign=("${S3_SIGN[@]}"); fi
        measure pull_null "$who" "$rep" "$BLOB_GB" pull_null "$(blob_url "$who")" "${sign[@]}"
    done
    for who in $(order "$rep" $PULLERS); do
        sign=()
        if ((S3MODE)) && [ "$who" = limit ]; then sign=("${S3_SIGN[@]}"); fi
        measure pull_sha "$who" "$rep" "$BLOB_GB" pull_sha "$(blob_url "$who")" "${sign[@]}"
    done
done

# ------------------------------------------------------------------------------ skopeo
# A fresh, empty blob-info cache for every invocation (see tests/e2e/clients.sh): otherwise
# skopeo would mount or skip blobs it remembers from earlier runs.
mkdir -p "$WORK/sk/home" "$WORK/sk/tmp"
printf 'unqualified-search-registries = []\n' >"$WORK/sk/registries.conf"
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$WORK/sk/policy.json"
printf '{"auths":{}}\n' >"$WORK/sk/auth.json"
sko() {
    local cache
    cache=$(mktemp -d "$WORK/sk/cache.XXXXXX")
    HOME="$WORK/sk/home" TMPDIR="$WORK/sk/tmp" XDG_DATA_HOME="$cache" _CONTAINERS_ROOTLESS_UID=65534 \
        CONTAINERS_REGISTRIES_CONF="$WORK/sk/registries.conf" REGISTRY_AUTH_FILE="$WORK/sk/auth.json" \
        skopeo --policy "$WORK/sk/policy.json" copy --quiet --preserve-digests "$@" >>"$WORK/skopeo.log" 2>&1
    local rc=$?
    rm -rf "$cache"
    return $rc
}
skopeo_push() {
    local t0
    t0=$(now)
    sko --dest-tls-verify=false "oci:$WORK/image:bench" "docker://${1#http://}/$2" || return 1
    since "$t0"
}
skopeo_pull() {
    local t0 out=$WORK/pulled
    rm -rf "$out"
    t0=$(now)
    sko --src-tls-verify=false "docker://${1#http://}/$2" "oci:$out:bench" || return 1
    since "$t0"
    rm -rf "$out"
}
for ((rep = 1; rep <= REPS; rep++)); do
    want skopeo || break
    log "skopeo, repetition $rep/$REPS"
    for who in $(order "$rep" berth dist); do
        measure skopeo_push "$who" "$rep" "$IMAGE_GB" skopeo_push "$(url_of "$who")" "bench/img-$rep:v1"
    done
    for who in $(order "$rep" berth dist); do
        measure skopeo_pull "$who" "$rep" "$IMAGE_GB" skopeo_pull "$(url_of "$who")" "bench/img-1:v1"
    done
done

# ------------------------------------------------------------------------------ small requests
ACCEPT="Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"
for who in berth dist; do
    want small || break
    want skopeo || { echo "bench: small needs skopeo (its image)" >&2; exit 2; }
    base=$(url_of "$who")
    push_mono "$base" bench/small "$SMALL" "$SMALL_DIGEST" >/dev/null
    # Every URL answers 200 before the load starts.
    for path in "manifests/v1" "manifests/$IMAGE_DIGEST"; do
        "${CURL[@]}" -o /dev/null -H "$ACCEPT" "$base/v2/bench/img-1/$path"
    done
    "${CURL[@]}" -o /dev/null "$base/v2/bench/small/blobs/$SMALL_DIGEST"
done
# load TEST WHO REP METHOD URL
load() {
    local test=$1 who=$2 rep=$3 method=$4 url=$5 out=$WORK/load.out parsed
    if [ "$method" = GET ]; then
        wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -H "$ACCEPT" "$url" >"$out" 2>&1 || true
        parsed=$(python3 "$HERE/report.py" parse-wrk "$out")
    else
        hey -z "${DUR}s" -c "$CONNS" -m HEAD -H "$ACCEPT" "$url" >"$out" 2>&1 || true
        parsed=$(python3 "$HERE/report.py" parse-hey "$out")
    fi
    read -r rps p50 p99 errors <<<"$parsed"
    record "$test" "$who" "$rep" rps "$rps"
    record "$test" "$who" "$rep" p50_ms "$p50"
    record "$test" "$who" "$rep" p99_ms "$p99"
    record "$test" "$who" "$rep" errors "$errors"
    log "  $test $who: $rps req/s, p50 $p50 ms, p99 $p99 ms, $errors errors"
}
for ((rep = 1; rep <= REPS; rep++)); do
    want small || break
    log "small requests at $CONNS connections for ${DUR}s each, repetition $rep/$REPS"
    for who in $(order "$rep" berth dist); do
        base=$(url_of "$who")
        load manifest_get_tag "$who" "$rep" GET "$base/v2/bench/img-1/manifests/v1"
        load manifest_get_digest "$who" "$rep" GET "$base/v2/bench/img-1/manifests/$IMAGE_DIGEST"
        load manifest_head_tag "$who" "$rep" HEAD "$base/v2/bench/img-1/manifests/v1"
        load manifest_head_digest "$who" "$rep" HEAD "$base/v2/bench/img-1/manifests/$IMAGE_DIGEST"
        load blob_get_2k "$who" "$rep" GET "$base/v2/bench/small/blobs/$SMALL_DIGEST"
    done
    ((S3MODE)) && continue
    load blob_get_2k limit "$rep" GET "http://127.0.0.1:$NGINX_PORT/small"
    load manifest_get_tag limit "$rep" GET "http://127.0.0.1:$NGINX_PORT/manifest"
done
# ------------------------------------------------------------------------------ client suites
# S3 mode: the end-to-end client checks (tests/e2e/suites.sh) against each registry on S3 (the
# ones above) and on a fresh filesystem root; Distribution with the two flags
# tests/e2e/distribution.sh sets for it (no referrers API, no tags pagination).
# suites WHO STORAGE HOST:PORT [VAR=VALUE...]
suites() {
    local who=$1 storage=$2 hostport=$3 line
    shift 3
    env "$@" bash "$ROOT/tests/e2e/suites.sh" "$hostport" >"$WORK/suites-$who-$storage.out" 2>&1 || true
    line=$(tail -n 1 "$WORK/suites-$who-$storage.out")
    if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        record "suites_$storage" "$who" 1 passed "${BASH_REMATCH[1]}"
        record "suites_$storage" "$who" 1 failed "${BASH_REMATCH[2]}"
    else
        record "suites_$storage" "$who" 1 passed 0
        record "suites_$storage" "$who" 1 failed 1
    fi
    log "  client suites, $who on $storage: $line"
}
if ((S3MODE)); then
    log "client suites (tests/e2e/suites.sh) on S3 and on the filesystem"
    DIST_FLAGS=(E2E_NO_REFERRERS=1 E2E_NO_TAGS_PAGINATION=1)
    suites berth s3 "127.0.0.1:$BERTH_PORT" BERTH_BIN="$BERTH_BIN"
    suites dist s3 "127.0.0.1:$DIST_PORT" "${DIST_FLAGS[@]}" BERTH_BIN="$BERTH_BIN"
    FS_BERTH_PORT=$(free_port) FS_DIST_PORT=$(free_port)
    "$BERTH_BIN" serve --listen "127.0.0.1:$FS_BERTH_PORT" --root "$WORK/berth-fs" >"$WORK/berth-fs.log" 2>&1 &
    PIDS+=($!)
    dist_config "$FS_DIST_PORT" "  filesystem:
    rootdirectory: $WORK/dist-fs" >"$WORK/dist-fs.yml"
    env "${NO_AWS[@]}" docker-registry serve "$WORK/dist-fs.yml" >"$WORK/dist-fs.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$FS_BERTH_PORT/v2/"
    wait_http "http://127.0.0.1:$FS_DIST_PORT/v2/"
    suites berth fs "127.0.0.1:$FS_BERTH_PORT" BERTH_BIN="$BERTH_BIN"
    suites dist fs "127.0.0.1:$FS_DIST_PORT" "${DIST_FLAGS[@]}" BERTH_BIN="$BERTH_BIN"
fi
# ------------------------------------------------------------------------------ report
{
    printf '%s\n' "mode=$MODE" "reps=$REPS" "duration=$DUR" "conns=$CONNS" "blob_bytes=$BLOB_SIZE" \
        "chunk_mb=$CHUNK_MB" "image_bytes=$IMAGE_BYTES"
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) x $(nproc)"
    echo "sha_ni=$(grep -q -w sha_ni /proc/cpuinfo && echo yes || echo no)"
    echo "load=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "berth=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo '+changes')"
    echo "distribution=$(docker-registry --version 2>/dev/null | head -n 1)"
    if ((S3MODE)); then
        echo "seaweedfs=$("$WEED" version 2>/dev/null | head -n 1)"
        echo "storage=s3"
    fi
    echo "tools=$(curl --version | head -n 1 | cut -d' ' -f1-2), $(nginx -v 2>&1 | cut -d' ' -f3), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), hey, $(skopeo --version)"
} >"$WORK/meta.txt"
if ((S3MODE)); then
    # The section between the markers in $OUT, replaced (or appended at the end).
    python3 "$HERE/report.py" report-s3 "$RESULTS" "$WORK/meta.txt" >"$WORK/s3.md"
    python3 "$HERE/report.py" splice "$OUT" "$WORK/s3.md"
else
    # The main section, between its markers; the sections other scripts write stay.
    python3 "$HERE/report.py" report "$RESULTS" "$WORK/meta.txt" "$HERE/analysis.md" >"$WORK/main.md"
    python3 "$HERE/report.py" splice "$OUT" "$WORK/main.md" main
fi
log "wrote $OUT"
if want load || want worker; then
    # This run's servers go first: the next two start their own. The Worker's pushes, the
    # noisiest figures, run before the load test leaves the disk and the load average busy.
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    PIDS=()
    # The gigabytes written above reach the disk first, not during the next figures.
    sync
    sleep 10
fi
if want worker; then
    log "the Worker: bench/worker.sh"
    quick=()
    [ "$MODE" = quick ] && quick=(--quick)
    bash "$HERE/worker.sh" "${quick[@]}" --out "$OUT" >"$WORK/worker.log" 2>&1 || { tail -n 20 "$WORK/worker.log" >&2; exit 1; }
    log "wrote the Worker section of $OUT"
fi
if want load; then
    log "many clients: bench/load.sh"
    if [ "$MODE" = quick ]; then set -- 5 32; else set -- 20 32 128 256; fi
    LOAD_OUT="$OUT" bash "$HERE/load.sh" "$@" >"$WORK/load.log" 2>&1 || { tail -n 20 "$WORK/load.log" >&2; exit 1; }
    log "wrote the many-clients section of $OUT"
fi
