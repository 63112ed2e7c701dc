#!/bin/sh
# Install what building and serving the Worker needs, skipping whatever is already in place:
#   - wasm-bindgen-cli 0.2.130 (the Cargo.lock version of wasm-bindgen) and worker-build 0.8.7,
#     built from crates.io into $BERTH_TOOLS (default ~/.cache/berth-tools; 10-15 minutes the
#     first time on 2 cores, then reused);
#   - the wasm32-unknown-unknown target, and rust-src (worker/build.sh builds std from it);
#   - worker/node_modules from package-lock.json: wrangler (with workerd), Node 22, esbuild,
#     binaryen's wasm-opt.
# Nothing is downloaded at build time after this: worker/build.sh points worker-build at these.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tools=${BERTH_TOOLS:-$HOME/.cache/berth-tools}

# has BIN VERSION: $tools/bin/BIN exists and reports exactly VERSION.
has() {
    [ -x "$tools/bin/$1" ] && "$tools/bin/$1" --version 2>/dev/null | grep -qE "(^| )$2\$"
}
# Not --locked: the locked set names a crate version the crates.io index here lacks.
if ! has wasm-bindgen 0.2.130; then
    echo "setup: cargo install wasm-bindgen-cli 0.2.130 into $tools"
    cargo install --quiet --force --root "$tools" wasm-bindgen-cli --version 0.2.130
fi
if ! has worker-build 0.8.7; then
    echo "setup: cargo install worker-build 0.8.7 into $tools"
    cargo install --quiet --force --root "$tools" worker-build --version 0.8.7
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "setup: rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
fi
if ! rustup component list --installed | grep -qx rust-src; then
    echo "setup: rustup component add rust-src"
    rustup component add rust-src
fi

# npm ci wipes and reinstalls node_modules: only when package-lock.json changed since the last.
lock=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
stamp="$here/node_modules/.berth-lock"
if [ "$(cat "$stamp" 2>/dev/null)" != "$lock" ] || [ ! -x "$here/node_modules/.bin/wrangler" ]; then
    echo "setup: npm ci in worker/"
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock" >"$stamp"
fi
echo "setup: the Worker's tools are ready"
