#!/usr/bin/env bash
# The short fuzz run that CI makes: every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each
# (default 20), with the registry dictionary, on stable Rust (RUSTC_BOOTSTRAP=1 lets
# cargo-fuzz use the sanitizer flags). Any crash fails the run and leaves its input in
# fuzz/artifacts/TARGET/; replay it with `cargo fuzz run TARGET FILE` and keep it as a unit test.
# The long runs (10 minutes and more per target) are in the README's "Hardening".
#
#   tests/fuzz.sh                  FUZZ_SECONDS=600 tests/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
tools=${BERTH_TOOLS:-$HOME/.cache/berth-tools}
export PATH="$tools/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz: cargo install cargo-fuzz 0.13.2 into $tools"
    cargo install --quiet --root "$tools" cargo-fuzz --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-20}
for target in $(cargo fuzz list); do
    echo "fuzz: $target for ${seconds}s"
    mkdir -p "corpus/$target"
    log="artifacts/$target.log"
    mkdir -p artifacts
    status=0
    cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" \
        -dict=dict/registry.dict -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^(stat::number_of_executed_units|==[0-9]+==|SUMMARY)|panicked|crash-' "$log" || true
    if [ "$status" != 0 ]; then
        tail -n 30 "$log"
        echo "fuzz: $target FAILED (input in fuzz/artifacts/$target, log $log)"
        exit 1
    fi
done
echo "fuzz: every target ran ${seconds}s without a failure"
