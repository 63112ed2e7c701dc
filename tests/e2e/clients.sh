#!/usr/bin/env bash
# End-to-end checks with real clients (skopeo, podman, the PyPI oras client, curl) against
# any OCI Distribution registry served over plain HTTP: berth's native server, the Worker
# under `wrangler dev`, or the reference registry.
#
#   tests/e2e/clients.sh HOST:PORT
#
# Prints one `ok - name` or `not ok - name: reason` per check (followed, on failure, by a
# few `#` lines from the client's log), then a last line exactly `N passed, N failed`.
# Exits 1 if any check failed. Needs root (podman with its own storage, `unshare -m`).
#
# Environment:
#   E2E_NO_REFERRERS=1        skip the referrers-API checks (only for registries that predate
#                             OCI 1.1, i.e. Distribution 2.8; never for berth)
#   E2E_NO_TAGS_PAGINATION=1  skip the check that tags/list is in lexical order and pages
#                             with n, last and Link (Distribution 2.8 lists tags unsorted
#                             and ignores `n`; never for berth)
#   E2E_CHUNK_SIZE=BYTES      oras chunk size for the chunked artifact (default 1 MiB;
#                             the artifact is 2.5 MiB, so 3 PATCHes with an uneven last one)
#   E2E_PREFIX=NAME           repository prefix (default e2e/r<time>-<pid>, unique per run)
#   E2E_PYTHON=PATH           python with the `oras` package (default python3)
#   E2E_STEP_TIMEOUT=SECONDS  bound on each client invocation (default 90)
#   E2E_KEEP=1                keep the work dir (client debug logs, pulled layouts)
#
# Blob-info caches. skopeo, podman and buildah (containers/image) remember in a BoltDB file
# which registry repositories already hold a blob and which compressed blob corresponds
# to which uncompressed one; on the next push they HEAD or cross-repo-mount a remembered
# location, or substitute a remembered variant, instead of uploading. A test run would
# then depend on earlier runs (and pass against a registry that cannot take an upload).
# Debian 12 ships skopeo 1.9.3 and podman 4.3.1 (containers/image 5.23), which have no
# option for the cache location; it is chosen in pkg/blobinfocache/default.go as
#   SystemContext.BlobInfoCacheDir          (not settable from either CLI), else
#   $XDG_DATA_HOME/containers/cache         if the "rootless" euid != 0, else
#   /var/lib/containers/cache               for root,
# where the euid is taken from $_CONTAINERS_ROOTLESS_UID when set (HOME, XDG_* and
# --registries-conf alone change nothing for root). So:
#   - skopeo runs with _CONTAINERS_ROOTLESS_UID=65534 and XDG_DATA_HOME set to a new empty
#     directory per invocation. For skopeo that variable only selects per-user paths
#     (cache, sigstore, policy lookups); it does not enter a user namespace unless the
#     containers-storage transport is used, which these checks never do.
#   - podman must not get that variable (it would switch podman to rootless mode), and it
#     ignores XDG_* for root, so each podman invocation runs in a private mount namespace
#     (`unshare --mount`, private propagation) where a fresh empty directory is bind-mounted
#     over /var/lib/containers/cache. The host's cache is never read or written. The empty
#     mount point /var/lib/containers/cache is created if missing (podman creates the same
#     directory on its first use as root).
#   Both are verified from the clients' debug logs ("Using blob info cache at ...").
set -u -o pipefail

if [ $# -ne 1 ] || [[ "$1" != *:* ]]; then
    echo "usage: $0 HOST:PORT   (plain-HTTP registry, e.g. 127.0.0.1:5000)" >&2
    exit 2
fi
HOSTPORT=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${E2E_PYTHON:-python3}
STEP_TIMEOUT=${E2E_STEP_TIMEOUT:-90}
CHUNK=${E2E_CHUNK_SIZE:-1048576}
NO_REFERRERS=${E2E_NO_REFERRERS:-0}
NO_TAGS_PAGINATION=${E2E_NO_TAGS_PAGINATION:-0}
PREFIX=${E2E_PREFIX:-e2e/r$(date +%s)-$$}
BASE="http://$HOSTPORT"
START=$(date +%s)

OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_INDEX=application/vnd.oci.image.index.v1+json
DOCKER_MANIFEST=application/vnd.docker.distribution.manifest.v2+json

# A short path (podman refuses a --runroot longer than 50 characters) in lowercase
# (`podman pull oci:DIR` names the image after DIR, and names must be lowercase).
WORK=
for _ in 1 2 3 4 5; do
    WORK=/tmp/e2e.$(tr -dc 'a-z0-9' </dev/urandom | head -c 8)
    mkdir -m 700 "$WORK" 2>/dev/null && break
    WORK=
done
[ -n "$WORK" ] || { echo "cannot create a work dir in /tmp" >&2; exit 2; }
cleanup() {
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        echo "# work dir kept: $WORK (client logs in $WORK/logs)" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK"/{logs,home/.config,tmp,bic,out,pt}
# Nothing from the machine's or the user's container configuration leaks in: registries,
# signature policy (accept anything; skopeo --policy, podman --signature-policy),
# credentials (none), containers.conf and storage.conf.
printf 'unqualified-search-registries = []\n' >"$WORK/registries.conf"
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$WORK/policy.json"
printf '{"auths":{}}\n' >"$WORK/auth.json"
: >"$WORK/containers.conf"
cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$WORK/proot"
runroot = "$WORK/prun"
EOF
export HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config" TMPDIR="$WORK/tmp"
export CONTAINERS_REGISTRIES_CONF="$WORK/registries.conf" REGISTRY_AUTH_FILE="$WORK/auth.json"
export CONTAINERS_CONF="$WORK/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/storage.conf"
unset _CONTAINERS_ROOTLESS_UID XDG_DATA_HOME DOCKER_CONFIG

PASS=0 FAIL=0 SKIP=0
ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
skip() { SKIP=$((SKIP + 1)); echo "ok - $1 # SKIP $2"; }
# notok NAME REASON [LOG]: LOG's last lines follow as comments.
notok() {
    FAIL=$((FAIL + 1))
    echo "not ok - $1: $2"
    if [ -n "${3:-}" ] && [ -s "$3" ]; then
        grep -v '^\s*$' "$3" | tail -n 8 | cut -c1-400 | sed 's/^/#   /'
        echo "#   (log: $3)"
    fi
}

# run NAME CMD...: stdout to $OUT, stderr to $LOG. Every client goes through `bounded`.
STEP=0 LOG= OUT=
run() {
    STEP=$((STEP + 1))
    LOG=$(printf '%s/logs/%02d-%s.log' "$WORK" "$STEP" "$1")
    OUT=${LOG%.log}.out
    shift
    "$@" >"$OUT" 2>"$LOG"
}
bounded() { timeout -k 5 "$STEP_TIMEOUT" "$@"; }
# Last meaningful line of the last run (the client's own error message).
why() {
    local line
    line=$(grep -E 'level=fatal|^Error' "$LOG" | tail -n 1)
    [ -z "$line" ] && line=$(grep -iE 'level=error|error' "$LOG" | tail -n 1)
    [ -z "$line" ] && line=$(cat "$LOG" "$OUT" 2>/dev/null | grep -v '^\s*$' | tail -n 1)
    [ "$1" = 124 ] && line="timed out after ${STEP_TIMEOUT}s; $line"
    echo "${line:-exit status $1}" | cut -c1-300
}

# skopeo with an empty blob-info cache of its own (see the header); SKOPEO_CACHE=DIR shares one.
sko() {
    local cache=${SKOPEO_CACHE:-}
    [ -z "$cache" ] && cache=$(mktemp -d "$WORK/bic/skopeo.XXXXXX")
    _CONTAINERS_ROOTLESS_UID=65534 XDG_DATA_HOME="$cache" bounded skopeo --debug --policy "$WORK/policy.json" "$@"
}

# podman as root with its own storage and an empty blob-info cache per invocation.
PODMAN_ISOLATED=0
mkdir -p /var/lib/containers/cache 2>/dev/null &&
    unshare --mount sh -c 'mount --bind "$0" /var/lib/containers/cache' "$WORK/bic" 2>/dev/null &&
    PODMAN_ISOLATED=1
PM_CACHE=
pm() {
    PM_CACHE=$(mktemp -d "$WORK/bic/podman.XXXXXX")
    local podman=(podman --log-level=debug --root "$WORK/proot" --runroot "$WORK/prun" --tmpdir "$WORK/pt"
        --storage-driver vfs --cgroup-manager=cgroupfs --events-backend=file
        --network-config-dir "$WORK/net" --volumepath "$WORK/vol")
    if [ "$PODMAN_ISOLATED" = 1 ]; then
        bounded unshare --mount sh -c 'mount --bind "$0" /var/lib/containers/cache && exec "$@"' "$PM_CACHE" "${podman[@]}" "$@"
    else
        bounded "${podman[@]}" "$@"
    fi
}

# fetch NAME CURL-ARGS...: curl with headers to $LOG.h and body to $LOG.b
fetch() {
    STEP=$((STEP + 1))
    LOG=$(printf '%s/logs/%02d-%s.log' "$WORK" "$STEP" "$1")
    shift
    curl -sS --max-time 30 -D "$LOG.h" -o "$LOG.b" "$@" 2>"$LOG"
}
hdr() { # hdr NAME FILE: value of the last occurrence of header NAME
    tr -d '\r' <"$2" | grep -i "^$1:" | tail -n 1 | cut -d: -f2- | sed 's/^ *//'
}
status_of() { tr -d '\r' <"$1" | grep '^HTTP/' | tail -n 1 | awk '{print $2}'; }
pyc() { bounded "$PY" "$HERE/e2e.py" "$@"; }
raw_digest() { echo "sha256:$(sha256sum <"$1" | cut -d' ' -f1)"; }

echo "# berth e2e against $BASE, repositories under $PREFIX/"
echo "# $(skopeo --version 2>&1), $(podman --version 2>&1), oras-py $("$PY" -c 'import oras.version as v; print(v.__version__)' 2>&1 | tail -n 1), $(curl --version | head -n 1 | cut -d' ' -f1-2)"

# ---------------------------------------------------------------------------------- /v2/
name="GET /v2/ answers 200 with Docker-Distribution-API-Version: registry/2.0"
for _ in $(seq 50); do
    curl -s -o /dev/null --max-time 2 "$BASE/v2/" && break
    sleep 0.2
done
if fetch v2 "$BASE/v2/"; then
    st=$(status_of "$LOG.h")
    api=$(hdr Docker-Distribution-API-Version "$LOG.h")
    if [ "$st" = 200 ] && [ "$api" = registry/2.0 ]; then ok "$name"
    else notok "$name" "status $st, Docker-Distribution-API-Version '$api'"; fi
else
    notok "$name" "$(cat "$LOG")"
fi

# ------------------------------------------------------------------------------ test images
IMG="$WORK/images"
L="$IMG/layout"
EXP="$IMG/expected.json"
name="mkimages.py generates the test images (OCI layout, Docker dir)"
if run mkimages "$PY" "$HERE/mkimages.py" "$IMG"; then ok "$name"; sed 's/^/# /' "$OUT"
else notok "$name" "$(why $?)" "$LOG"; fi
# An independent reader of the layout: umoci (optional) unpacks the image, which checks the
# layer digests and the config's diff_ids. (umoci 0.4 cannot pick a platform from an index.)
name="umoci unpacks the generated multi-layer image (layer digests and diff_ids agree)"
if ! command -v umoci >/dev/null; then
    skip "$name" "umoci not installed"
elif run umoci-unpack bounded umoci unpack --image "$L:multi" "$WORK/umoci-bundle" &&
    grep -q 'hello from multi' "$WORK/umoci-bundle/rootfs/bin/hello"; then
    ok "$name"
else notok "$name" "$(why $?)" "$LOG"; fi
rm -rf "$WORK/umoci-bundle"
exp() { "$PY" -c 'import json,sys; e=json.load(open(sys.argv[1]))[sys.argv[2]]; print(eval(sys.argv[3], {}, e))' "$EXP" "$@" 2>/dev/null; }
MULTI_DIGEST=$(pyc layout-digest "$L" multi 2>/dev/null)
MULTI_SIZE=$(exp multi size)
INDEX_DIGEST=$(pyc layout-digest "$L" multiarch 2>/dev/null)
DOCKER_DIGEST=$(exp docker digest)

# --------------------------------------------------------------------------------- skopeo
R="$HOSTPORT/$PREFIX"
# check_remote NAME REF EXPECTED_DIGEST: the manifest skopeo reads back hashes to EXPECTED.
check_remote() {
    local name=$1 ref=$2 want=$3 got
    if ! run inspect-raw sko inspect --raw --tls-verify=false "docker://$ref"; then
        notok "$name" "skopeo inspect --raw $ref: $(why $?)" "$LOG"; return 1
    fi
    got=$(raw_digest "$OUT")
    if [ "$got" != "$want" ]; then
        notok "$name" "registry has $got for $ref, layout has $want" "$OUT"; return 1
    fi
}

name="skopeo copies the multi-layer OCI image into the registry (--preserve-digests)"
if run skopeo-push-multi sko copy --preserve-digests --dest-tls-verify=false "oci:$L:multi" "docker://$R/multi:v1"; then
    ok "$name"
else notok "$name" "$(why $?)" "$LOG"; fi

name="multi: manifest digest in the registry (by tag and by digest) matches the layout's index.json"
if check_remote "$name" "$R/multi:v1" "$MULTI_DIGEST" && check_remote "$name" "$R/multi@$MULTI_DIGEST" "$MULTI_DIGEST"; then
    ok "$name"
fi

name="skopeo copies the multi-layer image back out into a fresh layout"
if run skopeo-pull-multi sko copy --preserve-digests --src-tls-verify=false "docker://$R/multi:v1" "oci:$WORK/out/multi:multi"; then
    ok "$name"
else notok "$name" "$(why $?)" "$LOG"; fi

name="multi: pulled layout has the same manifest digest and every blob matches"
if run verify-multi pyc verify-layout "$WORK/out/multi" multi "$EXP"; then ok "$name"
else notok "$name" "$(tail -n 1 "$OUT")"; fi

name="skopeo copies the two-platform index into the registry (--all)"
if run skopeo-push-index sko copy --all --preserve-digests --dest-tls-verify=false "oci:$L:multiarch" "docker://$R/multiarch:v1"; then
    ok "$name"
else notok "$name" "$(why $?)" "$LOG"; fi

name="multiarch: index and both platform manifests in the registry have the layout's digests"
good=1
check_remote "$name" "$R/multiarch:v1" "$INDEX_DIGEST" || good=0
if [ $good = 1 ]; then
    for child in $(exp multiarch '" ".join(c["digest"] for c in children)'); do
        check_remote "$name" "$R/multiarch@$child" "$child" || { good=0; break; }
    done
fi
[ $good = 1 ] && ok "$name"

name="skopeo copies the two-platform index back out into a fresh layout (--all)"
if run skopeo-pull-index sko copy --all --preserve-digests --src-tls-verify=false "docker://$R/multiarch:v1" "oci:$WORK/out/multiarch:multiarch"; then
    ok "$name"
else notok "$name" "$(why $?)" "$LOG"; fi

name="multiarch: pulled layout has the same index digest and every blob matches"
if run verify-index pyc verify-layout "$WORK/out/multiarch" multiarch "$EXP"; then ok "$name"
else notok "$name" "$(tail -n 1 "$OUT")"; fi

name="skopeo copies the Docker v2 schema 2 image into the registry (dir: source)"
if run skopeo-push-docker sko copy --preserve-digests --dest-tls-verify=false "dir:$IMG/docker-dir" "docker://$R/docker:v1"; then
    ok "$name"
else notok "$name" "$(why $?)" "$LOG"; fi

name="docker: registry serves it byte for byte with the Docker schema 2 Content-Type"
if check_remote "$name" "$R/docker:v1" "$DOCKER_DIGEST"; then
    fetch docker-get -H "Accept: $DOCKER_MANIFEST" "$BASE/v2/$PREFIX/docker/manifests/v1"
    ct=$(hdr Content-Type "$LOG.h"); dcd=$(hdr Docker-Content-Digest "$LOG.h")
    if [ "$(status_of "$LOG.h")" = 200 ] && [ "$ct" = "$DOCKER_MANIFEST" ] && [ "$dcd" = "$DOCKER_DIGEST" ]; then
        ok "$name"
    else
        notok "$name" "GET status $(status_of "$LOG.h"), Content-Type '$ct', Docker-Content-Digest '$dcd'"
    fi
fi

name="skopeo copies the Docker image back out (dir:) with identical manifest and blobs"
if run skopeo-pull-docker sko copy --preserve-digests --src-tls-verify=false "docker://$R/docker:v1" "dir:$WORK/out/docker-dir"; then
    if run verify-docker pyc verify-dir "$WORK/out/docker-dir" docker "$EXP"; then ok "$name"
    else notok "$name" "$(tail -n 1 "$OUT")"; fi
else notok "$name" "$(why $?)" "$LOG"; fi

name="skopeo copies registry to registry (another repository) with identical digest"
if run skopeo-copy-r2r sko copy --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
    "docker://$R/multi:v1" "docker://$R/copy:v1"; then
    check_remote "$name" "$R/copy:v1" "$MULTI_DIGEST" && ok "$name"
else notok "$name" "$(why $?)" "$LOG"; fi

# The one place a cache is shared on purpose: two pushes of the same image, the second
# remembering where the first put the layers, so it asks for cross-repository mounts.
name="skopeo reuses layers across repositories by cross-repo mount (shared cache, 2 runs)"
SHARED="$WORK/bic/shared"; mkdir -p "$SHARED"
if SKOPEO_CACHE="$SHARED" run skopeo-mount-src sko copy --preserve-digests --dest-tls-verify=false "oci:$L:multi" "docker://$R/mount-src:v1" &&
    SKOPEO_CACHE="$SHARED" run skopeo-mount-dst sko copy --preserve-digests --dest-tls-verify=false "oci:$L:multi" "docker://$R/mount-dst:v1"; then
    mounts=$(grep -c 'mount OK' "$LOG")
    tried=$(grep -c 'Trying to mount' "$LOG")
    if [ "$mounts" -ge 3 ] && [ "$mounts" = "$tried" ]; then
        check_remote "$name" "$R/mount-dst:v1" "$MULTI_DIGEST" && ok "$name"
    else
        notok "$name" "skopeo asked for $tried mounts, $mounts succeeded (expected the 3 layers)" "$LOG"
    fi
else notok "$name" "$(why $?)" "$LOG"; fi

name="blob-info cache: every skopeo run used its own empty cache (no system cache)"
bad=$(grep -h 'Using blob info cache at' "$WORK"/logs/*skopeo*.log "$WORK"/logs/*inspect*.log 2>/dev/null |
    sed 's/.*Using blob info cache at \([^"]*\).*/\1/' | grep -v "^$WORK/bic/" | sort -u)
used=$(grep -l 'Using blob info cache at' "$WORK"/logs/*skopeo*.log 2>/dev/null | wc -l)
if [ -z "$bad" ] && [ "$used" -ge 8 ]; then ok "$name"
else notok "$name" "caches used outside $WORK/bic: '${bad}' ($used copy logs name a cache)"; fi

# --------------------------------------------------------------------------------- podman
name="podman loads the multi-layer image from the layout (podman pull oci:)"
PODMAN_ID=
if run podman-load pm pull -q --signature-policy "$WORK/policy.json" "oci:$L:multi"; then
    PODMAN_ID=$(tail -n 1 "$OUT")
    if [ "sha256:$PODMAN_ID" = "$(exp multi 'blobs[0]')" ]; then ok "$name"
    else notok "$name" "image ID $PODMAN_ID is not the config digest $(exp multi 'blobs[0]')"; fi
else notok "$name" "$(why $?)" "$LOG"; fi

name="podman pushes the image to the registry (--tls-verify=false)"
PUSHED=
if [ -n "$PODMAN_ID" ] && run podman-push pm push --tls-verify=false --signature-policy "$WORK/policy.json" --digestfile "$WORK/podman.digest" \
    "$PODMAN_ID" "docker://$R/podman:v1"; then
    PUSHED=$(cat "$WORK/podman.digest")
    ok "$name"
else notok "$name" "$(why $?)" "$LOG"; fi

name="blob-info cache: podman ran with an empty cache bind-mounted over /var/lib/containers/cache"
if [ "$PODMAN_ISOLATED" != 1 ]; then
    notok "$name" "cannot bind-mount in a private mount namespace (unshare --mount needs CAP_SYS_ADMIN); podman used the shared system cache"
elif ! grep -q 'Using blob info cache at /var/lib/containers/cache/' "$LOG"; then
    notok "$name" "podman did not report its cache at /var/lib/containers/cache" "$LOG"
elif [ ! -s "$PM_CACHE/blob-info-cache-v1.boltdb" ]; then
    notok "$name" "the cache file did not land in the bind-mounted $PM_CACHE"
else ok "$name"; fi

name="podman: manifest in the registry is the one podman reports pushing"
if [ -n "$PUSHED" ]; then
    check_remote "$name" "$R/podman:v1" "$PUSHED" && ok "$name"
else notok "$name" "nothing pushed"; fi

name="podman removes the image, pulls it back: same image ID and manifest digest"
if [ -n "$PUSHED" ] && run podman-rmi pm rmi -f "$PODMAN_ID" && run podman-images pm images -q && [ ! -s "$OUT" ]; then
    if run podman-pull pm pull -q --tls-verify=false --signature-policy "$WORK/policy.json" "$R/podman:v1"; then
        id=$(tail -n 1 "$OUT")
        run podman-inspect pm image inspect --format '{{.Digest}}' "$R/podman:v1"
        dg=$(tail -n 1 "$OUT")
        if [ "$id" = "$PODMAN_ID" ] && [ "$dg" = "$PUSHED" ]; then ok "$name"
        else notok "$name" "pulled image ID $id digest $dg; pushed ID $PODMAN_ID digest $PUSHED"; fi
    else notok "$name" "$(why $?)" "$LOG"; fi
else notok "$name" "could not push, or remove the local image first" "$LOG"; fi

# ----------------------------------------------------------------------------------- oras
# The PyPI oras client (oras-py) pushes; it has no referrers call (0.2.x), so the referrers
# API is read with curl.
ORAS_JSON="$WORK/oras/oras.json"
oras_why() { if [ -s "$ORAS_JSON" ]; then tail -n 1 "$OUT"; else echo "the oras push failed, nothing to check"; fi; }
name="oras pushes an artifact with artifactType and a subject (the multi image)"
if run oras-push pyc oras-push "$HOSTPORT" "$PREFIX/multi" "$MULTI_DIGEST" "$MULTI_SIZE" "$WORK/oras" "$CHUNK"; then
    sed 's/^/# /' "$OUT"
    if run oras-pushed pyc oras-check "$ORAS_JSON" pushed "$MULTI_DIGEST"; then ok "$name"
    else notok "$name" "$(tail -n 1 "$OUT")"; fi
else
    notok "$name" "$(why $?)" "$LOG"
fi

name="oras pushes a second artifact in chunks (POST, PATCH with Content-Range, PUT)"
if [ -s "$ORAS_JSON" ] && run oras-chunked pyc oras-check "$ORAS_JSON" chunked; then ok "$name: $(tail -n 1 "$OUT")"
else notok "$name" "$(oras_why)"; fi

name="oras pulls both artifacts back unchanged"
if [ -s "$ORAS_JSON" ] && run oras-pulled pyc oras-check "$ORAS_JSON" pulled; then ok "$name"
else notok "$name" "$(oras_why)"; fi

name="oras lists the repository's tags"
if [ -s "$ORAS_JSON" ] && run oras-tags pyc oras-check "$ORAS_JSON" tags; then ok "$name"
else notok "$name" "$(oras_why)"; fi

SBOM_TYPE=application/vnd.berth.e2e.sbom.v1+json
REFS_URL="$BASE/v2/$PREFIX/multi/referrers/$MULTI_DIGEST"
if [ "$NO_REFERRERS" = 1 ]; then
    for n in "manifest PUT with a subject answers OCI-Subject" \
        "referrers API lists both artifacts with artifactType and annotations" \
        "referrers API filters by artifactType" \
        "referrers API answers an empty index for a digest nothing refers to"; do
        skip "$n" "E2E_NO_REFERRERS=1"
    done
else
    name="manifest PUT with a subject answers OCI-Subject"
    if [ -s "$ORAS_JSON" ] && run oras-subject pyc oras-check "$ORAS_JSON" subject-header "$MULTI_DIGEST"; then ok "$name"
    else notok "$name" "$(oras_why)"; fi

    name="referrers API lists both artifacts with artifactType and annotations"
    if ! fetch referrers "$REFS_URL"; then notok "$name" "curl: $(cat "$LOG")"
    elif [ ! -s "$ORAS_JSON" ]; then notok "$name" "nothing pushed by oras"
    elif run referrers-check pyc referrers "$LOG.h" "$LOG.b" "$ORAS_JSON"; then ok "$name"; sed 's/^/# /' "$OUT"
    else notok "$name" "GET /v2/$PREFIX/multi/referrers/$MULTI_DIGEST: $(tail -n 1 "$OUT")"; fi

    name="referrers API filters by artifactType"
    if ! fetch referrers-filter -G --data-urlencode "artifactType=$SBOM_TYPE" "$REFS_URL"; then notok "$name" "curl: $(cat "$LOG")"
    elif [ ! -s "$ORAS_JSON" ]; then notok "$name" "nothing pushed by oras"
    elif run referrers-filter-check pyc referrers "$LOG.h" "$LOG.b" "$ORAS_JSON" "$SBOM_TYPE"; then ok "$name"
    else notok "$name" "?artifactType=$SBOM_TYPE: $(tail -n 1 "$OUT")"; fi

    name="referrers API answers an empty index for a digest nothing refers to"
    if ! fetch referrers-empty "$BASE/v2/$PREFIX/multiarch/referrers/$INDEX_DIGEST"; then notok "$name" "curl: $(cat "$LOG")"
    elif run referrers-empty-check pyc referrers-empty "$LOG.h" "$LOG.b"; then ok "$name"
    else notok "$name" "GET /v2/$PREFIX/multiarch/referrers/$INDEX_DIGEST: $(tail -n 1 "$OUT")"; fi
fi

# ------------------------------------------------------------------------------ curl, tags
name="tags list of every pushed repository (curl GET /v2/<name>/tags/list)"
good=1
for spec in "multi sbom signature v1" "multiarch v1" "docker v1" "copy v1" "mount-src v1" "mount-dst v1" "podman v1"; do
    set -- $spec
    repo=$1; shift
    fetch "tags-$repo" "$BASE/v2/$PREFIX/$repo/tags/list"
    if ! run "tags-$repo-check" pyc tags "$LOG.h" "$LOG.b" "$PREFIX/$repo" any-order "$@"; then
        notok "$name" "$PREFIX/$repo: $(tail -n 1 "$OUT")"; good=0; break
    fi
done
[ $good = 1 ] && ok "$name"

name="skopeo list-tags lists the pushed tags"
if run skopeo-list-tags sko list-tags --tls-verify=false "docker://$R/multi"; then
    got=$("$PY" -c 'import json,sys; print(" ".join(sorted(json.load(open(sys.argv[1]))["Tags"])))' "$OUT" 2>&1)
    if [ "$got" = "sbom signature v1" ]; then ok "$name"; else notok "$name" "tags '$got'"; fi
else notok "$name" "$(why $?)" "$LOG"; fi

name="tags list is in lexical order and paginates with n, last and Link"
if [ "$NO_TAGS_PAGINATION" = 1 ]; then
    skip "$name" "E2E_NO_TAGS_PAGINATION=1"
else
    good=1
    fetch tags-order "$BASE/v2/$PREFIX/multi/tags/list"
    if ! run tags-order-check pyc tags "$LOG.h" "$LOG.b" "$PREFIX/multi" lexical sbom signature v1; then
        notok "$name" "$(tail -n 1 "$OUT")"; good=0
    fi
    # Page 1 (n=2) holds the first two tags and a Link to the rest; following the Link as
    # given (relative or absolute) gives the last tag and no further Link.
    if [ $good = 1 ]; then
        fetch tags-page1 "$BASE/v2/$PREFIX/multi/tags/list?n=2"
        h1=$LOG.h b1=$LOG.b
        if ! run tags-page1-check pyc tags "$h1" "$b1" "$PREFIX/multi" lexical sbom signature; then
            notok "$name" "GET ?n=2: $(tail -n 1 "$OUT")"; good=0
        elif ! run tags-page1-link pyc tags-page "$h1" "$b1" "$PREFIX/multi" 2; then
            notok "$name" "GET ?n=2: $(tail -n 1 "$OUT")"; good=0
        fi
    fi
    if [ $good = 1 ]; then
        next=$(tail -n 1 "$OUT")
        [[ "$next" == http* ]] || next="$BASE$next"
        fetch tags-page2 "$next"
        h2=$LOG.h b2=$LOG.b
        if ! run tags-page2-check pyc tags "$h2" "$b2" "$PREFIX/multi" lexical v1; then
            notok "$name" "GET $next (from the Link header): $(tail -n 1 "$OUT")"; good=0
        elif [ -n "$(hdr Link "$h2")" ]; then
            notok "$name" "last page still has a Link header: $(hdr Link "$h2")"; good=0
        fi
    fi
    if [ $good = 1 ]; then
        fetch tags-last "$BASE/v2/$PREFIX/multi/tags/list?n=1&last=sbom"
        if ! run tags-last-check pyc tags "$LOG.h" "$LOG.b" "$PREFIX/multi" lexical signature; then
            notok "$name" "GET ?n=1&last=sbom: $(tail -n 1 "$OUT")"; good=0
        fi
    fi
    [ $good = 1 ] && ok "$name"
fi

name="manifest HEAD returns Content-Type, Content-Length and Docker-Content-Digest"
good=1
for spec in "multi $MULTI_DIGEST $OCI_MANIFEST $(exp multi size)" "multiarch $INDEX_DIGEST $OCI_INDEX $(exp multiarch size)" \
    "docker $DOCKER_DIGEST $DOCKER_MANIFEST $(exp docker size)"; do
    set -- $spec
    fetch "head-$1" -I -H "Accept: $OCI_MANIFEST, $OCI_INDEX, $DOCKER_MANIFEST" "$BASE/v2/$PREFIX/$1/manifests/v1"
    st=$(status_of "$LOG.h") ct=$(hdr Content-Type "$LOG.h") cl=$(hdr Content-Length "$LOG.h") dcd=$(hdr Docker-Content-Digest "$LOG.h")
    if [ "$st" != 200 ] || [ "$ct" != "$3" ] || [ "$cl" != "$4" ] || [ "$dcd" != "$2" ]; then
        notok "$name" "HEAD /v2/$PREFIX/$1/manifests/v1: status $st, Content-Type '$ct', Content-Length '$cl', Docker-Content-Digest '$dcd'; expected 200, $3, $4, $2"
        good=0; break
    fi
done
[ $good = 1 ] && ok "$name"

name="blob HEAD and Range GET (206 with Content-Range, bytes match the layout)"
BIG=$(exp multi 'blobs[3]')  # the 2 MiB layer
BIG_FILE="$L/blobs/sha256/${BIG#sha256:}"
BIG_SIZE=$(stat -c %s "$BIG_FILE" 2>/dev/null)
fetch blob-head -I "$BASE/v2/$PREFIX/multi/blobs/$BIG"
st=$(status_of "$LOG.h") cl=$(hdr Content-Length "$LOG.h") dcd=$(hdr Docker-Content-Digest "$LOG.h")
if [ "$st" != 200 ] || [ "$cl" != "$BIG_SIZE" ] || [ "$dcd" != "$BIG" ]; then
    notok "$name" "HEAD blob: status $st, Content-Length '$cl', Docker-Content-Digest '$dcd'; expected 200, $BIG_SIZE, $BIG"
else
    fetch blob-range -L -H "Range: bytes=1000-1999" "$BASE/v2/$PREFIX/multi/blobs/$BIG"
    st=$(status_of "$LOG.h") cr=$(hdr Content-Range "$LOG.h")
    if [ "$st" = 206 ] && [ "$cr" = "bytes 1000-1999/$BIG_SIZE" ] &&
        cmp -s "$LOG.b" <(tail -c +1001 "$BIG_FILE" | head -c 1000); then
        ok "$name"
    else
        notok "$name" "Range: bytes=1000-1999 answered status $st, Content-Range '$cr', $(stat -c %s "$LOG.b") bytes"
    fi
fi

echo "# $((PASS + FAIL)) checks, $SKIP skipped, $(($(date +%s) - START)) s"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
