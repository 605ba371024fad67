"""The image, built offline from the Debian base: what it holds, and `docker run` as the
Dockerfile's header says to use it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.containers.conftest import DEBIAN_PYTHON, Images
from tests.containers.engine import Docker
from tests.containers.stack import wait_for
from tests.deploy.files import DESIGN_PORTS


def run(docker: Docker, image: str, *argv: str, entrypoint: str = "sh") -> str:
    return docker.out("run", "--rm", "--network", "none", "--entrypoint", entrypoint, image,
                      *argv)


def test_the_image_runs_as_10001_on_debians_python(docker: Docker, images: Images) -> None:
    assert run(docker, images.bem, "-c", "id -u; id -g") == "10001\n10001"
    debian = subprocess.run([DEBIAN_PYTHON, "-c", "import platform; "
                             "print(platform.python_version())"], capture_output=True,
                            text=True, check=True).stdout.strip()
    assert images.python == debian  # 3.11.2 on bookworm: `bem restore` runs on it below
    [config] = docker.inspect(images.bem)
    assert config["Config"]["User"] == "10001:10001"
    assert config["Config"]["Entrypoint"] == ["bem-entrypoint"]


def test_the_compiled_kernels_run_on_a_read_only_root(docker: Docker, images: Images) -> None:
    """Numba writes its machine code's cache; the images run with a read-only root and a
    /tmp tmpfs, where `compiled` puts it by default."""
    check = ("import numpy as np; from bem.services.graph_runtime import compiled; "
             "k = compiled.kernels(True); "
             "print(k.betweenness(np.array([0, 1, 2, 2]), np.array([1, 2])).tolist())")
    out = docker.out("run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
                     "--entrypoint", "python3", images.bem, "-c", check)
    assert out.strip().splitlines()[-1] == "[0.0, 1.0, 0.0]"


def test_no_port_is_exposed_for_every_cluster(docker: Docker, images: Images) -> None:
    [config] = docker.inspect(images.bem)
    assert not config["Config"].get("ExposedPorts")  # ports belong to the cluster served


def test_nothing_of_the_building_host_is_inside(docker: Docker, images: Images) -> None:
    [config] = docker.inspect(images.bem)
    env = dict(e.split("=", 1) for e in config["Config"]["Env"])
    assert not {k for k in env if "proxy" in k.lower()}
    bundle = run(docker, images.bem, "-c",
                 "cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null; "
                 "ls /etc/pip.conf /usr/local/share/ca-certificates/*.crt 2>/dev/null; true")
    for local in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        body = "".join(line for line in local.read_text().splitlines()
                       if line and not line.startswith("-----"))[:200]
        assert body not in bundle.replace("\n", ""), f"{local} is in the image"
    assert "/etc/pip.conf" not in bundle
    hosts = run(docker, "bem-offline/python:bookworm", "-c", "cat /etc/apt/sources.list")
    assert hosts == "deb http://deb.debian.org/debian bookworm main"


def test_docker_run_with_the_cluster_as_argument_turns_healthy(docker: Docker,
                                                               images: Images) -> None:
    """`docker run bem:latest logic`, the Dockerfile header's form: the HEALTHCHECK checks
    logic's own port although NODE_ROLE is still the image's `single`."""
    name = "bemtest-run-logic"
    docker.run("run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", images.bem,
               "logic")
    try:
        health = wait_for(lambda: _health(docker, name) in ("healthy", "unhealthy")
                          and _health(docker, name), 90, "a health verdict")
        [state] = docker.inspect(name)
        log = json.dumps(state["State"]["Health"]["Log"][-1])
        assert health == "healthy", log
        env = dict(e.split("=", 1) for e in state["Config"]["Env"])
        assert env["NODE_ROLE"] == "single"
        assert f"127.0.0.1:{DESIGN_PORTS['functor_types']}/cluster-health/local" in log
    finally:
        docker.run("rm", "-f", name, check=False)


def _health(docker: Docker, name: str) -> str:
    return docker.out("inspect", "--format", "{{.State.Health.Status}}", name)
