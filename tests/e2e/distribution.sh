#!/usr/bin/env bash
# Run suites.sh (clients.sh and client.sh) against the reference registry (CNCF Distribution 2.8, Debian's
# `docker-registry` package): start it on a free 127.0.0.1 port with filesystem storage in
# a temp dir and deletes enabled, run the checks, stop it by PID.
#
# Distribution 2.8 predates OCI 1.1 and has no referrers API, lists tags unsorted and
# ignores `n` on tags/list, so E2E_NO_REFERRERS=1 and E2E_NO_TAGS_PAGINATION=1 are set here
# (only here): those checks are skipped, everything else must pass.
#
# Usage: tests/e2e/distribution.sh            (exit status and closing line of clients.sh)
#        E2E_KEEP=1 tests/e2e/distribution.sh (keep logs and the registry's data)
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REGISTRY_BIN=${REGISTRY_BIN:-$(command -v docker-registry || command -v registry || true)}
if [ -z "$REGISTRY_BIN" ]; then
    echo "not ok - docker-registry not installed (apt-get install docker-registry)"
    echo "0 passed, 1 failed"
    exit 1
fi

WORK=$(mktemp -d /tmp/e2e-dist.XXXXXX)
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$PID" 2>/dev/null
    fi
    if [ "${E2E_KEEP:-0}" = 1 ]; then echo "# kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/data"
cat >"$WORK/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $WORK/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$PORT
EOF

"$REGISTRY_BIN" serve "$WORK/config.yml" >"$WORK/registry.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/v2/" && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
echo "# distribution $("$REGISTRY_BIN" --version 2>/dev/null | awk '{print $NF}') pid $PID on 127.0.0.1:$PORT, log $WORK/registry.log"

E2E_NO_REFERRERS=${E2E_NO_REFERRERS-1} E2E_NO_TAGS_PAGINATION=${E2E_NO_TAGS_PAGINATION-1} "$HERE/suites.sh" "127.0.0.1:$PORT"
exit $?
