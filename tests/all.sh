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

step "core builds for wasm32" cargo build -p berth --lib --target wasm32-unknown-unknown
step "cargo tests" cargo test --workspace
step "real clients against berth serve" bash tests/e2e/native.sh
step "berth serve over TLS: skopeo, curl --http2, certificate renewal" bash tests/ops.sh
step "berth serve x3 on S3 (SeaweedFS)" bash tests/s3.sh
step "berth serve as a mirror: skopeo, podman, containerd, berth" bash tests/mirror.sh
step "the Worker, locally" bash tests/worker.sh
step "the web page in chromium" bash tests/ui.sh
step "berth's client against the reference registry" bash tests/e2e/distribution.sh
step "fuzz targets, 20 s each" bash tests/fuzz.sh

echo
((failed)) && echo "failed steps: ${failures[*]}"
echo "suite: $passed passed, $failed failed"
((failed == 0))
