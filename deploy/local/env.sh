# Settings of the local stack, sourced by its scripts. Override any of them in the environment.
# shellcheck shell=bash
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PODIUM_HOME="${PODIUM_HOME:-$REPO_ROOT/.podium}"   # logs, data and supervisor files live here
# Python with fastavro (install.sh), for the test that decodes the topics with a second Avro
# implementation.
export PODIUM_PYTHON="${PODIUM_PYTHON:-$PODIUM_HOME/python/bin/python3}"
export PODIUM_KAFKA_PORT="${PODIUM_KAFKA_PORT:-19092}"
export PODIUM_REDIS_PORT="${PODIUM_REDIS_PORT:-16379}"
export PODIUM_COMMAND_PORT="${PODIUM_COMMAND_PORT:-8080}"
export PODIUM_QUERY_PORT="${PODIUM_QUERY_PORT:-8081}"
export PODIUM_GATEWAY_PORT="${PODIUM_GATEWAY_PORT:-8000}"

export PODIUM_KAFKA_BROKERS="127.0.0.1:${PODIUM_KAFKA_PORT}"
export PODIUM_REDIS_URL="redis://127.0.0.1:${PODIUM_REDIS_PORT}/"
export PODIUM_COMMAND_LISTEN="127.0.0.1:${PODIUM_COMMAND_PORT}"
export PODIUM_QUERY_LISTEN="127.0.0.1:${PODIUM_QUERY_PORT}"
export PODIUM_COMMAND_URL="http://${PODIUM_COMMAND_LISTEN}"
export PODIUM_QUERY_URL="http://${PODIUM_QUERY_LISTEN}"
# The one origin for clients: nginx in front of both APIs.
export PODIUM_URL="http://127.0.0.1:${PODIUM_GATEWAY_PORT}"

# The stack runs under a supervisord instance of its own, configured by up.sh.
export PODIUM_SUPERVISOR_CONF="$PODIUM_HOME/supervisord.conf"
# supervisorctl for that instance, for example `podium_ctl status` or `podium_ctl restart projector`.
podium_ctl() { supervisorctl -c "$PODIUM_SUPERVISOR_CONF" "$@"; }

export PATH="$HOME/.cargo/bin:$PATH"
