#!/bin/sh
# Build the Worker into worker/build/ with local tools only (worker/setup.sh installs them):
# worker-build would otherwise download wasm-bindgen, wasm-opt and esbuild, which fails offline.
#
#   worker/build.sh                                  the Worker as deployed
#   worker/build.sh --out-dir build-test --features contract
#                                                    a test build with the test-only routes
#   BERTH_WORKER_RUSTFLAGS="..."                     more rustc flags for the wasm
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tools=${BERTH_TOOLS:-$HOME/.cache/berth-tools}
bin="$here/node_modules/.bin"
for t in "$tools/bin/worker-build" "$tools/bin/wasm-bindgen" "$bin/wasm-opt" "$bin/esbuild"; do
    [ -x "$t" ] || { echo "build.sh: $t missing; run worker/setup.sh" >&2; exit 1; }
done
export PATH="$bin:$tools/bin:$PATH"
export WASM_BINDGEN_BIN="$tools/bin/wasm-bindgen"
export WASM_OPT_BIN="$bin/wasm-opt"
export ESBUILD_BIN="$bin/esbuild"
# Size (issue 17: at most 300 KiB gzipped): std is built from source with the Worker's profile
# below and its size-first algorithms, and a panic aborts at once, with no message and no hook
# (the log shows `RuntimeError: unreachable`; worker/symbols.mjs names the stack's functions).
# -Z build-std has no stable form: RUSTC_BOOTSTRAP=1 lets the stable toolchain do it with its
# own rust-src (worker/setup.sh adds it), rather than a nightly of another date.
src="$(cd "$here" && rustc --print sysroot)/lib/rustlib/src/rust/library/Cargo.lock"
[ -f "$src" ] || { echo "build.sh: rust-src missing ($src); run worker/setup.sh" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort \
    CARGO_UNSTABLE_BUILD_STD_FEATURES=optimize_for_size
# SHA-256 of chunked uploads runs in wasm: simd128 makes it ~1.5x faster (edge-notes.md).
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128 \
    -Z unstable-options -C panic=immediate-abort \
    ${BERTH_WORKER_RUSTFLAGS:-}"
# Its own target directory and release profile: small and fast wasm (no debug info, one
# codegen unit, LTO), without touching the native builds' settings or artifacts.
export CARGO_TARGET_DIR="${BERTH_WORKER_TARGET:-$(dirname "$here")/target/worker}"
export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=false \
    CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    CARGO_PROFILE_RELEASE_OPT_LEVEL="${BERTH_WORKER_OPT_LEVEL:-z}"
cd "$here"
# Optimised for size, but SHA-256 (chunked uploads hash every byte in wasm) for speed.
worker-build --release "$@" --config 'profile.release.package.sha2.opt-level=3'
# wasm-bindgen leaves the function names section in (a fifth of the module, 55 KiB gzipped):
# the deployed module does without it; a copy that keeps it (the same functions, the same
# indices) stays beside it for worker/symbols.mjs. Only what index.js imports is uploaded.
out=build
while [ $# -gt 0 ]; do
    [ "$1" = --out-dir ] && [ $# -gt 1 ] && out=$2
    shift
done
wasm-opt "$out/index_bg.wasm" -all -g --strip-producers -o "$out/index_bg.symbols.wasm"
wasm-opt "$out/index_bg.wasm" -all --strip-debug --strip-producers -o "$out/index_bg.wasm"
