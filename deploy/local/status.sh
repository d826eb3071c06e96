#!/usr/bin/env bash
# Shows the state of the local stack: each supervised program (state, pid, uptime), then whether
# each service is ready, from /readyz on its admin listener, and whether the gateway answers.
# Exits 3 when the stack is not running, 1 when a program is not running or a service is not
# ready, 0 otherwise.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

case "${1:-}" in
  -h|--help) sed -n '2,5p' "$0" | sed 's/^# //'; exit 0 ;;
esac

log() { printf '[status] %s\n' "$*" >&2; }

if ! podium_ctl pid >/dev/null 2>&1; then
  log "the stack is not running; start it with deploy/local/up.sh"
  exit 3
fi

code=0
podium_ctl status || code=1

# Each service's admin listener, from the same variables the services read.
ready() {
  local name="$1" listen="$2" url http body="$PODIUM_HOME/readyz.out"
  if [ "$listen" = off ]; then
    log "$name readiness: unknown, its admin listener is off"
    return 0
  fi
  url="http://$listen/readyz"
  if http="$(curl -sS --max-time 3 -o "$body" -w '%{http_code}' "$url" 2>/dev/null)"; then
    case "$http" in
      200) log "$name ready ($url): $(head -c 300 "$body")" ;;
      *) log "$name not ready ($url answered $http): $(head -c 300 "$body")"; code=1 ;;
    esac
  else
    log "$name readiness: no answer from $url"
    code=1
  fi
  rm -f "$body"
}
ready projector "${PODIUM_PROJECTOR_METRICS_LISTEN:-127.0.0.1:9464}"
ready command-api "${PODIUM_COMMAND_ADMIN_LISTEN:-127.0.0.1:9465}"
ready query-api "${PODIUM_QUERY_ADMIN_LISTEN:-127.0.0.1:9466}"
if [ "$(curl -sS --max-time 3 -o /dev/null -w '%{http_code}' "$PODIUM_URL/healthz" 2>/dev/null)" = 200 ]; then
  log "gateway answering at $PODIUM_URL"
else
  log "gateway: no answer from $PODIUM_URL/healthz"
  code=1
fi
exit "$code"
