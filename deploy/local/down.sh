#!/usr/bin/env bash
# Stops the local stack cleanly: the services first (SIGTERM, so they drain and commit, killed
# after 20 s), then the broker and Redis, then its supervisord. Takes at most about two minutes.
# Data stays in $PODIUM_HOME/data; delete it for a fresh start.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

case "${1:-}" in
  -h|--help) sed -n '2,4p' "$0" | sed 's/^# //'; exit 0 ;;
esac

log() { printf '[down] %s\n' "$*" >&2; }

# A stack started by an older version of these scripts, without supervisord: its pids are here.
for name in query-api command-api projector broker redis; do
  pidfile="$PODIUM_HOME/pids/$name"
  [ -f "$pidfile" ] || continue
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop within 15 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name"
  fi
  rm -f "$pidfile"
done

# supervisorctl waits for each program to exit, and supervisord kills a program that has not
# exited stopwaitsecs (20 s) after SIGTERM; the timeouts only guard against a stuck supervisord.
ctl() { timeout 60 supervisorctl -c "$PODIUM_SUPERVISOR_CONF" "$@"; }

if ! ctl pid >/dev/null 2>&1; then
  log "the stack is not running"
  exit 0
fi
pid="$(ctl pid)"

for name in query-api command-api projector broker redis; do
  out="$(ctl stop "$name" 2>&1)" || true
  case "$out" in
    *"ERROR (not running)"*) ;;
    *": stopped"*) log "stopped $name" ;;
    *) log "$out" ;;
  esac
done

ctl shutdown >/dev/null 2>&1 || true
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$pid" 2>/dev/null; then
  log "supervisord did not exit within 20 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
fi
log "stopped supervisord; data kept in $PODIUM_HOME/data"
