"""A compose project of the suite: one layout, its own project name, ports on loopback.

Every host port is a free one on 127.0.0.1 (GATEWAY_BIND, LEGACY_BIND, MONITORING_BIND),
so the suite's traffic stays on this machine's loopback and never meets another program's
ports; the images are the offline ones (deploy/offline/offline.env, as the guide says).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.containers.engine import Docker
from tests.deploy.files import DEPLOY
from tests.support import free_port

OPTIMIZED = DEPLOY / "docker-compose.optimized.yml"
LEGACY = DEPLOY / "docker-compose.legacy.yml"
OFFLINE_ENV = DEPLOY / "offline" / "offline.env"
# every host port variable of the two compose files
GATEWAY_PORTS = {"GRAPHQL_HOST_PORT": 8000, "ECM_WS_HOST_PORT": 8765,
                 "DASHBOARD_HOST_PORT": 8080}
MONITORING_PORTS = {"PROMETHEUS_HOST_PORT": 9090, "GRAFANA_HOST_PORT": 3000}
LEGACY_SERVICES = ("dag_alpha", "functor_types", "callback_engine", "sfde", "graph_runtime",
                   "optimization", "graphql", "ecm_ws", "dashboard")
# The suite's load is far above the gateway's default per-client budget.
UNLIMITED = {"RATE_LIMIT_RPS": "1000000", "RATE_LIMIT_BURST": "1000000"}


def host_port_env() -> dict[str, str]:
    """A free loopback port for every published port of both layouts."""
    names = [*GATEWAY_PORTS, *MONITORING_PORTS, *(f"{s.upper()}_HOST_PORT"
                                                  for s in LEGACY_SERVICES)]
    return {name: str(free_port()) for name in names} | {
        "GATEWAY_BIND": "127.0.0.1", "LEGACY_BIND": "127.0.0.1", "MONITORING_BIND": "127.0.0.1"}


@dataclass
class Stack:
    docker: Docker
    project: str
    file: Path = OPTIMIZED
    env: dict[str, str] = field(default_factory=lambda: host_port_env() | UNLIMITED)

    def compose(self, *args: str, timeout: float = 300, check: bool = True,
                input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return self.docker.run("compose", "--env-file", str(OFFLINE_ENV), "-f", str(self.file),
                               "-p", self.project, *args, timeout=timeout, check=check,
                               input=input, env=self.env)

    def up(self, *args: str, profile: str | None = None, timeout: float = 300) -> float:
        """`[--profile P] up -d --wait ARGS`; the seconds until every container was
        healthy."""
        began = time.monotonic()
        self.compose(*(["--profile", profile] if profile else []), "up", "-d", "--wait",
                     "--wait-timeout", str(int(timeout)), *args, timeout=timeout + 30)
        return time.monotonic() - began

    def down(self) -> None:
        self.compose("--profile", "full", "down", "-v", "--remove-orphans", "-t", "30",
                     check=False)

    def containers(self, service: str, *, stopped: bool = False) -> list[str]:
        """Container names of a service (running ones, or all with `stopped`)."""
        ids = self.compose("ps", "-q", *(["-a"] if stopped else []), service
                           ).stdout.decode().split()
        return [c["Name"].lstrip("/") for c in self.docker.inspect(*ids)] if ids else []

    def url(self, port_variable: str) -> str:
        return f"http://127.0.0.1:{self.env[port_variable]}"

    def exec(self, container: str, *argv: str, timeout: float = 60
             ) -> subprocess.CompletedProcess[bytes]:
        return self.docker.run("exec", container, *argv, timeout=timeout, check=False)

    def get(self, container: str, port: int, path: str) -> str:
        """GET a port of a container from inside it (backend ports are not published)."""
        script = ("import sys, urllib.request; "
                  "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10)"
                  ".read().decode())")
        done = self.exec(container, "python3", "-c", script, f"http://127.0.0.1:{port}{path}")
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    def stats(self) -> dict[str, float]:
        """`docker stats --no-stream` memory of every running container, MiB by name."""
        ids = self.compose("ps", "-q").stdout.decode().split()
        lines = self.docker.out("stats", "--no-stream", "--format", "{{json .}}", *ids)
        return {row["Name"]: _mib(row["MemUsage"].split("/")[0])
                for row in map(json.loads, lines.splitlines())}


def _mib(text: str) -> float:
    value = text.strip()
    for unit, factor in (("GiB", 1024.0), ("MiB", 1.0), ("KiB", 1 / 1024), ("B", 1 / 2**20)):
        if value.endswith(unit):
            return round(float(value[: -len(unit)]) * factor, 1)
    raise ValueError(f"unreadable memory figure {text!r}")


def wait_for(check: Callable[[], Any], limit: float, what: str, every: float = 0.2) -> Any:
    """Poll `check` until it returns something true (bounded); return that."""
    deadline = time.monotonic() + limit
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, AssertionError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"not within {limit:g} s: {what} (last: {last!r})")


def http_json(url: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
    """One request from the host (to a published loopback port); (status, decoded body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type":
                                                              "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
