#!/usr/bin/env bash
# berth serve over TLS with real clients: a test CA (root -> intermediate -> leaf, the chain in
# the cert file) made here with the openssl CLI; skopeo push and pull of an OCI image and an
# index (--dest-cert-dir / --src-cert-dir, a fresh blob-info cache each time), curl over HTTP/2
# and HTTP/1.1 by ALPN; a certificate replaced on disk served to the next connection while an
# open connection keeps working; a half-written certificate ignored; SIGHUP. podman push and
# pull over TLS (--cert-dir); events delivered to an https webhook trusted through
# SSL_CERT_FILE.
#
# Usage: tests/ops.sh   (BERTH_BIN=PATH to use a built binary; else cargo build --bin berth)
# Prints `ok - ...` / `not ok - ...` per check and ends with `N passed, N failed`.
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
if [ -z "${BERTH_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --quiet --bin berth) >&2 || { echo "not ok - cargo build"; echo "0 passed, 1 failed"; exit 1; }
    BERTH_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/berth
fi

WORK=$(mktemp -d /tmp/ops-berth.XXXXXX)
PID=
HOOK_PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID"; wait "$PID" 2>/dev/null
    fi
    [ -n "$HOOK_PID" ] && kill "$HOOK_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

passed=0 failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
bad() { echo "not ok - $1"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@" >"$WORK/last.log" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/#   /' "$WORK/last.log" | tail -20; fi; }

# --- the CA -----------------------------------------------------------------------------
cd "$WORK"
q() { "$@" >/dev/null 2>&1 || { echo "not ok - $*"; exit 1; }; }
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=berth test root" -keyout root.key -out root.pem \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=berth test intermediate" \
    -keyout inter.key -out inter.csr
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' > inter.ext
q openssl x509 -req -in inter.csr -CA root.pem -CAkey root.key -CAcreateserial -days 2 \
    -extfile inter.ext -out inter.pem
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > leaf.ext
leaf() { # NAME: NAME.key, NAME.pem (leaf then intermediate), NAME.serial
    q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout "$1.key" -out "$1.csr"
    q openssl x509 -req -in "$1.csr" -CA inter.pem -CAkey inter.key -CAcreateserial -days 2 \
        -extfile leaf.ext -out "$1.leaf"
    cat "$1.leaf" inter.pem > "$1.pem"
    openssl x509 -in "$1.leaf" -noout -serial | cut -d= -f2 > "$1.serial"
}
leaf one; leaf two; leaf hook
mkdir certs && cp root.pem certs/ca.crt
cp one.pem server.pem && cp one.key server.key

# --- an https webhook receiver: each event it gets, one JSON line in events.jsonl ----------
cat > hook.py <<'PY'
import http.server, json, ssl, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with open("events.jsonl", "a") as f:
            for e in body if isinstance(body, list) else [body]:
                f.write(json.dumps(e) + "\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain("hook.pem", "hook.key")
server.socket = tls.wrap_socket(server.socket, server_side=True)
open("hook.port", "w").write(str(server.server_address[1]))
server.serve_forever()
PY
python3 hook.py 2> hook.log &
HOOK_PID=$!
for _ in $(seq 100); do [ -s hook.port ] && break; sleep 0.05; done

# --- the server -------------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# SSL_CERT_FILE: the test CA is the only one berth trusts for its webhooks.
SSL_CERT_FILE="$WORK/root.pem" "$BERTH_BIN" serve --listen "127.0.0.1:$PORT" --root data \
    --tls-cert server.pem --tls-key server.key --notify "https://localhost:$(cat hook.port)/events" \
    --log-level info 2> berth.log &
PID=$!
for _ in $(seq 200); do grep -q "listening on https://" berth.log && break; sleep 0.05; done
check "serves https" grep -q "listening on https://127.0.0.1:$PORT" berth.log
HOST="localhost:$PORT"

version() { curl -sS --cacert root.pem "$@" -o /dev/null -w '%{http_version}' "https://$HOST/v2/"; }
check "curl --http2 gets HTTP/2 by ALPN" test "$(version --http2)" = 2
check "curl --http1.1 gets HTTP/1.1" test "$(version --http1.1)" = 1.1
check "plain HTTP on the TLS port is refused" bash -c "! curl -s -o /dev/null http://$HOST/v2/"

# --- skopeo push and pull over TLS ------------------------------------------------------
python3 "$ROOT/tests/e2e/mkimages.py" images >/dev/null
sk() { # a fresh blob-info cache per invocation (see tests/e2e/clients.sh)
    local cache; cache=$(mktemp -d "$WORK/cache.XXXXXX")
    _CONTAINERS_ROOTLESS_UID=65534 XDG_DATA_HOME="$cache" timeout 120 skopeo "$@"
}
expected() { python3 -c "import json,sys; print(json.load(open('images/expected.json'))['$1']['digest'])"; }
for tag in multi multiarch; do
    check "skopeo push $tag over TLS" sk copy --all --dest-cert-dir certs \
        "oci:images/layout:$tag" "docker://$HOST/ops/app:$tag"
    check "skopeo pull $tag over TLS" sk copy --all --src-cert-dir certs \
        "docker://$HOST/ops/app:$tag" "oci:pulled:$tag"
    got=$(curl -sS --cacert root.pem --http2 -o /dev/null -D - \
        -H "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json" \
        "https://$HOST/v2/ops/app/manifests/$tag" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
    check "$tag digest over HTTP/2 is the pushed one" test "$got" = "$(expected "$tag")"
done
check "skopeo refuses the server without the CA" bash -c \
    "! _CONTAINERS_ROOTLESS_UID=65534 XDG_DATA_HOME=$WORK/nocache timeout 60 skopeo inspect docker://$HOST/ops/app:multi"

# --- events over https --------------------------------------------------------------------
# pushed DIGEST TAG: the receiver has a manifest.pushed event for ops/app with both.
pushed() {
    python3 - "$1" "$2" <<'PY'
import json, sys
digest, tag = sys.argv[1:]
for line in open("events.jsonl"):
    e = json.loads(line)
    d = e["data"]
    if (e["type"] == "io.berth.manifest.pushed" and d["repository"] == "ops/app"
            and d["digest"] == digest and tag in d["tags"]):
        sys.exit(0)
sys.exit(1)
PY
}
for _ in $(seq 100); do pushed "$(expected multi)" multi 2>/dev/null && break; sleep 0.1; done
check "an https webhook gets the push of multi with its digest and tag" pushed "$(expected multi)" multi
check "... and of multiarch" pushed "$(expected multiarch)" multiarch

# --- podman push and pull over TLS ---------------------------------------------------------
# As root, with its own storage (a short --runroot: podman refuses long ones) and an empty
# blob-info cache bind-mounted over the system one in a private mount namespace.
PM=$(mktemp -d /tmp/pm.XXXXXX)
mkdir -p /var/lib/containers/cache
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > policy.json
pm() {
    local cache; cache=$(mktemp -d "$WORK/cache.XXXXXX")
    timeout 180 unshare --mount sh -c 'mount --bind "$0" /var/lib/containers/cache && exec "$@"' "$cache" \
        podman --root "$PM/root" --runroot "$PM/run" --tmpdir "$PM/tmp" --storage-driver vfs \
        --cgroup-manager=cgroupfs --events-backend=file "$@"
}
if pm pull -q --signature-policy policy.json oci:images/layout:multi > podman.id 2> podman.log; then
    check "podman push over TLS (--cert-dir)" pm push --cert-dir certs --signature-policy policy.json \
        --digestfile podman.digest "$(cat podman.id)" "docker://$HOST/ops/podman:v1"
    remote=$(curl -sS --cacert root.pem -o /dev/null -D - \
        -H "Accept: application/vnd.oci.image.manifest.v1+json" \
        "https://$HOST/v2/ops/podman/manifests/v1" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
    check "... the registry holds the manifest podman pushed" test "$remote" = "$(cat podman.digest)"
    pm rmi -f "$(cat podman.id)" >/dev/null 2>&1
    check "podman pull over TLS (--cert-dir)" pm pull -q --cert-dir certs --signature-policy policy.json \
        "docker://$HOST/ops/podman:v1"
    refuses() { ! pm pull -q --signature-policy policy.json "docker://$HOST/ops/podman:v1"; }
    check "podman refuses the server without the CA" refuses
else
    bad "podman loads the image from the layout"; sed 's/^/#   /' podman.log | tail -20
fi
pm rmi -af >/dev/null 2>&1
rm -rf "$PM"

# --- certificate replaced on disk -------------------------------------------------------
# One connection opened with the first certificate stays usable after the switch; the next
# connection gets the second certificate.
cat > swap.py <<'EOF'
import http.client, os, shutil, ssl, subprocess, sys
host, port = "localhost", int(sys.argv[1])
ctx = ssl.create_default_context(cafile="root.pem")
def serial(conn):
    der = conn.sock.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"],
                         input=der, capture_output=True, check=True).stdout.decode()
    return out.strip().split("=")[1]
old = http.client.HTTPSConnection(host, port, context=ctx)
old.request("GET", "/v2/"); r = old.getresponse(); r.read()
assert r.status == 200, r.status
assert serial(old) == open("one.serial").read().strip(), "first certificate"
# Renew as a certbot hook would: write new files beside, rename over.
shutil.copy("two.pem", "server.pem.new"); shutil.copy("two.key", "server.key.new")
os.replace("server.key.new", "server.key"); os.replace("server.pem.new", "server.pem")
new = http.client.HTTPSConnection(host, port, context=ctx)
new.request("GET", "/v2/"); r = new.getresponse(); r.read()
assert r.status == 200, r.status
assert serial(new) == open("two.serial").read().strip(), "renewed certificate on the next connection"
old.request("GET", "/v2/"); r = old.getresponse(); r.read()
assert r.status == 200, "the connection opened before the renewal still works"
assert serial(old) == open("one.serial").read().strip()
print("ok")
EOF
check "a renewed certificate is served to the next connection, open ones keep going" python3 swap.py "$PORT"

# A certificate caught half-written: the last good pair stays in use, with a warning.
head -c 200 one.pem > server.pem
cat > serial.sh <<'EOF'
echo | openssl s_client -connect "127.0.0.1:$1" -servername localhost 2>/dev/null | openssl x509 -noout -serial | cut -d= -f2
EOF
check "a broken certificate file keeps the last good one" test "$(bash serial.sh "$PORT")" = "$(cat two.serial)"
check "... and says so" grep -q "keeping the certificate in use" berth.log
cp one.pem server.pem.new && mv server.pem.new server.pem && cp one.key server.key.new && mv server.key.new server.key
check "a good pair again is taken up" test "$(bash serial.sh "$PORT")" = "$(cat one.serial)"
kill -HUP "$PID"
for _ in $(seq 100); do grep -q "SIGHUP: reloading" berth.log && break; sleep 0.05; done
check "SIGHUP reloads and the server keeps serving" bash -c \
    "grep -q 'SIGHUP: reloading' berth.log && test \"\$(curl -sS --cacert root.pem -o /dev/null -w '%{http_code}' https://$HOST/v2/)\" = 200"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
