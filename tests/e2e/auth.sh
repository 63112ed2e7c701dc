#!/usr/bin/env bash
# Access control end to end with real clients, against a registry that serves the policy in
# tests/e2e/auth-policy.toml (anonymous pull; alice:alice-pw may push; reader:reader-pw only
# pulls) with Docker token authentication: berth serve --auth (native.sh) or the Worker
# (tests/worker.sh).
#
#   tests/e2e/auth.sh HOST:PORT
#
# skopeo with --creds, podman login then push and pull, the PyPI oras client with
# credentials, berth's own client (token flow), anonymous pulls allowed and anonymous pushes
# refused, curl for the challenge and
# the token endpoint. Prints `ok - ...` / `not ok - ...` per check and a last line
# `N passed, N failed`; exits 1 if anything failed. The blob-info caches are isolated as in
# clients.sh (see its header).
set -u -o pipefail

if [ $# -ne 1 ] || [[ "$1" != *:* ]]; then
    echo "usage: $0 HOST:PORT" >&2
    exit 2
fi
HOSTPORT=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${E2E_PYTHON:-python3}
STEP_TIMEOUT=${E2E_STEP_TIMEOUT:-90}
PREFIX=${E2E_PREFIX:-auth/r$(date +%s)-$$}
BASE="http://$HOSTPORT"
SERVICE=berth-e2e

WORK=
for _ in 1 2 3 4 5; do
    WORK=/tmp/ea.$(tr -dc 'a-z0-9' </dev/urandom | head -c 8)
    mkdir -m 700 "$WORK" 2>/dev/null && break
    WORK=
done
[ -n "$WORK" ] || { echo "cannot create a work dir in /tmp" >&2; exit 2; }
cleanup() { if [ "${E2E_KEEP:-0}" = 1 ]; then echo "# kept $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK"/{logs,home/.config,tmp,bic,out,pt}
printf 'unqualified-search-registries = []\n' >"$WORK/registries.conf"
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$WORK/policy.json"
printf '{"auths":{}}\n' >"$WORK/auth.json"
: >"$WORK/containers.conf"
cat >"$WORK/storage.conf" <<EOF2
[storage]
driver = "vfs"
graphroot = "$WORK/proot"
runroot = "$WORK/prun"
EOF2
export HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config" TMPDIR="$WORK/tmp"
export CONTAINERS_REGISTRIES_CONF="$WORK/registries.conf" REGISTRY_AUTH_FILE="$WORK/auth.json"
export CONTAINERS_CONF="$WORK/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/storage.conf"
unset _CONTAINERS_ROOTLESS_UID XDG_DATA_HOME DOCKER_CONFIG

PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
notok() {
    FAIL=$((FAIL + 1))
    echo "not ok - $1: $2"
    if [ -n "${3:-}" ] && [ -s "$3" ]; then
        grep -v '^\s*$' "$3" | tail -n 6 | cut -c1-300 | sed 's/^/#   /'
    fi
}
STEP=0 LOG= OUT=
run() {
    STEP=$((STEP + 1))
    LOG=$(printf '%s/logs/%02d-%s.log' "$WORK" "$STEP" "$1")
    OUT=${LOG%.log}.out
    shift
    "$@" >"$OUT" 2>"$LOG"
}
bounded() { timeout -k 5 "$STEP_TIMEOUT" "$@"; }
why() {
    local line
    line=$(grep -E 'level=fatal|^Error' "$LOG" | tail -n 1)
    [ -z "$line" ] && line=$(cat "$LOG" "$OUT" 2>/dev/null | grep -v '^\s*$' | tail -n 1)
    echo "${line:-exit status $1}" | cut -c1-300
}
sko() {
    local cache
    cache=$(mktemp -d "$WORK/bic/skopeo.XXXXXX")
    _CONTAINERS_ROOTLESS_UID=65534 XDG_DATA_HOME="$cache" bounded skopeo --debug --policy "$WORK/policy.json" "$@"
}
PODMAN_ISOLATED=0
mkdir -p /var/lib/containers/cache 2>/dev/null &&
    unshare --mount sh -c 'mount --bind "$0" /var/lib/containers/cache' "$WORK/bic" 2>/dev/null &&
    PODMAN_ISOLATED=1
pm() {
    local cache
    cache=$(mktemp -d "$WORK/bic/podman.XXXXXX")
    local podman=(podman --log-level=debug --root "$WORK/proot" --runroot "$WORK/prun" --tmpdir "$WORK/pt"
        --storage-driver vfs --cgroup-manager=cgroupfs --events-backend=file
        --network-config-dir "$WORK/net" --volumepath "$WORK/vol")
    if [ "$PODMAN_ISOLATED" = 1 ]; then
        bounded unshare --mount sh -c 'mount --bind "$0" /var/lib/containers/cache && exec "$@"' "$cache" "${podman[@]}" "$@"
    else
        bounded "${podman[@]}" "$@"
    fi
}
# fetch NAME CURL-ARGS...: headers to $LOG.h, body to $LOG.b
fetch() {
    STEP=$((STEP + 1))
    LOG=$(printf '%s/logs/%02d-%s.log' "$WORK" "$STEP" "$1")
    shift
    curl -sS --max-time 30 -D "$LOG.h" -o "$LOG.b" "$@" 2>"$LOG"
}
hdr() { tr -d '\r' <"$2" | grep -i "^$1:" | tail -n 1 | cut -d: -f2- | sed 's/^ *//'; }
status_of() { tr -d '\r' <"$1" | grep '^HTTP/' | tail -n 1 | awk '{print $2}'; }
json() { "$PY" -c 'import json,sys; print(eval(sys.argv[2], {}, {"j": json.load(open(sys.argv[1]))}))' "$@" 2>/dev/null; }
raw_digest() { echo "sha256:$(sha256sum <"$1" | cut -d' ' -f1)"; }

echo "# access control against $BASE, repositories under $PREFIX/"
for _ in $(seq 50); do curl -s -o /dev/null --max-time 2 "$BASE/v2/" && break; sleep 0.2; done

# ------------------------------------------------------------------------ challenge, tokens
name="GET /v2/ without credentials: 401 UNAUTHORIZED with a Bearer challenge naming the token endpoint"
fetch v2 "$BASE/v2/"
CHALLENGE=$(hdr WWW-Authenticate "$LOG.h")
REALM=$(sed -n 's/.*realm="\([^"]*\)".*/\1/p' <<<"$CHALLENGE")
if [ "$(status_of "$LOG.h")" = 401 ] && [[ "$CHALLENGE" == "Bearer realm=\"http"*"service=\"$SERVICE\""* ]] &&
    grep -q UNAUTHORIZED "$LOG.b"; then ok "$name"
else notok "$name" "status $(status_of "$LOG.h"), WWW-Authenticate '$CHALLENGE'"; fi

name="anonymous upload: 401 whose challenge has scope=\"repository:$PREFIX/x:push\""
fetch anon-post -X POST "$BASE/v2/$PREFIX/x/blobs/uploads/"
c=$(hdr WWW-Authenticate "$LOG.h")
if [ "$(status_of "$LOG.h")" = 401 ] && [[ "$c" == *"scope=\"repository:$PREFIX/x:push\""* ]]; then ok "$name"
else notok "$name" "status $(status_of "$LOG.h"), WWW-Authenticate '$c'"; fi

name="token endpoint: alice asks pull,push,delete and gets them; reader gets only pull (partial grant)"
fetch token-alice -u alice:alice-pw "$REALM?service=$SERVICE&scope=repository:$PREFIX/x:pull,push,delete"
fetch token-reader -u reader:reader-pw "$REALM?service=$SERVICE&scope=repository:$PREFIX/x:pull,push"
claims() { "$PY" -c 'import base64,json,sys; t=json.load(open(sys.argv[1]))["token"].split(".")[1]; c=json.loads(base64.urlsafe_b64decode(t+"="*(-len(t)%4))); print(c["sub"], ",".join(a["name"]+":"+"+".join(a["actions"]) for a in c["access"]))' "$1" 2>&1; }
a=$(claims "$WORK/logs/$(printf %02d $((STEP - 1)))-token-alice.log.b")
r=$(claims "$LOG.b")
if [ "$a" = "alice $PREFIX/x:pull+push+delete" ] && [ "$r" = "reader $PREFIX/x:pull" ]; then ok "$name"
else notok "$name" "alice's token: '$a'; reader's: '$r'"; fi

name="token endpoint: a wrong password answers 401"
fetch token-wrong -u alice:nope "$REALM?service=$SERVICE&scope=repository:$PREFIX/x:pull"
if [ "$(status_of "$LOG.h")" = 401 ]; then ok "$name"; else notok "$name" "status $(status_of "$LOG.h")"; fi

# ------------------------------------------------------------------------------- images
IMG="$WORK/images"
L="$IMG/layout"
if ! run mkimages "$PY" "$HERE/mkimages.py" "$IMG"; then notok "mkimages.py" "$(why $?)" "$LOG"; fi
MULTI_DIGEST=$(json "$L/index.json" '[m["digest"] for m in j["manifests"] if m.get("annotations",{}).get("org.opencontainers.image.ref.name")=="multi"][0]')
R="$HOSTPORT/$PREFIX"

# --------------------------------------------------------------------------------- skopeo
name="skopeo pushes with --dest-creds alice:alice-pw"
if run skopeo-push sko copy --preserve-digests --dest-tls-verify=false --dest-creds alice:alice-pw \
    "oci:$L:multi" "docker://$R/skopeo:v1"; then ok "$name"
else notok "$name" "$(why $?)" "$LOG"; fi

name="skopeo pulls anonymously what alice pushed (same manifest digest)"
if run skopeo-pull sko inspect --raw --tls-verify=false "docker://$R/skopeo:v1" &&
    [ "$(raw_digest "$OUT")" = "$MULTI_DIGEST" ] &&
    run skopeo-pull-copy sko copy --src-tls-verify=false "docker://$R/skopeo:v1" "oci:$WORK/out/pulled:v1"; then ok "$name"
else notok "$name" "$(why $?)" "$LOG"; fi

name="skopeo cannot push anonymously"
if run skopeo-anon sko copy --dest-tls-verify=false "oci:$L:multi" "docker://$R/anon:v1"; then
    notok "$name" "the anonymous push succeeded"
elif grep -qiE 'unauthorized|authentication required|denied' "$LOG"; then ok "$name"
else notok "$name" "failed, but not for want of credentials: $(why 1)" "$LOG"; fi

name="skopeo with a wrong password is refused"
if run skopeo-wrong sko copy --dest-tls-verify=false --dest-creds alice:wrong "oci:$L:multi" "docker://$R/wrong:v1"; then
    notok "$name" "the push succeeded"
elif grep -qiE 'unauthorized|authentication required|invalid' "$LOG"; then ok "$name"
else notok "$name" "failed otherwise: $(why 1)" "$LOG"; fi

name="skopeo as the read-only user cannot push"
if run skopeo-reader sko copy --dest-tls-verify=false --dest-creds reader:reader-pw "oci:$L:multi" "docker://$R/reader:v1"; then
    notok "$name" "the push succeeded"
elif grep -qiE 'denied|unauthorized|authentication required' "$LOG"; then ok "$name"
else notok "$name" "failed otherwise: $(why 1)" "$LOG"; fi

name="the refused pushes left nothing behind (anonymous manifest GET of anon:v1 is 404, not 401)"
fetch anon-get -H "Accept: application/vnd.oci.image.manifest.v1+json" "$BASE/v2/$PREFIX/anon/manifests/v1"
if [ "$(status_of "$LOG.h")" = 404 ]; then ok "$name"; else notok "$name" "status $(status_of "$LOG.h")"; fi

# --------------------------------------------------------------------------------- podman
name="podman login with alice's password"
if run podman-login pm login --tls-verify=false -u alice -p alice-pw "$HOSTPORT"; then ok "$name"
else notok "$name" "$(why $?)" "$LOG"; fi

name="podman login with a wrong password fails"
if run podman-login-wrong pm login --tls-verify=false -u alice -p wrong "$HOSTPORT" --authfile "$WORK/other-auth.json"; then
    notok "$name" "login succeeded"
else ok "$name"; fi

name="podman pushes after login, logs out, and pulls the image back anonymously"
ID=
if run podman-load pm pull -q --signature-policy "$WORK/policy.json" "oci:$L:multi"; then ID=$(tail -n 1 "$OUT"); fi
if [ -n "$ID" ] && run podman-push pm push --tls-verify=false --signature-policy "$WORK/policy.json" "$ID" "docker://$R/podman:v1" &&
    run podman-logout pm logout "$HOSTPORT" && run podman-rmi pm rmi -f "$ID" &&
    run podman-pull pm pull -q --tls-verify=false --signature-policy "$WORK/policy.json" "$R/podman:v1"; then
    if [ "$(tail -n 1 "$OUT")" = "$ID" ]; then ok "$name"; else notok "$name" "pulled image ID $(tail -n 1 "$OUT"), pushed $ID"; fi
else notok "$name" "$(why $?)" "$LOG"; fi

name="podman cannot push once logged out"
if [ -n "$ID" ] && run podman-push-anon pm push --tls-verify=false --signature-policy "$WORK/policy.json" "$R/podman:v1" "docker://$R/podman-anon:v1"; then
    notok "$name" "the anonymous push succeeded"
elif grep -qiE 'unauthorized|authentication required|denied' "$LOG"; then ok "$name"
else notok "$name" "failed otherwise: $(why 1)" "$LOG"; fi

# ----------------------------------------------------------------------------------- oras
name="oras logs in as alice, pushes an artifact; pulled back anonymously it is identical"
if run oras-push bounded "$PY" "$HERE/oras_auth.py" push "$HOSTPORT" "$PREFIX/oras" alice alice-pw "$WORK/oras"; then
    ok "$name"
else notok "$name" "$(tail -n 1 "$OUT")" "$LOG"; fi

name="oras cannot push anonymously"
if run oras-anon bounded "$PY" "$HERE/oras_auth.py" push-anonymous "$HOSTPORT" "$PREFIX/oras" "$WORK/oras-anon"; then
    ok "$name: $(tail -n 1 "$OUT")"
else notok "$name" "$(tail -n 1 "$OUT")" "$LOG"; fi

# -------------------------------------------------------------------------------- catalog
name="catalog: anonymous 401 with scope registry:catalog:*, alice (Basic) 200"
fetch cat-anon "$BASE/v2/_catalog"
c=$(hdr WWW-Authenticate "$LOG.h") s1=$(status_of "$LOG.h")
fetch cat-alice -u alice:alice-pw "$BASE/v2/_catalog"
s2=$(status_of "$LOG.h")
if [ "$s1" = 401 ] && [[ "$c" == *'scope="registry:catalog:*"'* ]] && [ "$s2" = 200 ] && grep -q "$PREFIX/skopeo" "$LOG.b"; then ok "$name"
else notok "$name" "anonymous $s1 ('$c'), alice $s2"; fi

# ---------------------------------------------------------------------------- berth client
# The Bearer challenge flow of berth's own client (token from the endpoint, cached per scope).
ROOT=$(cd "$HERE/../.." && pwd)
BERTH_BIN=${BERTH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/berth}
if [ -x "$BERTH_BIN" ]; then
    name="berth push with -u alice (Bearer token flow) lands the image under its digest"
    if run berth-push bounded "$BERTH_BIN" push --insecure -q -u alice -p alice-pw "oci:$L:multi" "$R/berth:v1" &&
        [ "$(cat "$OUT")" = "$MULTI_DIGEST" ]; then ok "$name"
    else notok "$name" "$(why $?)" "$LOG"; fi

    name="berth pull anonymously (anonymous token) verifies every digest"
    if run berth-pull bounded "$BERTH_BIN" pull --insecure -q "$R/berth:v1" "oci:$WORK/out/berth:v1" &&
        [ "$(cat "$OUT")" = "$MULTI_DIGEST" ]; then ok "$name"
    else notok "$name" "$(why $?)" "$LOG"; fi

    name="berth push anonymously is refused: the error says authentication is required"
    if run berth-anon bounded "$BERTH_BIN" push --insecure -q "oci:$L:multi" "$R/berth-anon:v1"; then
        notok "$name" "the anonymous push succeeded"
    elif grep -qiE 'requires authentication|denied' "$LOG"; then ok "$name"
    else notok "$name" "failed otherwise: $(why 1)" "$LOG"; fi
else
    notok "berth client checks" "no berth binary at $BERTH_BIN (cargo build --release)"
fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
