#!/usr/bin/env bash
# Starts the whole local stack under a supervisord of its own, which restarts any process that
# exits: Redis, the nisshi broker (sqlite storage, so data survives restarts), Podium's topics,
# the projector, the command API, the query API, and nginx in front of both APIs as the one
# origin for clients ($PODIUM_URL), which also serves the web app (web/). Running it again starts whatever is stopped.
# Logs: $PODIUM_HOME/logs, data: $PODIUM_HOME/data. Status: deploy/local/status.sh. Stop: down.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

case "${1:-}" in
  -h|--help) sed -n '2,6p' "$0" | sed 's/^# //'; exit 0 ;;
esac

log() { printf '[up] %s\n' "$*" >&2; }
mkdir -p "$PODIUM_HOME/logs" "$PODIUM_HOME/data"

"$here/install.sh"
log "building Podium (release)"
(cd "$REPO_ROOT" && cargo build --release --locked --quiet --bins)
log "building the web app"
(cd "$REPO_ROOT/web" && npm run --silent build >/dev/null)
bin="$REPO_ROOT/target/release"

secret_file="$PODIUM_HOME/token-secret"
if [ ! -s "$secret_file" ]; then
  (umask 077 && head -c 48 /dev/urandom | base64 | tr -d '\n' > "$secret_file")
fi
# Exported, not written into the supervisord config: supervisord's programs inherit it.
PODIUM_TOKEN_SECRET="$(cat "$secret_file")"
export PODIUM_TOKEN_SECRET

supervisor_running() { podium_ctl pid >/dev/null 2>&1; }
state() { podium_ctl status "$1" 2>/dev/null | awk '{print $2}' || true; }
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Processes started by the scripts before supervision recorded their pids here.
legacy_running() {
  local pidfile
  for pidfile in "$PODIUM_HOME"/pids/*; do
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && return 0
  done
  return 1
}

if ! supervisor_running; then
  if legacy_running; then
    log "a stack started by an older version of these scripts is running; stop it with deploy/local/down.sh"
    exit 1
  fi
  # nisshi keeps a log of its own (nisshi.db) rather than reuse tansu's tables, and Redis's read
  # models record positions in tansu's log: keep both aside and start afresh.
  if [ -e "$PODIUM_HOME/data/tansu.db" ] && [ ! -e "$PODIUM_HOME/data/nisshi.db" ]; then
    aside="$PODIUM_HOME/data.tansu-$(date +%Y%m%d-%H%M%S)"
    mv "$PODIUM_HOME/data" "$aside"
    mkdir -p "$PODIUM_HOME/data"
    log "moved the data of the former tansu broker to $aside; starting with empty data"
  fi
fi

# supervisord's config: values are taken literally except %, and commands are split like a shell.
conf_value() { printf '%s' "${1//%/%%}"; }
conf_command() {
  local arg out=""
  for arg in "$@"; do
    arg="${arg//\\/\\\\}"; arg="${arg//\"/\\\"}"
    out+="${out:+ }\"$(conf_value "$arg")\""
  done
  printf '%s' "$out"
}
# The query API holds a descriptor per stream: let supervisord raise the limit its programs inherit.
nofile="$(ulimit -Hn)"
if [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ]; then nofile=65536; fi

# The gateway: the template Kubernetes and Compose use (deploy/k8s/base), filled in for this
# machine, inside a main configuration of its own (the test kit's `gateway_main` writes the same).
gateway_dir="$PODIUM_HOME/gateway"
write_gateway() {
  mkdir -p "$gateway_dir"
  local routes
  routes="$(cat "$REPO_ROOT/deploy/k8s/base/podium.conf.template")"
  routes="${routes//'${PODIUM_GATEWAY_PORT}'/127.0.0.1:$PODIUM_GATEWAY_PORT}"
  routes="${routes//'${PODIUM_COMMAND_SERVERS}'/server 127.0.0.1:$PODIUM_COMMAND_PORT;}"
  routes="${routes//'${PODIUM_QUERY_SERVERS}'/server 127.0.0.1:$PODIUM_QUERY_PORT;}"
  # Nothing stands in front of it here: no address's X-Forwarded-For is believed.
  routes="${routes//'${PODIUM_GATEWAY_REAL_IP}'/0.0.0.0/32}"
  routes="${routes//'${PODIUM_WEB_ROOT}'/$REPO_ROOT/web/dist}"
  printf '%s\n' "$routes" >"$gateway_dir/podium.conf"
  cat >"$gateway_dir/nginx.conf" <<NGINX
pid $gateway_dir/nginx.pid;
error_log stderr;
events {}
http {
  access_log off;
  client_body_buffer_size 256k;
  proxy_max_temp_file_size 0;
  client_body_temp_path $gateway_dir/client_body;
  proxy_temp_path $gateway_dir/proxy;
  include $gateway_dir/podium.conf;
}
NGINX
}

program() { # name, priority, working dir, command...
  local name="$1" priority="$2" dir="$3"; shift 3
  cat <<CONF

[program:$name]
command=$(conf_command "$@")
directory=$(conf_value "$dir")
priority=$priority
autostart=false
autorestart=true
startsecs=2
startretries=100
stopsignal=TERM
stopwaitsecs=20
redirect_stderr=true
stdout_logfile=$(conf_value "$PODIUM_HOME/logs/$name.log")
stdout_logfile_maxbytes=50MB
stdout_logfile_backups=2
CONF
}

write_conf() {
  cat <<CONF
; Written by deploy/local/up.sh; changes are overwritten at the next start of the stack.
; The programs inherit supervisord's environment: the PODIUM_* settings and the token secret.
; up.sh starts them in order (Redis and the broker, the topics, then the services), so none
; starts on its own.
; Started with these settings (the token secret aside):
$(env | grep -E '^(PODIUM_|RUST_LOG=|SCYLLA_)' | grep -v '^PODIUM_TOKEN_SECRET=' | sort | sed 's/^/;   /')

[unix_http_server]
file=$(conf_value "$PODIUM_HOME/supervisor.sock")
chmod=0700

[supervisorctl]
serverurl=unix://$(conf_value "$PODIUM_HOME/supervisor.sock")

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisord]
identifier=podium
pidfile=$(conf_value "$PODIUM_HOME/supervisord.pid")
logfile=$(conf_value "$PODIUM_HOME/logs/supervisord.log")
logfile_maxbytes=10MB
logfile_backups=2
childlogdir=$(conf_value "$PODIUM_HOME/logs")
directory=$(conf_value "$PODIUM_HOME")
minfds=$nofile
CONF
  program redis 10 "$PODIUM_HOME/data" "$(command -v redis-server)" --port "$PODIUM_REDIS_PORT" \
    --bind 127.0.0.1 --dir "$PODIUM_HOME/data" --appendonly yes --save ""
  program broker 20 "$PODIUM_HOME/data" "$(command -v nisshi)" broker \
    --storage-engine "sqlite://nisshi.db" \
    --listener-url "tcp://127.0.0.1:$PODIUM_KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$PODIUM_KAFKA_PORT"
  # A fixed instance id: static group membership, so a restarted projector takes its partitions
  # back without a rebalance.
  program projector 30 "$PODIUM_HOME" "$bin/podium-projector"
  echo 'environment=PODIUM_PROJECTOR_INSTANCE_ID="projector-1"'
  # Both APIs believe the client address that the gateway, on this machine, forwards.
  program command-api 40 "$PODIUM_HOME" "$bin/podium-command-api"
  echo 'environment=PODIUM_TRUSTED_PROXIES="127.0.0.1/32"'
  program query-api 50 "$PODIUM_HOME" "$bin/podium-query-api"
  echo 'environment=PODIUM_TRUSTED_PROXIES="127.0.0.1/32"'
  program gateway 60 "$gateway_dir" "$nginx" -p "$gateway_dir" -c "$gateway_dir/nginx.conf" \
    -e stderr -g "daemon off;"
}

nginx="$(command -v nginx || echo /usr/sbin/nginx)"
write_gateway

conf="$PODIUM_SUPERVISOR_CONF"
if supervisor_running; then
  log "supervisord already running (pid $(podium_ctl pid))"
  if ! write_conf | cmp -s - "$conf"; then
    log "it runs the stack with other settings than these; to apply them, stop it with deploy/local/down.sh first:"
    write_conf | diff "$conf" - | grep '^[<>]' >&2 || true
    exit 1
  fi
else
  write_conf >"$conf.new"
  mv "$conf.new" "$conf"
  supervisord -c "$conf"
  for _ in $(seq 1 50); do supervisor_running && break; sleep 0.2; done
  if ! supervisor_running; then
    log "supervisord did not start; last lines of its log:"
    tail -20 "$PODIUM_HOME/logs/supervisord.log" >&2 || true
    exit 1
  fi
  log "started supervisord (pid $(podium_ctl pid), config $conf)"
fi

fail() { # name, message
  log "$1 $2; last lines of its log:"
  tail -20 "$PODIUM_HOME/logs/$1.log" >&2 || true
  podium_ctl stop "$1" >/dev/null 2>&1 || true
  exit 1
}

wait_for() { # name, port
  for _ in $(seq 1 150); do
    if port_taken "$2"; then return 0; fi
    case "$(state "$1")" in
      RUNNING|STARTING) ;;
      *) fail "$1" "exited" ;;
    esac
    sleep 0.2
  done
  log "$1 is not listening on $2 after 30 s"; exit 1
}

ensure_started() { # name, port (- for none)
  local name="$1" port="$2" current out
  current="$(state "$name")"
  case "$current" in
    RUNNING|STARTING) log "$name already $current" ;;
    BACKOFF) fail "$name" "keeps exiting as it starts" ;;
    *)
      if [ "$port" != - ] && port_taken "$port"; then
        log "port $port for $name is taken by another process; stop it or set the PODIUM_*_PORT variables"
        exit 1
      fi
      # Returns once the program has stayed up for startsecs, or has exited before.
      out="$(podium_ctl start "$name" 2>&1)" || { log "$out"; fail "$name" "exited as it started"; }
      log "started $name (pid $(podium_ctl pid "$name"), log $PODIUM_HOME/logs/$name.log)"
      ;;
  esac
  if [ "$port" != - ]; then wait_for "$name" "$port"; fi
}

ensure_started redis "$PODIUM_REDIS_PORT"
ensure_started broker "$PODIUM_KAFKA_PORT"

"$bin/podium-ops" create-topics | sed 's/^/[up] /' >&2

ensure_started projector -
ensure_started command-api "$PODIUM_COMMAND_PORT"
ensure_started query-api "$PODIUM_QUERY_PORT"
ensure_started gateway "$PODIUM_GATEWAY_PORT"

log "Podium is up at $PODIUM_URL (the gateway; command API $PODIUM_COMMAND_URL, query API $PODIUM_QUERY_URL)"
log "status: deploy/local/status.sh, logs: $PODIUM_HOME/logs, stop: deploy/local/down.sh"
