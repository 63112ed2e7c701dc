#!/usr/bin/env bash
# Every end-to-end script against one plain-HTTP registry: clients.sh (skopeo, podman, oras,
# curl), then client.sh (berth's own client). Passes the environment through (BERTH_BIN,
# E2E_*), prints their lines, then one closing line `N passed, N failed` for both; exits 1 if
# anything failed.
#
#   tests/e2e/suites.sh HOST:PORT
set -u -o pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
passed=0 failed=0
for script in clients.sh client.sh; do
    out=$(mktemp)
    bash "$HERE/$script" "$1" | tee "$out" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$'
    line=$(tail -n 1 "$out")
    rm -f "$out"
    if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1])) failed=$((failed + BASH_REMATCH[2]))
    else
        echo "not ok - $script ended without its summary line"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
