"""The container suite: the image, both compose layouts and a Swarm, under a real engine.

Session fixtures start Debian's dockerd (tests/containers/engine.py), build the offline
base images and the wheelhouse (deploy/offline/, both kept when their inputs did not
change) and the bem image from them with no network, and collect the deployment figures
written to benchmarks/results/ at the end. Nothing is pulled: no registry is reachable.
Every test here is marked `containers` (deselect with `-m 'not containers'`) and skipped,
with the reason, only where no engine can run (no docker.io, not root).
BEM_CONTAINERS_COLD_BUILD=1 builds the image without the layer cache (the README's figure).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.containers.engine import RUN, Docker, EngineUnavailable, engine
from tests.containers.figures import Figures
from tests.support import REPO

HERE = Path(__file__).parent
SUITE_TIMEOUT = 1200  # per test: the first one builds the images
OFFLINE = REPO / "deploy" / "offline"
PYTHON_IMAGE = "bem-offline/python:bookworm"
WHEELHOUSE = "deploy/offline/wheelhouse"
# Debian's own Python (3.11.2, the base image's): the wheelhouse's environment markers must
# be evaluated for it (docs/deployment.md, offline builds).
DEBIAN_PYTHON = "/usr/bin/python3"
BUILD = ("docker build -f deploy/Dockerfile --network none "
         f"--build-arg PYTHON_IMAGE={PYTHON_IMAGE} --build-arg WHEELHOUSE={WHEELHOUSE} "
         "-t bem:latest .")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.containers)
            item.add_marker(pytest.mark.timeout(SUITE_TIMEOUT))


@pytest.fixture(scope="session")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    try:
        with engine(tmp_path_factory.mktemp("engine")) as running:
            yield running
    except EngineUnavailable as exc:
        pytest.skip(f"no Docker engine can run here: {exc}")


@pytest.fixture(scope="session")
def figures(docker: Docker) -> Iterator[Figures]:
    collected = Figures()
    yield collected
    collected.write(docker.out("version", "--format", "{{.Server.Version}}"))


@dataclass(frozen=True)
class Images:
    bem: str
    legacy: str
    size_mb: float
    python: str


@pytest.fixture(scope="session")
def images(docker: Docker, figures: Figures) -> Images:
    """The base images, the wheelhouse and the bem image, all offline; bem:legacy is the
    same image under the legacy layout's own tag."""
    base = subprocess.run(["nice", "-n", "10", str(OFFLINE / "base-images.sh")],
                          env={**docker.env, "DOCKER": docker.cli}, capture_output=True,
                          text=True, timeout=1800, check=False)
    assert base.returncode == 0, base.stdout + base.stderr
    built = re.findall(r"(bem-offline/\S+) built in (\d+) s", base.stdout)
    if built:
        figures.record("base_images", ", ".join(f"{i} {s} s" for i, s in built),
                       "deploy/offline/base-images.sh", note="debootstrap from the mirror")
    wheels = subprocess.run(["nice", "-n", "10", str(OFFLINE / "wheelhouse.sh")],
                            env={**os.environ, "PYTHON": DEBIAN_PYTHON}, capture_output=True,
                            text=True, timeout=900, check=False)
    assert wheels.returncode == 0, wheels.stdout + wheels.stderr[-4000:]
    began = time.monotonic()
    cold = ["--no-cache"] if os.environ.get("BEM_CONTAINERS_COLD_BUILD") else []
    with niced(docker):
        built = docker.run(*BUILD.split()[1:], *cold, timeout=1200)
    seconds = time.monotonic() - began
    log = built.stderr.decode()
    docker.run("tag", "bem:latest", "bem:legacy")
    size = int(docker.out("image", "inspect", "--format", "{{.Size}}", "bem:latest")) / 1e6
    python = docker.out("run", "--rm", "--network", "none", "--entrypoint", "python3",
                        "bem:latest", "-c", "import platform; print(platform.python_version())")
    figures.record("image_size", f"{size:.0f} MB", "docker image inspect bem:latest",
                   note=f"Python {python}, Debian bookworm base")
    figures.record("image_build", f"{seconds:.1f} s", f"DOCKER_BUILDKIT=1 {BUILD}",
                   note=f"{log.count(' CACHED')} of its steps cached")
    return Images("bem:latest", "bem:legacy", size, python)


@contextlib.contextmanager
def niced(docker: Docker) -> Iterator[None]:
    """Builds run inside dockerd: lower its priority (and its new children's) meanwhile,
    on a machine shared with other work."""
    pid = (RUN / "dockerd.pid").read_text().strip()
    # every thread: Linux keeps a nice value per thread, and Go forks from any of them
    threads = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    for tid in threads:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, 10)
    try:
        yield
    finally:
        for tid in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, int(tid.name), 0)
