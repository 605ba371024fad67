"""The optimized layout under a real engine, as an operator drives it, in this order:

up --profile development (timed) -> every protocol through the published ports -> users and
read-only roots -> the guide's commands as docs/deployment.md writes them -> memory after
traffic -> --scale compute-cluster=3, balanced -> a replica SIGKILLed under load -> no
compute replica left: a prompt 503 -> `compose stop` with requests in flight.

One stack for the module (project `bem`, the compose file's own name, so the docs' commands
run as written); each test leaves it as the next one expects.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets.sync.client

from bem.runtime.registry import EJECT_SECONDS, registry_key
from tests.containers.conftest import Images
from tests.containers.engine import Docker
from tests.containers.figures import Figures
from tests.containers.stack import Stack, http_json, wait_for
from tests.faults.support import Load, Request, Tally, phase, until_sent, wide_graph
from tests.support import REPO, metric_total

LIVE = ("local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
        "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')")
UP = ("docker compose --env-file deploy/offline/offline.env -f "
      "deploy/docker-compose.optimized.yml --profile development up -d --wait")
DOCS = REPO / "docs" / "deployment.md"
BEM_SERVICES = ("compute-cluster", "logic-cluster", "api-gateway")


def traffic() -> list[Request]:
    """Idempotent requests over every backend service, through the gateway."""
    return [
        Request("sample", "GET", "/graph_runtime/sample"),
        Request("evaluate", "POST", "/sfde/evaluate",
                {"formula": "simple_beam_udl", "params": {"w": 10.0, "L": 6.0}}),
        Request("analyze", "POST", "/graph_runtime/analyze", lambda n: {
            "graph": wide_graph(n, n=60, m=200), "metrics": ["summary", "pagerank"]}),
        Request("types", "GET", "/functor_types/types"),
        Request("graphql", "POST", "/graphql", {"query": "{ health { status } }"}),
    ]


@pytest.fixture(scope="module")
def dev(docker: Docker, images: Images, figures: Figures) -> Iterator[Stack]:
    stack = Stack(docker, "bem")
    try:
        seconds = stack.up(profile="development")
        figures.record("up_development", f"{seconds:.1f} s", UP,
                       note="image built; 4 containers")
        assert seconds < 120, "generous: the figure, not this bound, is the measurement"
        wait_for(lambda: http_json(stack.url("GRAPHQL_HOST_PORT") + "/sfde/formulas")[0]
                 == 200, 60, "the gateway routing to compute")
        yield stack
    finally:
        stack.down()


def registered(stack: Stack, service: str) -> int:
    """Live replicas of a service: members of its registry set not yet expired (scores are
    expiry times on Redis's clock, runtime/registry.py)."""
    [redis] = stack.containers("redis-cache")
    out = stack.exec(redis, "redis-cli", "EVAL", LIVE, "1", registry_key(service))
    return int(out.stdout.split()[0])


# --- the published ports ----------------------------------------------------------------------
def test_the_gateway_answers_every_protocol(dev: Stack) -> None:
    gql = dev.url("GRAPHQL_HOST_PORT")

    def platform_serving() -> bool:
        status, body = http_json(gql + "/graphql", {"query": "{ health { status } }"})
        assert status == 200, body
        return body["data"]["health"]["status"] in ("pass", "warn")

    # Right after `up --wait` on a loaded machine the platform-wide view has been seen
    # `fail` for a moment (a process's report late for the dashboard's collector).
    wait_for(platform_serving, 60, "GraphQL health pass or warn", every=1)
    status, body = http_json(gql + "/sfde/formulas/roi")  # REST routing to compute
    assert status == 200 and body["name"] == "roi"
    status, body = http_json(gql + "/functor_types/types")  # and to logic
    assert status == 200 and body["types"]
    page = httpx.get(dev.url("DASHBOARD_HOST_PORT") + "/", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    status, platform = http_json(dev.url("DASHBOARD_HOST_PORT") + "/cluster-health")
    assert {"compute", "logic", "gateway"} <= set(json.dumps(platform).split('"')), platform
    ws_url = dev.url("ECM_WS_HOST_PORT").replace("http", "ws") + "/ws"
    with websockets.sync.client.connect(ws_url, open_timeout=30) as ws:
        ws.send(json.dumps({"type": "ping", "id": "p1"}))
        while (reply := json.loads(ws.recv(timeout=30)))["type"] != "pong":
            pass  # a hello or a heartbeat first
        assert reply["id"] == "p1"


def test_clusters_run_as_10001_on_a_read_only_root(dev: Stack) -> None:
    for service in BEM_SERVICES:
        [name] = dev.containers(service)
        [info] = dev.docker.inspect(name)
        assert info["HostConfig"]["ReadonlyRootfs"] is True, name
        assert dev.exec(name, "id", "-u").stdout.strip() == b"10001"
        denied = dev.exec(name, "touch", "/opt/bem/written")
        assert denied.returncode != 0 and b"Read-only file system" in denied.stderr
        assert dev.exec(name, "touch", "/tmp/scratch").returncode == 0  # the tmpfs
    [compute] = dev.containers("compute-cluster")
    assert dev.exec(compute, "sh", "-c", "echo kept > /data/probe && rm /data/probe"
                    ).returncode == 0  # the named volume, owned by 10001


def guide_commands() -> list[str]:
    """The 'type this' column of docs/deployment.md's table of the guide's commands, but
    the rows marked as not run by the suite."""
    text = DOCS.read_text()
    table = text.split("<!-- guide-commands -->")[1].split("<!-- /guide-commands -->")[0]
    commands = []
    for row in table.strip().splitlines()[2:]:  # after the header and its rule
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]
        assert len(cells) == 3 and cells[1].startswith("`") and cells[1].endswith("`"), row
        if "not run by the suite" not in cells[2]:
            commands.append(cells[1].strip("`").replace("\\|", "|"))
    return commands


def test_the_guides_commands_work_as_docs_deployment_writes_them(dev: Stack) -> None:
    commands = guide_commands()
    assert len(commands) >= 10
    ports = {"8000": dev.env["GRAPHQL_HOST_PORT"], "8080": dev.env["DASHBOARD_HOST_PORT"]}
    for command in commands:
        # the one difference: the suite publishes the gateway on free ports
        line = re.sub(r"localhost:(8000|8080)", lambda m: f"127.0.0.1:{ports[m[1]]}", command)
        done = subprocess.run(["bash", "-c", f"set -o pipefail; {line}"], cwd=REPO,
                              capture_output=True, text=True, timeout=60,
                              env=dev.docker.env, check=False)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert done.stdout.strip(), f"{command} printed nothing"


async def test_memory_after_traffic(dev: Stack, figures: Figures) -> None:
    tally = Tally("containers_optimized_traffic")
    async with Load(dev.url("GRAPHQL_HOST_PORT"), traffic(), tally, concurrency=4,
                    max_requests=400):
        await until_sent(tally, 400, limit=120)
    assert tally.total("failed") == 0, tally.failures
    stats = dev.stats()
    figures.record("memory_optimized", stats,
                   "docker stats --no-stream (development profile, after 400 requests)",
                   note="the file's defaults: WORKERS=2 pool processes per cluster")
    assert set(stats) == {f"bem-{s}-1" for s in (*BEM_SERVICES, "redis-cache")}


# --- scaling and losing replicas -------------------------------------------------------------
def test_three_compute_replicas_share_the_load(dev: Stack, figures: Figures) -> None:
    dev.up("--scale", "compute-cluster=3", profile="development")
    wait_for(lambda: registered(dev, "sfde") == 3, 60, "3 sfde replicas registered")
    replicas = dev.containers("compute-cluster")
    assert len(replicas) == 3

    def counts() -> list[float]:
        return [metric_total(dev.get(name, 5003, "/metrics"), "bem_http_requests_total",
                             service="sfde", route="/evaluate") for name in replicas]

    before = counts()
    gateway = dev.url("GRAPHQL_HOST_PORT")
    with httpx.Client(base_url=gateway, timeout=30) as http:
        for i in range(150):
            answer = http.post("/sfde/evaluate", json={"formula": "simple_beam_udl",
                                                       "params": {"w": 10.0 + i, "L": 6.0}})
            assert answer.status_code == 200, answer.text
    served = [after - was for after, was in zip(counts(), before, strict=True)]
    figures.record("scale_balance", " / ".join(f"{n:.0f}" for n in served),
                   "docker compose ... --profile development up -d --wait --scale "
                   "compute-cluster=3; 150 POST /sfde/evaluate through the gateway",
                   note="each replica's own bem_http_requests_total")
    assert sum(served) == 150
    assert min(served) >= 20, served  # round-robin: about 50 each


async def test_a_replica_killed_under_load_fails_no_request(dev: Stack,
                                                            figures: Figures) -> None:
    victim = dev.containers("compute-cluster")[-1]
    tally = Tally("containers_replica_sigkill")
    async with Load(dev.url("GRAPHQL_HOST_PORT"), traffic(), tally, concurrency=6,
                    max_requests=2000):
        await until_sent(tally, 100, limit=120)
        with phase(tally, "killed"):
            dev.docker.run("kill", "--signal", "KILL", victim)
            await asyncio.sleep(EJECT_SECONDS + 1)  # the dead replica is tried again
        await until_sent(tally, 100, limit=120)
    tally.report()
    figures.record("replica_kill", f"{tally.total('failed')} of {tally.total()}",
                   "docker kill --signal KILL <one of 3 compute replicas>, 6 clients through "
                   "the gateway", note=f"{tally.total('ok', 'killed')} answered meanwhile")
    assert tally.total("failed") == 0, tally.failures
    assert tally.total("ok", "killed") > 0


def test_no_compute_replica_left_is_a_prompt_503(dev: Stack) -> None:
    dev.compose("stop", "compute-cluster", timeout=120)
    wait_for(lambda: registered(dev, "sfde") == 0, 30, "the replicas deregistered")
    time.sleep(1.5)  # the gateway's registry lookup (1 s) has seen it
    began = time.monotonic()
    status, body = http_json(dev.url("GRAPHQL_HOST_PORT") + "/sfde/formulas")
    elapsed = time.monotonic() - began
    assert status == 503, body
    assert "does not resolve" in body["message"], body
    assert elapsed < 5, f"{elapsed:.1f} s: waited on DNS"  # DNS alone took 10 s here
    dev.up("--scale", "compute-cluster=1", profile="development")
    wait_for(lambda: registered(dev, "sfde") == 1, 60, "compute back")


async def test_compose_stop_completes_the_requests_in_flight(dev: Stack,
                                                             figures: Figures) -> None:
    [compute] = dev.containers("compute-cluster")
    gateway = dev.url("GRAPHQL_HOST_PORT")
    async with httpx.AsyncClient(base_url=gateway, timeout=120) as http:
        jobs = [asyncio.create_task(http.post("/graph_runtime/analyze", json={
            "graph": wide_graph(5000 + i, n=1000, m=4000), "metrics": ["betweenness"]}))
            for i in range(3)]  # seconds of betweenness each
        await asyncio.to_thread(wait_for, lambda: metric_total(
            dev.get(compute, 5004, "/metrics"), "bem_http_requests_in_flight",
            service="graph_runtime") >= 4, 60, "3 analyses running")  # + this /metrics
        began = time.monotonic()
        running = sum(not job.done() for job in jobs)
        stopped = await asyncio.to_thread(dev.compose, "--profile", "development", "stop",
                                          check=False, timeout=120)
        seconds = time.monotonic() - began
        answers = await asyncio.gather(*jobs)
    assert running == 3, "the analyses ended before the stop: make them longer"
    codes = [a.status_code for a in answers]
    figures.record("compose_stop", f"exit {stopped.returncode} in {seconds:.1f} s",
                   "docker compose -f deploy/docker-compose.optimized.yml --profile "
                   "development stop",
                   note=f"{running} analyses in flight, answered {codes}; "
                        "stop_grace_period 30 s")
    assert stopped.returncode == 0, stopped.stderr.decode()
    assert seconds < 30
    assert codes == [200, 200, 200], [a.text[:300] for a in answers]
    states = {name: (state["Status"], state["ExitCode"])
              for service in BEM_SERVICES for name in dev.containers(service, stopped=True)
              for state in [dev.docker.inspect(name)[0]["State"]]}
    assert set(states.values()) == {("exited", 0)}, states  # drained, exited by themselves
