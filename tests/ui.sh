#!/usr/bin/env bash
# The web page in a real browser (tests/ui/ui.mjs: Debian's chromium, headless, driven by
# playwright-core) against `berth serve` with an access policy (tests/ui/policy.toml): images
# pushed with skopeo (tests/e2e/mkimages.py's, and one whose labels hold markup), an SBOM
# referrer pushed with oras, a private repository, and a repository with 10,000 tags.
# Screenshots of each page go to $UI_OUT (default: a fresh directory, kept and printed).
#
#   tests/ui.sh
#   BERTH_BIN=PATH     use this binary instead of building (cargo build --release)
#   UI_HOSTPORT=H:P    test a registry already serving there with tests/ui/policy.toml and
#                      nothing pushed yet (tests/worker.sh: the local Worker); UI_HOME names it
#   UI_OUT=DIR         where the screenshots go
#   UI_TAGS=N          tags in pub/many (default 10000)
#
# Prints `ok - ...` / `not ok - ...` per check and a last line `N passed, N failed`; exits 1 if
# anything failed. tests/setup.sh installs chromium and tests/ui/node_modules.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE="$ROOT/tests/ui"
WORK=$(mktemp -d /tmp/berth-ui.XXXXXX)
OUTDIR=${UI_OUT:-$WORK/screenshots}
PID=
passed=0 failed=0

finish() {
    echo "# screenshots in $OUTDIR"
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ]
    exit
}
stop() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID"
        wait "$PID" 2>/dev/null
    fi
    PID=
    # Keep the screenshots (and the server log) when they live in the work directory.
    find "$WORK" -mindepth 1 -maxdepth 1 ! -name screenshots ! -name berth.log -exec rm -rf {} +
}
trap stop EXIT
trap 'exit 130' INT TERM
ok() { passed=$((passed + 1)); echo "ok - $1"; }
notok() {
    failed=$((failed + 1)); echo "not ok - $1"
    [ -n "${2:-}" ] && [ -f "$2" ] && tail -n 5 "$2" | cut -c1-300 | sed 's/^/#   /'
}

if [ -z "${UI_HOSTPORT:-}" ] && [ -z "${BERTH_BIN:-}" ]; then
    echo "# building berth (cargo build --release)"
    if ! (cd "$ROOT" && cargo build --release --quiet --bin berth) >&2; then
        notok "cargo build --release"; finish
    fi
    BERTH_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/berth
fi
for need in /usr/bin/chromium "$HERE/node_modules/playwright-core/package.json" "$(command -v skopeo)"; do
    if [ ! -e "$need" ]; then notok "$need is missing (tests/setup.sh installs it)"; finish; fi
done

if [ -n "${UI_HOSTPORT:-}" ]; then
    HOSTPORT=$UI_HOSTPORT
else
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    HOSTPORT=127.0.0.1:$PORT
    cp "$HERE/policy.toml" "$WORK/policy.toml"
    "$BERTH_BIN" serve --listen "$HOSTPORT" --root "$WORK/root" --auth "$WORK/policy.toml" \
        >"$WORK/berth.log" 2>&1 &
    PID=$!
fi
for _ in $(seq 100); do
    curl -s -o /dev/null --max-time 1 "http://$HOSTPORT/v2/" && break
    sleep 0.1
done

# ---------------------------------------------------------------------------- content
python3 "$ROOT/tests/e2e/mkimages.py" "$WORK/images" >/dev/null &&
    python3 "$HERE/fixtures.py" labelled "$WORK/labelled" ||
    { notok "generating the test images"; finish; }
printf '{"default":[{"type":"insecureAcceptAnything"}]}' >"$WORK/policy.json"
# skopeo with an empty blob-info cache of its own per run (as tests/e2e does).
sko() {
    local cache
    cache=$(mktemp -d "$WORK/bic.XXXXXX")
    _CONTAINERS_ROOTLESS_UID=65534 XDG_DATA_HOME="$cache" timeout 120 skopeo --policy "$WORK/policy.json" \
        copy --preserve-digests --dest-tls-verify=false --dest-creds alice:alice-pw "$@" >>"$WORK/push.log" 2>&1
}
L="$WORK/images/layout"
if sko "oci:$L:multi" "docker://$HOSTPORT/pub/multi:v1" &&
    sko "oci:$L:multi" "docker://$HOSTPORT/pub/multi:v2" &&
    sko --all "oci:$L:multiarch" "docker://$HOSTPORT/pub/multiarch:latest" &&
    sko "oci:$WORK/labelled:labelled" "docker://$HOSTPORT/pub/labelled:v1" &&
    sko "oci:$L:multi" "docker://$HOSTPORT/private/secret:v1" &&
    sko "oci:$WORK/labelled:labelled" "docker://$HOSTPORT/pub/many:base"; then
    ok "skopeo pushes the test images (pub/multi, pub/multiarch, pub/labelled, private/secret)"
else
    notok "skopeo pushes the test images" "$WORK/push.log"; finish
fi
MULTI=$(curl -s -u alice:alice-pw -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$HOSTPORT/v2/pub/multi/manifests/v1" | tee "$WORK/multi.json" | sha256sum | cut -d' ' -f1)
if python3 "$HERE/fixtures.py" referrer "$HOSTPORT" pub/multi "sha256:$MULTI" \
    "$(stat -c %s "$WORK/multi.json")" alice alice-pw "$WORK/oras" >"$WORK/oras.log" 2>&1; then
    ok "oras pushes an SBOM referring to pub/multi:v1"
else
    notok "oras pushes an SBOM referring to pub/multi:v1" "$WORK/oras.log"
fi
t0=$(date +%s)
if python3 "$HERE/fixtures.py" tags "$HOSTPORT" pub/many base "${UI_TAGS:-10000}" alice alice-pw >"$WORK/tags.log" 2>&1; then
    ok "pub/many gets ${UI_TAGS:-10000} tags ($(($(date +%s) - t0)) s)"
else
    notok "pub/many gets ${UI_TAGS:-10000} tags" "$WORK/tags.log"
fi

# ---------------------------------------------------------------------------- the browser
MANY_TAGS=$((${UI_TAGS:-10000} + 1)) BASE="http://$HOSTPORT" OUT="$OUTDIR" HOME_NAME=${UI_HOME:-serve} timeout 300 node "$HERE/ui.mjs" >"$WORK/ui.log" 2>&1
grep -v '^[0-9]* passed, [0-9]* failed$' "$WORK/ui.log"
line=$(tail -n 1 "$WORK/ui.log")
if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    passed=$((passed + BASH_REMATCH[1])) failed=$((failed + BASH_REMATCH[2]))
else
    notok "the browser tests ended without their summary line"
fi
finish
