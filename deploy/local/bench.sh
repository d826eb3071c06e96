#!/usr/bin/env bash
# Sets everything up, builds the release binaries, and runs a benchmark profile against a stack
# of its own (nisshi, Redis and the three services on free ports; the demo stack is left alone).
# Usage: bench.sh [quick|full|smoke|chaos|failover|restart|settings] [podium-bench flags]. quick takes
# about 10 minutes, full about 40 (nearly half of it reading the log it grew). It prints a table,
# and writes bench-results/<profile>.json and .svg.
# chaos (about a minute) breaks the stack part by part and records how long each recovery takes,
# in bench-results/chaos.json. failover (about a minute) kills one of three command APIs in a
# group and records how long until its quizzes are answered again, in bench-results/failover.json.
# restart (about 5 minutes) restarts the command API on logs of
# 100,000 and 1,000,000 events, in bench-results/restart.json. settings (about 2 minutes) tries
# the producer's linger (and, with --partitions 1,3,6,12, the answers topic's partitions), in
# bench-results/settings.json. See docs/performance.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
cd "$REPO_ROOT"

case "${1:-}" in
  -h|--help)
    sed -n '2,11p' "$0" | sed 's/^# //'
    echo
    exec cargo run --release --locked --quiet -p podium-bench -- --help
    ;;
esac
profile="${1:-quick}"
[ $# -gt 0 ] && shift

"$here/install.sh"
echo "[bench] building Podium (release)" >&2
cargo build --release --locked --quiet --bins

# The fan-out phase holds 10,000 streams: a descriptor each on both ends of loopback.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# bench-results/ unless the caller names a directory with --out.
out=(--out "$REPO_ROOT/bench-results")
for arg in "$@"; do
  case "$arg" in --out | --out=*) out=() ;; esac
done

if [ "$profile" = chaos ] || [ "$profile" = failover ] || [ "$profile" = restart ] || [ "$profile" = settings ]; then
  exec target/release/podium-bench "$profile" "${out[@]}" "$@"
fi
exec target/release/podium-bench --profile "$profile" "${out[@]}" "$@"
