#!/usr/bin/env bash
# Validates the deployment files as far as a machine without a container engine can: the
# Compose file against the Compose specification's schema, and every Podium variable it sets
# against the --help of the binary it runs. Needs the debug binaries (cargo build --bins) and
# the Python tools that install.sh puts in .podium/python.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
python="${PODIUM_HOME:-$root/.podium}/python/bin"

case "${1:-}" in
  -h|--help) sed -n '2,5p' "$0" | sed 's/^# //'; exit 0 ;;
esac

"$python/check-jsonschema" --builtin-schema vendor.compose-spec "$here/compose.yaml"
"$python/python3" "$here/check_deploy.py" "$here/compose.yaml" "${PODIUM_BIN_DIR:-$root/target/debug}"
