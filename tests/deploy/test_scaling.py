"""`--scale compute-cluster=2` of the compose file, without Docker.

Each container becomes a network namespace with its own address on a bridge (Docker's
project network); service names resolve through /etc/netns/<ns>/hosts, a scaled service to
every replica (Docker's embedded DNS); each namespace runs the real `bem serve` with the
compose file's own command and environment (its defaults interpolated), on the compose
file's own ports - which cannot clash: every namespace has its own port space. Checked:
each replica registers its own address (ADVERTISE_HOST=auto), the gateway spreads requests
over both compute replicas, and the image's HEALTHCHECK command passes in every container.

Needs root and iproute2 (`ip netns`); skipped otherwise. Traffic stays on this machine,
between namespaces this test creates and removes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_py
from prometheus_client.parser import text_string_to_metric_families

from bem.clusters import CLUSTERS
from tests.deploy.files import DEPLOY, load_yaml, ports_of, resolved

# Four cluster processes start at once: on a loaded 2-core machine that takes a while.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TAG = f"b{os.getpid() % 100000}"
SUBNET = f"10.213.{os.getpid() % 200 + 20}"  # a private /24 that lives only in this test
# namespace -> (compose service, address)
HOSTS = {"redis": ("redis-cache", f"{SUBNET}.2"), "c1": ("compute-cluster", f"{SUBNET}.3"),
         "c2": ("compute-cluster", f"{SUBNET}.4"), "logic": ("logic-cluster", f"{SUBNET}.5"),
         "gw": ("api-gateway", f"{SUBNET}.6")}


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def netns_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs iproute2"
    probe = subprocess.run(["ip", "netns", "add", f"{TAG}probe"], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        return f"ip netns add refused: {probe.stderr.decode().strip()}"
    ip("netns", "del", f"{TAG}probe")
    return None


class Network:
    """A bridge with one namespace per container; removed whatever happens."""

    def __init__(self) -> None:
        self.bridge = f"{TAG}br"
        self.made: list[str] = []

    def namespace(self, name: str) -> str:
        return f"{TAG}{name}"

    def up(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{SUBNET}.1/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        hosts = "127.0.0.1 localhost\n" + "".join(
            f"{address} {service}\n" for service, address in HOSTS.values())
        for name, (_service, address) in HOSTS.items():
            ns = self.namespace(name)
            ip("netns", "add", ns)
            self.made.append(ns)
            outside, inside = f"{TAG}{name}h", f"{TAG}{name}n"
            ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            ip("link", "set", outside, "master", self.bridge, "up")
            ip("link", "set", inside, "netns", ns)
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", inside)
            ip("-n", ns, "link", "set", inside, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "route", "add", "default", "via", f"{SUBNET}.1")
            etc = Path("/etc/netns") / ns  # `ip netns exec` mounts these over /etc
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts)

    def down(self) -> None:
        for ns in self.made:
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "del", ns)  # takes its veth end (and the peer) with it
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("link", "del", self.bridge)


class Container:
    """A process in a namespace, output captured; its whole session stopped at the end."""

    def __init__(self, ns: str, argv: list[str], env: dict[str, str]) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix=f"{ns}-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(["ip", "netns", "exec", ns, *argv], env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    """The container's environment: the compose file's, defaults interpolated, one worker."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PORT") and
           k not in ("REDIS_URL", "NODE_ROLE", "BIND_HOST", "ADVERTISE_HOST", "WORKERS")}
    for name, value in service["environment"].items():
        env[name] = resolved(value)
    env["WORKERS"] = "1"  # a 2-core machine runs four clusters here
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_ready(url: str, container: Container, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as http:
        while time.monotonic() < deadline:
            if container.process.poll() is not None:
                raise RuntimeError(f"exited {container.process.returncode}:\n"
                                   f"{container.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if http.get(f"{url}/health/ready").status_code == 200:
                    return
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready:\n{container.output()}")


@pytest.fixture(scope="module")
def deployment() -> Iterator[dict[str, Container]]:
    reason = netns_available()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")
    services = load_yaml(DEPLOY / "docker-compose.optimized.yml")["services"]
    network = Network()
    containers: dict[str, Container] = {}
    try:
        try:
            network.up()
        except subprocess.CalledProcessError as exc:  # e.g. bridges refused in this sandbox
            pytest.skip(f"cannot build the test network: {' '.join(exc.cmd)}: "
                        f"{exc.stderr.decode().strip()}")
        redis_cmd = list(services["redis-cache"]["command"])
        redis_cmd[redis_cmd.index("--maxmemory") + 1] = "64mb"
        redis_cmd += ["--protected-mode", "no", "--dir", tempfile.mkdtemp(prefix="bem-redis-")]
        containers["redis"] = Container(network.namespace("redis"), redis_cmd, dict(os.environ))
        for name in ("c1", "c2", "logic", "gw"):
            service = services[HOSTS[name][0]]
            containers[name] = Container(
                network.namespace(name),
                [sys.executable, "-m", "bem", "serve", *service["command"]],
                compose_env(service))
        for name in ("c1", "c2", "logic", "gw"):
            cluster = services[HOSTS[name][0]]["command"][0]
            for port in ports_of(cluster):
                wait_ready(f"http://{HOSTS[name][1]}:{port}", containers[name])
        yield containers
    finally:
        for container in reversed(containers.values()):
            container.stop()
        network.down()


def test_each_replica_registers_its_own_address(deployment: dict[str, Container]) -> None:
    r = redis_py.Redis(host=HOSTS["redis"][1], port=6379)
    try:
        urls = {}
        for service in CLUSTERS["compute"]:  # one sorted set per service, a member each
            members = r.zrange(f"bem:registry:{service}", 0, -1)
            urls[service] = sorted(m.decode() for m in members)  # type: ignore[union-attr]
    finally:
        r.close()
    for service, port in zip(CLUSTERS["compute"], ports_of("compute"), strict=True):
        assert len(urls[service]) == 2
        for address in (HOSTS["c1"][1], HOSTS["c2"][1]):
            assert any(f'"url":"http://{address}:{port}"' in u for u in urls[service])


def requests_served(address: str) -> float:
    text = httpx.get(f"http://{address}:5003/metrics", timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "bem_http_requests_total" and s.labels["service"] == "sfde"
               and s.labels["route"] == "/formulas")


def test_the_gateway_spreads_requests_over_both_replicas(
        deployment: dict[str, Container]) -> None:
    gateway = f"http://{HOSTS['gw'][1]}:8000"
    with httpx.Client(base_url=gateway, timeout=10) as http:
        for _ in range(20):
            answer = http.get("/sfde/formulas")
            assert answer.status_code == 200, answer.text
    served = [requests_served(HOSTS[n][1]) for n in ("c1", "c2")]
    assert sum(served) >= 20
    assert min(served) >= 5, f"one replica got almost nothing: {served}"


@pytest.mark.parametrize("name", ["c1", "c2", "logic", "gw"])
def test_the_image_healthcheck_passes_in_every_container(deployment: dict[str, Container],
                                                         name: str) -> None:
    services = load_yaml(DEPLOY / "docker-compose.optimized.yml")["services"]
    service = services[HOSTS[name][0]]
    assert service["healthcheck"]["test"] == ["CMD", "bem-healthcheck"]
    # The image's check reads the URL its entry point wrote (tests/containers runs both in
    # real containers); `bem health`, the same check, finds the port from the container's
    # environment here. No time limit: on a loaded machine, 4 s can pass by.
    argv = ["bem", "health", "--timeout", "60"]
    done = subprocess.run(["ip", "netns", "exec", f"{TAG}{name}", sys.executable, "-m",
                           *argv], env=compose_env(service), capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{service['command'][0]} (" in done.stdout
