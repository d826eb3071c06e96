#!/usr/bin/env bash
# Shows the state of the local stack: each supervised program (state, pid, uptime), then whether
# the projector is ready, from /readyz on its metrics listener. Exits 3 when the stack is not
# running, 1 when a program is not running or the projector is not ready, 0 otherwise.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

case "${1:-}" in
  -h|--help) sed -n '2,4p' "$0" | sed 's/^# //'; exit 0 ;;
esac

log() { printf '[status] %s\n' "$*" >&2; }

if ! podium_ctl pid >/dev/null 2>&1; then
  log "the stack is not running; start it with deploy/local/up.sh"
  exit 3
fi

code=0
podium_ctl status || code=1

metrics="${PODIUM_PROJECTOR_METRICS_LISTEN:-127.0.0.1:9464}"
if [ "$metrics" = off ]; then
  log "projector readiness: unknown, its metrics listener is off"
  exit "$code"
fi
url="http://$metrics/readyz"
body="$PODIUM_HOME/readyz.out"
if http="$(curl -sS --max-time 3 -o "$body" -w '%{http_code}' "$url" 2>/dev/null)"; then
  case "$http" in
    200) log "projector ready ($url): $(head -c 300 "$body")" ;;
    404) log "projector readiness: this build does not serve $url yet" ;;
    *) log "projector not ready ($url answered $http): $(head -c 300 "$body")"; code=1 ;;
  esac
else
  log "projector readiness: no answer from $url"
  code=1
fi
rm -f "$body"
exit "$code"
