#!/usr/bin/env bash
# The long load run: 256 keep-alive clients mixing manifest and blob pulls with pushes for 60 s
# against the release `berth serve`; every body's digest is checked, and any error fails.
# Prints requests/s, p50, p99 and the server's peak RSS. Usage: bench/load.sh [SECS] [CLIENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin berth
ulimit -n 65536 2>/dev/null || true
BERTH_LOAD_SECS=${1:-60} BERTH_LOAD_CLIENTS=${2:-256} BERTH_LOAD_BIN="$PWD/target/release/berth" \
  cargo test -p berth-server --test it -- load::mixed_load_without_errors --exact --nocapture
