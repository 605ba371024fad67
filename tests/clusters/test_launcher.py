"""`bem up`: a whole topology as supervised child processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from bem.clusters import ALL_SERVICES, TOPOLOGIES, members
from tests.support import base_env, port_plan


def test_topologies_cover_every_service_exactly_once() -> None:
    for topology, targets in TOPOLOGIES.items():
        hosted = [svc for target in targets for svc in members(target)]
        assert sorted(hosted) == sorted(ALL_SERVICES), topology
    assert len(TOPOLOGIES["sprawl"]) == 9 and len(TOPOLOGIES["optimized"]) == 3


def read_until(proc: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen; output so far: {lines}")


@pytest.mark.parametrize("topology", ["optimized"])
def test_up_starts_supervises_and_stops_everything(topology: str) -> None:
    plan = port_plan()
    proc = subprocess.Popen([sys.executable, "-m", "bem", "up", "--topology", topology],
                            env=base_env(plan), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        lines = read_until(proc, "ports healthy", 90)
        assert sum(line.startswith("  healthy ") for line in lines) == 9
        children = psutil.Process(proc.pid).children()
        assert len(children) == len(TOPOLOGIES[topology])
        for svc, port in plan.items():
            assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200, svc

        # a child that dies is restarted
        victim = next(c for c in children if "logic" in " ".join(c.cmdline()))
        victim.kill()
        read_until(proc, "restart 1/5", 30)
        read_until(proc, "started logic", 30)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        for child in children:
            assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]


def test_a_killed_launcher_leaves_no_cluster_behind() -> None:
    plan = port_plan()
    proc = subprocess.Popen([sys.executable, "-m", "bem", "up"], env=base_env(plan),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        read_until(proc, "ports healthy", 90)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children
        proc.kill()  # SIGKILL: no chance to stop its children itself
        proc.wait(10)
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], [p.cmdline() for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
