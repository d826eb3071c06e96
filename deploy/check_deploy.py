"""Cross-checks the deployment files against the binaries they run.

For every service of deploy/compose.yaml that runs the Podium image, each PODIUM_ and SCYLLA_
variable it sets must be one that binary (and subcommand) reads, as its --help lists them; a
misspelt variable would otherwise be ignored in silence. Variables read outside clap
(logging, OpenTelemetry) are listed below. Exits non-zero with every mismatch.

usage: check_deploy.py <compose.yaml> <directory of the podium binaries>
"""

import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

# Read by the logging and telemetry set-up, not by clap: see the README's "Operating it".
NOT_IN_HELP = {"PODIUM_LOG_FORMAT"}
CHECKED_PREFIXES = ("PODIUM_", "SCYLLA_")


def help_text(bin_dir: Path, command: list[str], cache: dict) -> str:
    binary = command[0]
    sub = [command[1]] if len(command) > 1 and not command[1].startswith("-") else []
    key = (binary, *sub)
    if key not in cache:
        path = bin_dir / binary
        if not path.exists():
            sys.exit(f"check_deploy: {path} is missing; build the binaries first")
        # A subcommand reads its own options and its parent's global ones.
        cache[key] = "".join(
            subprocess.run(
                [str(path), *args, "--help"], check=True, capture_output=True, text=True
            ).stdout
            for args in ([], sub)
        )
    return cache[key]


def main() -> int:
    compose_path, bin_dir = Path(sys.argv[1]), Path(sys.argv[2])
    compose = YAML(typ="safe").load(compose_path.read_text())
    cache: dict = {}
    problems = []
    checked = 0
    for name, service in compose["services"].items():
        image = str(service.get("image", ""))
        command = service.get("command") or []
        if "PODIUM_IMAGE" not in image and not image.startswith("podium"):
            continue
        if not command:
            problems.append(f"{name}: runs the Podium image without a command")
            continue
        text = help_text(bin_dir, command, cache)
        for key in service.get("environment") or {}:
            if not key.startswith(CHECKED_PREFIXES) or key in NOT_IN_HELP:
                continue
            checked += 1
            # Secrets are listed without their value: `[env: PODIUM_REDIS_URL]`.
            if f"env: {key}=" not in text and f"env: {key}]" not in text:
                problems.append(f"{name}: {' '.join(command)} does not read {key}")
    for problem in problems:
        print(f"check_deploy: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_deploy: {checked} variables of {compose_path.name} are read by their binaries")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
