#!/usr/bin/env bash
# berth's own client (`berth push`, `pull`, `copy`, `tags`, `inspect`, `delete`) against any
# plain-HTTP registry: berth serve, the Worker under `wrangler dev`, or the reference registry.
#
#   tests/e2e/client.sh HOST:PORT
#
# Copies the generated multi-layer image and two-platform index (tests/e2e/mkimages.py) in
# and out and registry to registry, checking that every digest is the one the layout holds,
# pulls one platform of the index, and pushes a large single-layer image in chunks no larger
# than E2E_BIG_CHUNK, then pulls it back. Prints `ok - ...` / `not ok - ...` per check and a
# last line `N passed, N failed`; exits 1 if anything failed.
#
# Environment:
#   BERTH_BIN=PATH        the berth binary (default: target/release/berth, built if missing)
#   E2E_BIG_MIB=N         size of the large layer (default 300)
#   E2E_BIG_CHUNK=SIZE    chunk size and largest request body for it (default 32M)
#   E2E_NO_DELETE=1       skip the delete check
#   E2E_KEEP=1            keep the work dir
set -u -o pipefail

[ $# -eq 1 ] || { echo "usage: $0 HOST:PORT" >&2; exit 2; }
HOSTPORT=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIG_MIB=${E2E_BIG_MIB:-300}
BIG_CHUNK=${E2E_BIG_CHUNK:-32M}
PREFIX=client/r$(date +%s)-$$
R="$HOSTPORT/$PREFIX"
WORK=$(mktemp -d /tmp/e2e-client.XXXXXX)
cleanup() {
    if [ "${E2E_KEEP:-0}" = 1 ]; then echo "# kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok - berth client: $1"; }
notok() {
    FAIL=$((FAIL + 1))
    echo "not ok - berth client: $1: $2"
    [ -s "$WORK/err" ] && tail -n 6 "$WORK/err" | cut -c1-300 | sed 's/^/#   /'
}
finish() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" = 0 ]
    exit
}

if [ -z "${BERTH_BIN:-}" ]; then
    BERTH_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/berth
    (cd "$ROOT" && cargo build --release --quiet --bin berth) >"$WORK/err" 2>&1 ||
        { notok "cargo build --release" "failed"; finish; }
fi
# b ARGS...: the client, quiet (only the digest on stdout), plain HTTP, errors to $WORK/err.
b() { timeout -k 5 600 "$BERTH_BIN" "$@" --insecure -q 2>"$WORK/err"; }

python3 "$HERE/mkimages.py" "$WORK/images" >/dev/null || { notok "mkimages.py" "failed"; finish; }
L="$WORK/images/layout"
exp() { python3 -c 'import json,sys; print(eval(sys.argv[2], {}, json.load(open(sys.argv[1]))))' "$WORK/images/expected.json" "$1"; }
MULTI=$(exp 'multi["digest"]')
INDEX=$(exp 'multiarch["digest"]')
ARM=$(exp '[c["digest"] for c in multiarch["children"] if c["platform"]["architecture"] == "arm64"][0]')

# layout_ok DIR TAG DIGEST: TAG in DIR's index.json names DIGEST, and every blob hashes to its
# name (the layout's own check, independent of berth).
layout_ok() {
    python3 - "$@" <<'EOF'
import hashlib, json, os, sys
d, tag, want = sys.argv[1:]
idx = json.load(open(os.path.join(d, "index.json")))
got = [m["digest"] for m in idx["manifests"]
       if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
assert got == [want], f"index.json names {got} for {tag}, want {want}"
blobs = os.path.join(d, "blobs", "sha256")
for name in os.listdir(blobs):
    h = hashlib.sha256()
    with open(os.path.join(blobs, name), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    assert h.hexdigest() == name, f"blob {name} hashes to {h.hexdigest()}"
EOF
}

echo "# berth client $("$BERTH_BIN" --version | awk '{print $NF}') against $HOSTPORT, repositories under $PREFIX/"

name="push a multi-layer image from an OCI layout; the registry has its digest"
got=$(b push "oci:$L:multi" "$R/multi:v1") && [ "$got" = "$MULTI" ] &&
    [ "$(b inspect "$R/multi:v1")" = "$MULTI" ] && ok "$name" || notok "$name" "got '$got', want $MULTI"

name="push a two-platform index from an OCI layout"
got=$(b push "oci:$L:multiarch" "$R/multiarch:v1") && [ "$got" = "$INDEX" ] &&
    ok "$name" || notok "$name" "got '$got', want $INDEX"

name="copy registry to registry keeps the index digest"
got=$(b copy "$R/multiarch:v1" "$R/copied:v2") && [ "$got" = "$INDEX" ] &&
    [ "$(b inspect "$R/copied@$INDEX")" = "$INDEX" ] && ok "$name" || notok "$name" "got '$got', want $INDEX"

name="pull the index (every platform) into a layout with identical digests"
got=$(b pull "$R/copied:v2" "oci:$WORK/out-index:x") && [ "$got" = "$INDEX" ] &&
    msg=$(layout_ok "$WORK/out-index" x "$INDEX" 2>&1) && ok "$name" || notok "$name" "got '$got' ${msg:-}"

name="pull the multi-layer image into a layout with identical digests"
got=$(b pull "$R/multi:v1" "oci:$WORK/out-multi:y") && [ "$got" = "$MULTI" ] &&
    msg=$(layout_ok "$WORK/out-multi" y "$MULTI" 2>&1) && ok "$name" || notok "$name" "got '$got' ${msg:-}"

name="pull one platform (--platform linux/arm64) of the index"
got=$(b pull --platform linux/arm64 "$R/multiarch:v1" "oci:$WORK/out-arm:z") && [ "$got" = "$ARM" ] &&
    msg=$(layout_ok "$WORK/out-arm" z "$ARM" 2>&1) && ok "$name" || notok "$name" "got '$got', want $ARM ${msg:-}"

name="tags lists the pushed tag"
got=$(b tags "$R/multi") && [ "$got" = v1 ] && ok "$name" || notok "$name" "got '$got'"

# A layout holding one image whose single layer is BIG_MIB MiB of random bytes.
big_layout() {
    python3 - "$1" "$BIG_MIB" <<'EOF'
import hashlib, json, os, sys
d, mib = sys.argv[1], int(sys.argv[2])
blobs = os.path.join(d, "blobs", "sha256")
os.makedirs(blobs)
def put(data):
    h = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, h), "wb").write(data)
    return {"digest": "sha256:" + h, "size": len(data)}
h, tmp = hashlib.sha256(), os.path.join(d, "layer")
with open(tmp, "wb") as f:
    for _ in range(mib):
        chunk = os.urandom(1 << 20)
        h.update(chunk)
        f.write(chunk)
os.rename(tmp, os.path.join(blobs, h.hexdigest()))
layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + h.hexdigest(), "size": mib << 20}
config = dict(put(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}' % layer["digest"].encode()),
              mediaType="application/vnd.oci.image.config.v1+json")
manifest = dict(put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": config, "layers": [layer]}).encode()),
                mediaType="application/vnd.oci.image.manifest.v1+json",
                annotations={"org.opencontainers.image.ref.name": "big"})
json.dump({"schemaVersion": 2, "manifests": [manifest]}, open(os.path.join(d, "index.json"), "w"))
open(os.path.join(d, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
print(manifest["digest"])
EOF
}
name="push a $BIG_MIB MiB layer in chunks of at most $BIG_CHUNK, pull it back verified"
if BIG=$(big_layout "$WORK/big"); then
    got=$(b push --chunk-size "$BIG_CHUNK" --max-chunk-size "$BIG_CHUNK" "oci:$WORK/big:big" "$R/big:v1") &&
        [ "$got" = "$BIG" ] && rm -rf "$WORK/big" &&
        got=$(b pull "$R/big:v1" "oci:$WORK/big-out:big") && [ "$got" = "$BIG" ] &&
        msg=$(layout_ok "$WORK/big-out" big "$BIG" 2>&1) && ok "$name" || notok "$name" "got '$got', want $BIG ${msg:-}"
else
    notok "$name" "could not write the layout"
fi
rm -rf "$WORK/big" "$WORK/big-out"

if [ "${E2E_NO_DELETE:-0}" != 1 ]; then
    name="delete a manifest; inspecting it then fails"
    if b delete "$R/multi:v1" >/dev/null && ! b inspect "$R/multi@$MULTI" >/dev/null; then ok "$name"
    else notok "$name" "still there"; fi
fi
finish
