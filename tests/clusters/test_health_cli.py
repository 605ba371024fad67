"""`bem health`: the HEALTHCHECK of the image."""

from __future__ import annotations

import asyncio
import json
import sys

from tests.support import free_port, run_cluster, url_of


async def bem(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bem", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_health_of_a_running_cluster() -> None:
    async with run_cluster("compute") as sup:
        code, out = await bem("health", url_of(sup, "sfde"))
        assert code == 0, out
        assert out.splitlines()[0].startswith("compute (")
        for service in ("dag_alpha", "sfde", "graph_runtime"):
            assert service in out
        code, out = await bem("health", "--json", url_of(sup, "graph_runtime"))
        assert code == 0 and json.loads(out)["cluster"] == "compute"


async def test_dashboard_port_reports_its_own_process() -> None:
    async with run_cluster("gateway") as sup:  # the other clusters are absent: platform fails
        code, out = await bem("health", url_of(sup, "dashboard"))
        assert code == 0, out
        assert out.splitlines()[0].startswith("gateway (")


async def test_unreachable_is_exit_1() -> None:
    code, out = await bem("health", f"http://127.0.0.1:{free_port()}", "--timeout", "1")
    assert code == 1 and "unreachable" in out
