#!/usr/bin/env bash
# The whole test suite: installs what it needs (tests/setup.sh), then runs every layer.
# This is the README's test command and what CI runs (.ci/run).
set -uo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh || { echo "setup failed"; exit 1; }

passed=0; failed=0; failures=()
step() {
  local name=$1; shift
  echo
  echo "=== $name: $*"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); failures+=("$name")
    echo "=== $name FAILED"
  fi
}

step "core builds for wasm32" cargo build --lib --target wasm32-unknown-unknown --no-default-features
step "cargo tests" cargo test --workspace
step "real clients against berth serve" bash tests/e2e/native.sh
step "the Worker, locally" bash tests/worker.sh
step "berth's client against the reference registry" bash tests/e2e/distribution.sh
step "fuzz targets, 20 s each" bash tests/fuzz.sh

echo
((failed)) && echo "failed steps: ${failures[*]}"
echo "suite: $passed passed, $failed failed"
((failed == 0))
