#!/usr/bin/env bash
# Sets everything up and runs every check: formatting, clippy with warnings as errors, the web
# app's type check, build and unit tests, and all tests (unit, property, contract and end-to-end
# against a real nisshi broker and Redis that the tests start themselves on free ports, a whole
# quiz in the web app in Chromium among them), then a few seconds of every benchmark phase.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
cd "$REPO_ROOT"

case "${1:-}" in
  -h|--help) sed -n '2,5p' "$0" | sed 's/^# //'; exit 0 ;;
esac

step() { printf '\n==> %s\n' "$*" >&2; }

step "installing what is missing"
"$here/install.sh"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The fault tests run the services as processes of their own, and cargo builds a package's
# binaries only for that package's own tests: build them all first.
step "building every binary"
cargo build --workspace --bins --locked --quiet

# The web app is built before the tests: the browser test plays a quiz in it through the gateway.
step "web app: type check, build and unit tests (Vitest)"
(cd web && npm run --silent build && npm test --silent)

step "deployment files: Compose and Kubernetes against their schemas, the pipeline, and every setting against its binary"
"$REPO_ROOT/deploy/check.sh"

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

# Only to show that the benchmark works: a debug build, and seconds per phase. Its figures mean
# nothing, and nothing here is timed; deploy/local/bench.sh measures.
step "benchmark smoke run"
smoke="$(mktemp -d)"
trap 'rm -rf "$smoke"' EXIT
target/debug/podium-bench --profile smoke --out "$smoke"
target/debug/podium-bench restart --events 5000 --out "$smoke"
target/debug/podium-bench failover --out "$smoke"
