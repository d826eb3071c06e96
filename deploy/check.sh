#!/usr/bin/env bash
# Validates the deployment files as far as a machine without a container engine or a cluster
# can: the Compose file against the Compose specification's schema; both Kubernetes overlays,
# rendered by kustomize, against the pinned Kubernetes version's schemas (strict); the pipeline
# against GitHub's workflow schema; and every Podium variable, port and probe against the
# binary that runs it. Needs the debug binaries (cargo build --bins) and the Python tools that
# install.sh puts in .podium/python.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
tools="${PODIUM_HOME:-$root/.podium}/python/bin"
bin_dir="${PODIUM_BIN_DIR:-$root/target/debug}"
# The Kubernetes version the manifests are validated against: the oldest one we support.
KUBERNETES_VERSION=1.34.0

case "${1:-}" in
  -h|--help) sed -n '2,7p' "$0" | sed 's/^# //'; exit 0 ;;
esac

echo "compose: deploy/compose.yaml"
"$tools/check-jsonschema" --builtin-schema vendor.compose-spec "$here/compose.yaml"
"$tools/python3" "$here/check_deploy.py" compose "$here/compose.yaml" "$bin_dir"

rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
for overlay in local production; do
  echo "kubernetes: deploy/k8s/overlays/$overlay, validated against Kubernetes $KUBERNETES_VERSION"
  "$tools/kubectl" kustomize "$here/k8s/overlays/$overlay" >"$rendered/$overlay.yaml"
  "$tools/kubernetes-validate" --kubernetes-version "$KUBERNETES_VERSION" --strict --quiet "$rendered/$overlay.yaml"
  "$tools/python3" "$here/check_deploy.py" k8s "$rendered/$overlay.yaml" "$bin_dir"
done

echo "pipeline: .github/workflows/ci.yaml and deploy/argocd/application.yaml"
"$tools/check-jsonschema" --builtin-schema vendor.github-workflows "$root/.github/workflows/ci.yaml"
"$tools/python3" "$here/check_deploy.py" argocd "$here/argocd/application.yaml" "$root"
