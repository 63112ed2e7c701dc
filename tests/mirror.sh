#!/usr/bin/env bash
# berth serve as a pull-through cache of local upstreams (Distribution 2.8, a berth serve with
# token auth, a corrupting proxy), pulled through with skopeo, podman, containerd and berth's
# client: tests/mirror.py says what each check is. Builds the release binary unless BERTH_BIN
# names one. Prints `ok - ...` / `not ok - ...` and `N passed, N failed`; exits 1 on a failure.
set -u -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${BERTH_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet --bin berth) || { echo "not ok - cargo build --release"; exit 1; }
    BERTH_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/berth
fi
exec python3 "$ROOT/tests/mirror.py" "$BERTH_BIN"
