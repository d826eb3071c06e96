#!/usr/bin/env bash
# Installs what the local stack and the tests need, skipping whatever is already present:
# Debian's redis-server and chromium, and the tansu broker at the pinned version.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
# sqlite:// (libsql) for tests and the demo stack: tansu 0.6's memory:// engine loses records
# under concurrent produce.
TANSU_FEATURES="libsql,dynostore"

log() { printf '[install] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages: the Redis server, curl + jq for the demo, and Chromium for the browser test.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # The package may start a system Redis on 6379; Podium runs its own on other ports.
  as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
else
  log "redis-server, jq, curl and chromium present"
fi

have_tansu_version() {
  command -v tansu >/dev/null 2>&1 || return 1
  cargo install --list 2>/dev/null | grep -q "^tansu v${TANSU_VERSION}:"
}

if have_tansu_version; then
  log "tansu ${TANSU_VERSION} present"
else
  log "building tansu ${TANSU_VERSION} with ${TANSU_FEATURES}; this takes about 20 minutes once per machine"
  cargo install tansu --locked --version "${TANSU_VERSION}" --features "${TANSU_FEATURES}"
fi
