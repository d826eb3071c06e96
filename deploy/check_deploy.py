"""Cross-checks the deployment files against the binaries they run.

Every PODIUM_ and SCYLLA_ variable a service or container of the Podium image is given must be
one its binary (and subcommand) reads, as its --help lists them: a misspelt or misplaced
variable would otherwise be ignored in silence. For Kubernetes, the variables of the ConfigMaps
a container takes with envFrom count too, and its ports and probes must be the ones its
listeners serve: `http` the API listener, `admin` the admin listener with /livez and /readyz.
Exits non-zero with every mismatch.

The gateway (the podium-gateway image) must be given exactly the ${PODIUM_...} variables its
template (deploy/k8s/base/podium.conf.template) holds: one left out would be served as text.

An Argo CD Application must point at an overlay of this repository, in the namespace that
overlay sets (kubernetes-validate has no schema for Argo CD's resources).

usage: check_deploy.py compose <compose.yaml> <bin dir>
       check_deploy.py k8s <rendered manifests.yaml> <bin dir>
       check_deploy.py argocd <application.yaml> <repository root>
"""

import re
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

# Read by the logging set-up, not by clap: see the README's "Operating it".
NOT_IN_HELP = {"PODIUM_LOG_FORMAT"}
CHECKED_PREFIXES = ("PODIUM_", "SCYLLA_")
PROBE_PATHS = {"/livez", "/readyz"}


class Helps:
    """Each binary's --help, with its subcommand's: a subcommand reads its parent's options too."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.cache: dict = {}

    def of(self, command: list[str]) -> str:
        binary = command[0]
        sub = [command[1]] if len(command) > 1 and not command[1].startswith("-") else []
        key = (binary, *sub)
        if key not in self.cache:
            path = self.bin_dir / binary
            if not path.exists():
                sys.exit(f"check_deploy: {path} is missing; build the binaries first")
            self.cache[key] = "".join(
                subprocess.run(
                    [str(path), *args, "--help"], check=True, capture_output=True, text=True
                ).stdout
                for args in ([], sub)
            )
        return self.cache[key]


def unread(help_text: str, names) -> list[str]:
    """The checked variables among `names` that the help does not list."""
    missing = []
    for name in names:
        if not name.startswith(CHECKED_PREFIXES) or name in NOT_IN_HELP:
            continue
        # Secrets are listed without their value: `[env: PODIUM_REDIS_URL]`.
        if f"env: {name}=" not in help_text and f"env: {name}]" not in help_text:
            missing.append(name)
    return missing


def is_podium(image: str) -> bool:
    return "PODIUM_IMAGE" in image or image.split("/")[-1].split(":")[0] == "podium"


def is_gateway(image: str) -> bool:
    return "PODIUM_GATEWAY_IMAGE" in image or image.split("/")[-1].split(":")[0] == "podium-gateway"


TEMPLATE = Path(__file__).resolve().parent / "k8s/base/podium.conf.template"


def check_gateway(where: str, env) -> list[str]:
    """The gateway's variables against its template's placeholders."""
    template = "\n".join(
        line for line in TEMPLATE.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    wanted = set(re.findall(r"\$\{(PODIUM_[A-Z_]+)\}", template))
    given = {name for name in env if name.startswith("PODIUM_")}
    problems = [f"{where}: the gateway template needs {name}" for name in sorted(wanted - given)]
    problems += [f"{where}: the gateway template has no {name}" for name in sorted(given - wanted)]
    return problems


def check_compose(path: Path, helps: Helps) -> tuple[list[str], int]:
    compose = YAML(typ="safe").load(path.read_text())
    problems, checked = [], 0
    for name, service in compose["services"].items():
        if is_gateway(str(service.get("image", ""))):
            env = service.get("environment") or {}
            checked += len(env)
            problems += check_gateway(name, env)
            continue
        if not is_podium(str(service.get("image", ""))):
            continue
        command = service.get("command") or []
        if not command:
            problems.append(f"{name}: runs the Podium image without a command")
            continue
        env = service.get("environment") or {}
        checked += len(env)
        for var in unread(helps.of(command), env):
            problems.append(f"{name}: {' '.join(command)} does not read {var}")
    return problems, checked


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def check_k8s(path: Path, helps: Helps) -> tuple[list[str], int]:
    docs = [d for d in YAML(typ="safe").load_all(path.read_text()) if d]
    config_maps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    problems, checked = [], 0
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            if is_gateway(container.get("image", "")):
                env = {e["name"]: e.get("value") for e in container.get("env") or []}
                checked += len(env)
                problems += check_gateway(where, env)
                continue
            if not is_podium(container.get("image", "")):
                continue
            command = container.get("command") or []
            if not command:
                problems.append(f"{where}: runs the Podium image without a command")
                continue
            env = {e["name"]: e.get("value") for e in container.get("env") or []}
            for source in container.get("envFrom") or []:
                ref = source.get("configMapRef", {}).get("name")
                if ref not in config_maps:
                    problems.append(f"{where}: takes ConfigMap {ref}, which the overlay lacks")
                    continue
                env.update(config_maps[ref])
            checked += len(env)
            for var in unread(helps.of(command), env):
                problems.append(f"{where}: {' '.join(command)} does not read {var}")
            problems += check_ports(where, container, env)
    return problems, checked


def check_ports(where: str, container: dict, env: dict) -> list[str]:
    """`http` is the API listener's port; `admin` the admin listener's, which serves the probes."""
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
    listeners = {
        "http": [v for k, v in env.items() if k.endswith("_LISTEN") and "ADMIN" not in k and "METRICS" not in k],
        "admin": [v for k, v in env.items() if k.endswith(("_ADMIN_LISTEN", "_METRICS_LISTEN"))],
    }
    problems = []
    for name, values in listeners.items():
        for value in values:
            if ports.get(name) != port_of(value):
                problems.append(f"{where}: port {name} is {ports.get(name)}, but the listener is {value}")
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(kind)
        if probe is None:
            continue
        get = probe.get("httpGet") or {}
        if get.get("path") not in PROBE_PATHS or get.get("port") != "admin" or "admin" not in ports:
            problems.append(f"{where}: {kind} asks {get.get('path')} on {get.get('port')}; the admin port serves /livez and /readyz")
    serves = bool(container.get("ports"))
    if serves and ("livenessProbe" not in container or "readinessProbe" not in container):
        problems.append(f"{where}: a service needs liveness and readiness probes")
    return problems


def check_argocd(path: Path, root: Path) -> tuple[list[str], int]:
    app = YAML(typ="safe").load(path.read_text())
    problems = []
    if (app.get("apiVersion"), app.get("kind")) != ("argoproj.io/v1alpha1", "Application"):
        problems.append(f"{path.name}: not an Argo CD Application")
        return problems, 0
    spec = app.get("spec") or {}
    overlay = root / (spec.get("source") or {}).get("path", "")
    kustomization = overlay / "kustomization.yaml"
    if not kustomization.is_file():
        problems.append(f"{path.name}: source.path {overlay} has no kustomization.yaml")
        return problems, 1
    namespace = YAML(typ="safe").load(kustomization.read_text()).get("namespace")
    wanted = (spec.get("destination") or {}).get("namespace")
    if namespace != wanted:
        problems.append(f"{path.name}: deploys to namespace {wanted}, the overlay sets {namespace}")
    return problems, 2


def main() -> int:
    if len(sys.argv) != 4 or sys.argv[1] not in ("compose", "k8s", "argocd"):
        sys.exit(__doc__)
    mode, path, last = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if mode == "argocd":
        problems, checked = check_argocd(path, last)
    else:
        problems, checked = (check_compose if mode == "compose" else check_k8s)(path, Helps(last))
    for problem in problems:
        print(f"check_deploy: {problem}", file=sys.stderr)
    if not problems:
        said = {
            "compose": f"{checked} settings, each read by its binary",
            "k8s": f"{checked} settings, each read by its binary; ports and probes match the listeners",
            "argocd": "deploys an overlay of this repository, in the overlay's namespace",
        }
        print(f"check_deploy: {path.name}: {said[mode]}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
