"""Test support: real servers on free ports, a real redis-server, cluster processes.

Everything started here is torn down by the fixture or context manager that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from bem.clusters import ALL_SERVICES, PLACEMENT, members
from bem.clusters.launcher import die_with_parent
from bem.runtime.supervisor import Supervisor
from bem.services import spec
from bem.settings import Settings

REPO = Path(__file__).resolve().parent.parent


# Ports come from below the kernel's ephemeral range (32768-60999 on Linux): a port the kernel
# hands out with bind(0) can be taken again by any outgoing connection before the child binds
# it, which is how a cluster once failed with "Address already in use". Handed-out ports are
# remembered, so two plans in one run never share one.
_PORT_RANGE = range(20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    for _ in range(1000):
        port = random.choice(_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_RANGE}")


def port_plan() -> dict[str, int]:
    """A free port for every service (one plan per test: its processes share it)."""
    return {svc: free_port() for svc in ALL_SERVICES}


def port_env(plan: dict[str, int]) -> dict[str, str]:
    return {f"{svc.upper()}_PORT": str(port) for svc, port in plan.items()}


def base_env(plan: dict[str, int], **extra: Any) -> dict[str, str]:
    """Environment of a cluster child process: the plan's ports, loopback, small pool."""
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_PORT") and k not in ("REDIS_URL", "WORKERS", "BEM_API_KEYS")}
    env.update(port_env(plan))
    # Load from one test address must not hit the gateway's per-client rate limit or
    # connection cap unless a test sets one.
    env.update({"BIND_HOST": "127.0.0.1", "WORKERS": "1", "GRACE_PERIOD": "10",
                "LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1",
                "RATE_LIMIT_RPS": "100000", "RATE_LIMIT_BURST": "100000",
                "MAX_CLIENT_CONNECTIONS": "100000"})
    env.update({k.upper(): str(v) for k, v in extra.items()})
    return env


def metric_total(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples in Prometheus text, over the lines carrying `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- the old platform's /process ---------------------------------------------------------
# The envelope neon/container_client.py sends around every payload.
OLD_ENVELOPE = {"timestamp": "2025-06-20T14:35:40.512337", "source": "orchestrator"}


async def old_process(http: httpx.AsyncClient, data: Any, status: int = 200, *,
                      headers: dict[str, str] | None = None, **envelope: Any
                      ) -> dict[str, Any]:
    """POST /process with `data` in the old envelope (`envelope` replaces its fields);
    asserts the status and returns the JSON answer."""
    r = await http.post("/process", json={"data": data, **OLD_ENVELOPE, **envelope},
                        headers=headers)
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


# --- redis ---------------------------------------------------------------------------------
class RedisServer:
    """A private redis-server on a free port, with a data dir for persistence tests."""

    def __init__(self, *, appendonly: bool = True, args: Sequence[str] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bem-redis-")
        self.appendonly = appendonly
        self.args = tuple(args)  # more redis-server options, e.g. ("--requirepass", "x")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--daemonize", "no",
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "always", "--logfile", os.path.join(self.dir, "redis.log"),
                *self.args]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith((b"+PONG", b"-NOAUTH")):  # -NOAUTH: a password
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def redis_server(**kwargs: Any) -> Iterator[RedisServer]:
    server = RedisServer(**kwargs)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


# --- in-process clusters (same event loop as the test) ----------------------------------
_INPUT_NAMES = {"functor_type": "functorType", "agent_coefficients": "agentCoefficients"}


def graph_input(graph: dict[str, Any]) -> dict[str, Any]:
    """A graph as graph_runtime's JSON has it, as the GraphQL `GraphInput` variable: the
    schema's camelCase field names (attrs and coefficient keys are data: they keep theirs)."""
    out = {_INPUT_NAMES.get(k, k): v for k, v in graph.items()}
    out["nodes"] = [{_INPUT_NAMES.get(k, k): v for k, v in n.items()} for n in graph["nodes"]]
    return out


def make_settings(**overrides: Any) -> Settings:
    """Settings for an in-loop cluster: every port 0 (ephemeral), loopback, one worker."""
    values: dict[str, Any] = {f"{svc}_port": 0 for svc in ALL_SERVICES}
    values.update(bind_host="127.0.0.1", workers=1, grace_period=5.0, redis_url=None,
                  rate_limit_rps=100_000, rate_limit_burst=100_000,
                  max_client_connections=100_000)
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def run_cluster(target: str = "single", settings: Settings | None = None,
                      services: Sequence[str] | None = None) -> AsyncIterator[Supervisor]:
    """Serve a cluster in this event loop; yields the started Supervisor (see `.ports`)."""
    names = services or members(target)
    sup = Supervisor(settings or make_settings(), target, [spec(n) for n in names],
                     PLACEMENT)
    task = asyncio.create_task(sup.run(install_signals=False))
    started = asyncio.create_task(sup.started.wait())
    done, _ = await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        started.cancel()
        task.result()  # raises the start-up error
    try:
        yield sup
    finally:
        sup.request_stop()
        await asyncio.wait_for(task, 30)


def url_of(sup: Supervisor, service: str) -> str:
    return f"http://127.0.0.1:{sup.ports[service]}"


# --- cluster processes -------------------------------------------------------------------
class ClusterProcess:
    """`python -m bem serve TARGET` as a child process, output captured to a file."""

    def __init__(self, target: str, env: dict[str, str], plan: dict[str, int]) -> None:
        self.target = target
        self.env = env
        self.plan = plan
        # Kept open for the child's whole life and closed by cleanup().
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"bem-{target}-", suffix=".log", delete=False)
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.plan[service]}"

    @property
    def services(self) -> tuple[str, ...]:
        return members(self.target)

    def start(self) -> ClusterProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bem", "serve", self.target], env=self.env,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent)  # a killed test run leaves no cluster behind
        return self

    def wait_ready(self, timeout: float = 60.0) -> ClusterProcess:
        deadline = time.monotonic() + timeout
        pending = list(self.services)
        with httpx.Client(timeout=1.0) as http:
            while pending:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"{self.target} exited with {self.process.returncode}:"
                                       f"\n{self.output()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.target} not ready: {pending}\n{self.output()}")
                try:
                    if http.get(self.url(pending[0]) + "/health/ready").status_code == 200:
                        pending.pop(0)
                        continue
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        return self

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the cluster and its pool processes (its whole session)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def cleanup(self) -> None:
        self.stop()
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


@contextlib.contextmanager
def compute_replicas(redis_url: str, **settings: Any) -> Iterator[dict[str, ClusterProcess]]:
    """compute twice on different port plans (both register in the one Redis), logic and the
    gateway beside them: started, not yet ready (callers wait), all cleaned up after."""
    plan_a, plan_b = port_plan(), port_plan()
    env_a = base_env(plan_a, redis_url=redis_url, **settings)
    env_b = base_env(plan_b, redis_url=redis_url, **settings)
    procs = {"compute-a": ClusterProcess("compute", env_a, plan_a),
             "compute-b": ClusterProcess("compute", env_b, plan_b),
             "logic": ClusterProcess("logic", env_a, plan_a),
             "gateway": ClusterProcess("gateway", env_a, plan_a)}
    try:
        for proc in procs.values():
            proc.start()
        yield procs
    finally:
        for proc in procs.values():
            proc.cleanup()


class Topology:
    """Several cluster processes sharing one port plan (and optionally one Redis)."""

    def __init__(self, targets: Sequence[str], plan: dict[str, int] | None = None,
                 **env: Any) -> None:
        self.plan = plan or port_plan()
        self.env = base_env(self.plan, **env)
        self.clusters = {t: ClusterProcess(t, self.env, self.plan) for t in targets}

    def __enter__(self) -> Topology:
        try:
            for cluster in self.clusters.values():
                cluster.start()
            for cluster in self.clusters.values():
                cluster.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        for cluster in self.clusters.values():
            cluster.cleanup()

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.plan[service]}"

    def __getitem__(self, target: str) -> ClusterProcess:
        return self.clusters[target]
