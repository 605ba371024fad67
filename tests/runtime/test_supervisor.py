"""The supervisor as operators meet it: real `bem serve` processes and signals."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from tests.support import ClusterProcess, base_env, metric_total, port_plan


def big_graph(seed: int, n: int = 1500, m: int = 6000) -> dict[str, object]:
    rng = random.Random(seed)
    nodes = [{"id": f"n{i}"} for i in range(n)]
    edges = [{"source": f"n{rng.randrange(n)}", "target": f"n{rng.randrange(n)}",
              "weight": rng.random()} for _ in range(m)]
    return {"nodes": nodes, "edges": edges}


def in_flight(metrics: str, service: str) -> float:
    return metric_total(metrics, "bem_http_requests_in_flight", service=service)


async def test_sigterm_drains_in_flight_requests_then_exits_0() -> None:
    plan = port_plan()
    env = base_env(plan, workers=2, inline_budget_ms=0, grace_period=120)
    proc = ClusterProcess("graph_runtime", env, plan).start().wait_ready()
    url = proc.url("graph_runtime")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            jobs = [asyncio.create_task(http.post("/analyze", json={
                "graph": big_graph(seed), "metrics": ["betweenness", "closeness"]}))
                for seed in range(4)]
            while in_flight((await http.get("/metrics")).text, "graph_runtime") < 5:
                await asyncio.sleep(0.02)  # 4 analyses + this /metrics request
            proc.signal(signal.SIGTERM)
            answers = await asyncio.gather(*jobs)
        assert [a.status_code for a in answers] == [200] * 4
        assert all(len(a.json()["results"]["betweenness"]) == 1500 for a in answers)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as http:
                await http.get(url + "/health/live")
        assert "stopped in" in proc.output()
    finally:
        proc.cleanup()


async def test_sigterm_to_the_whole_process_group_still_drains() -> None:
    """Ctrl-C in a terminal signals every process of the group, pool workers included."""
    plan = port_plan()
    env = base_env(plan, workers=1, inline_budget_ms=0, grace_period=120)
    proc = ClusterProcess("graph_runtime", env, plan).start().wait_ready()
    try:
        async with httpx.AsyncClient(base_url=proc.url("graph_runtime"), timeout=60) as http:
            job = asyncio.create_task(http.post("/analyze", json={
                "graph": big_graph(1), "metrics": ["betweenness"]}))
            while in_flight((await http.get("/metrics")).text, "graph_runtime") < 2:
                await asyncio.sleep(0.02)
            os.killpg(proc.process.pid, signal.SIGTERM)  # type: ignore[union-attr]
            answer = await job
        assert answer.status_code == 200, answer.text
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        proc.cleanup()


async def test_requests_cut_by_the_grace_period_get_503() -> None:
    plan = port_plan()
    env = base_env(plan, workers=1, inline_budget_ms=0, grace_period=0)
    proc = ClusterProcess("graph_runtime", env, plan).start().wait_ready()
    try:
        async with httpx.AsyncClient(base_url=proc.url("graph_runtime"), timeout=60) as http:
            job = asyncio.create_task(http.post("/analyze", json={
                "graph": big_graph(0, n=2500, m=10000), "metrics": ["betweenness"]}))
            while in_flight((await http.get("/metrics")).text, "graph_runtime") < 2:
                await asyncio.sleep(0.02)
            proc.signal(signal.SIGTERM)
            answer = await job
        assert answer.status_code == 503, answer.text
        assert "GRACE_PERIOD" in answer.json()["message"] and answer.headers["retry-after"]
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        proc.cleanup()


# A cluster whose shutdown cannot finish: sfde with a lifespan hook that blocks the event
# loop on the way out (as a stuck C call or a deadlocked library would).
STUCK_SHUTDOWN = """
import asyncio, os, signal, time
from bem.runtime import supervisor
from bem.services import spec
from tests.support import make_settings
from bem.clusters import PLACEMENT

supervisor.STOP_MARGIN = 1.0
sfde = spec("sfde")

@sfde.lifespan
async def stuck(_ctx):
    yield
    time.sleep(120)

async def main():
    sup = supervisor.Supervisor(make_settings(grace_period=0.5), "sfde", [sfde], PLACEMENT)
    asyncio.get_running_loop().call_later(1.0, os.kill, os.getpid(), signal.SIGTERM)
    return await sup.run()

raise SystemExit(asyncio.run(main()))
"""


def test_a_stuck_shutdown_is_cut_by_the_watchdog_with_stacks() -> None:
    done = subprocess.run([sys.executable, "-c", STUCK_SHUTDOWN], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "shutdown still running 1s after the grace period" in done.stderr
    assert "in stuck" in done.stderr  # the stack names where it is stuck


def test_port_in_use_is_one_clear_line_and_nothing_is_left() -> None:
    plan = port_plan()
    blocker = socket.create_server(("127.0.0.1", plan["sfde"]))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bem", "serve", "compute"], env=base_env(plan),
            capture_output=True, text=True, timeout=60, start_new_session=True)
    finally:
        blocker.close()
    assert proc.returncode == 3
    errors = [line for line in proc.stderr.splitlines() if "cannot bind" in line]
    assert errors == [f"bem serve compute: cannot bind sfde on 127.0.0.1:{plan['sfde']}: "
                      f"Address already in use"]
    for svc in ("dag_alpha", "graph_runtime"):  # bound before sfde failed, released since
        with socket.create_server(("127.0.0.1", plan[svc])):
            pass


def test_bad_setting_names_the_variable() -> None:
    plan = port_plan()
    proc = subprocess.run([sys.executable, "-m", "bem", "serve", "compute"],
                          env={**base_env(plan), "WORKERS": "lots", "CACHE_SIZE": "12 parsecs"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "invalid setting WORKERS (got 'lots')" in proc.stderr
    assert "invalid setting CACHE_SIZE (got '12 parsecs')" in proc.stderr


def test_unknown_cluster_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "bem", "serve", "mainframe"],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert proc.returncode == 2 and "choose one of: compute, logic" in proc.stderr


def test_compute_is_one_process_on_three_ports() -> None:
    plan = port_plan()
    proc = ClusterProcess("compute", base_env(plan), plan).start().wait_ready()
    try:
        pids = {httpx.get(proc.url(s) + "/cluster-health").json()["pid"]
                for s in ("dag_alpha", "sfde", "graph_runtime")}
        assert pids == {proc.process.pid}  # type: ignore[union-attr]
    finally:
        proc.cleanup()
