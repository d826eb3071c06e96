#!/usr/bin/env bash
# Stops the local stack cleanly: services first (SIGTERM, so they drain and commit), then the
# broker and Redis. Data stays in $PODIUM_HOME/data; delete it for a fresh start.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

for name in query-api command-api projector broker redis; do
  pidfile="$PODIUM_HOME/pids/$name"
  [ -f "$pidfile" ] || continue
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "[down] $name did not stop within 15 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "[down] stopped $name" >&2
  fi
  rm -f "$pidfile"
done
