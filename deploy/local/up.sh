#!/usr/bin/env bash
# Starts the whole local stack: Redis, the tansu broker (sqlite storage, so data survives
# restarts), Podium's topics, the projector, the command API and the query API.
# Logs: $PODIUM_HOME/logs, data: $PODIUM_HOME/data. Stop with deploy/local/down.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

case "${1:-}" in
  -h|--help) sed -n '2,4p' "$0" | sed 's/^# //'; exit 0 ;;
esac

log() { printf '[up] %s\n' "$*" >&2; }
mkdir -p "$PODIUM_HOME/logs" "$PODIUM_HOME/data" "$PODIUM_HOME/pids"

"$here/install.sh"
log "building Podium (release)"
(cd "$REPO_ROOT" && cargo build --release --quiet --bins)
bin="$REPO_ROOT/target/release"

secret_file="$PODIUM_HOME/token-secret"
if [ ! -s "$secret_file" ]; then
  (umask 077 && head -c 48 /dev/urandom | base64 | tr -d '\n' > "$secret_file")
fi
PODIUM_TOKEN_SECRET="$(cat "$secret_file")"
export PODIUM_TOKEN_SECRET

running() { [ -f "$PODIUM_HOME/pids/$1" ] && kill -0 "$(cat "$PODIUM_HOME/pids/$1")" 2>/dev/null; }

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() { # name, port (- for none), working dir, command...
  local name="$1" port="$2" dir="$3"; shift 3
  if running "$name"; then log "$name already running"; return; fi
  if [ "$port" != - ] && port_taken "$port"; then
    log "port $port for $name is taken by another process; stop it or set the PODIUM_*_PORT variables"
    exit 1
  fi
  # The subshell execs into the service, so the recorded pid is the service's own.
  (cd "$dir" && exec nohup "$@" >>"$PODIUM_HOME/logs/$name.log" 2>&1) &
  echo $! >"$PODIUM_HOME/pids/$name"
  log "started $name (pid $(cat "$PODIUM_HOME/pids/$name"), log $PODIUM_HOME/logs/$name.log)"
}

wait_for() { # name, port
  for _ in $(seq 1 150); do
    if port_taken "$2"; then return 0; fi
    if ! running "$1"; then log "$1 exited; last lines of its log:"; tail -20 "$PODIUM_HOME/logs/$1.log" >&2; exit 1; fi
    sleep 0.2
  done
  log "$1 is not listening on $2 after 30 s"; exit 1
}

start redis "$PODIUM_REDIS_PORT" "$PODIUM_HOME/data" redis-server --port "$PODIUM_REDIS_PORT" --bind 127.0.0.1 \
  --dir "$PODIUM_HOME/data" --appendonly yes --save ""
wait_for redis "$PODIUM_REDIS_PORT"

start broker "$PODIUM_KAFKA_PORT" "$PODIUM_HOME/data" tansu broker --storage-engine "sqlite://tansu.db" \
  --listener-url "tcp://127.0.0.1:$PODIUM_KAFKA_PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$PODIUM_KAFKA_PORT"
wait_for broker "$PODIUM_KAFKA_PORT"

"$bin/podium-ops" create-topics | sed 's/^/[up] /' >&2

start projector - "$PODIUM_HOME" "$bin/podium-projector"
start command-api "$PODIUM_COMMAND_PORT" "$PODIUM_HOME" "$bin/podium-command-api"
wait_for command-api "$PODIUM_COMMAND_PORT"
start query-api "$PODIUM_QUERY_PORT" "$PODIUM_HOME" "$bin/podium-query-api"
wait_for query-api "$PODIUM_QUERY_PORT"

log "Podium is up: command API $PODIUM_COMMAND_URL, query API $PODIUM_QUERY_URL"
