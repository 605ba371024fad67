"""Time POST /select on seeded instances through a real in-loop cluster (one pool worker).

    .venv/bin/python -m tests.services.optimization.bench_select typical 10x10 200x20 1000x50
    .venv/bin/python -m tests.services.optimization.bench_select knapsack 30x6 60x10

Not a test (speed is never asserted): the measurement behind docs/optimization.md.
"""

from __future__ import annotations

import asyncio
import sys
import time

import httpx

from tests.services.optimization.instances import instance, knapsack
from tests.support import make_settings, run_cluster, url_of

KINDS = {"typical": instance, "knapsack": knapsack}


async def main(kind: str, sizes: list[str]) -> None:
    make = KINDS[kind]
    async with run_cluster("optimization", make_settings(request_timeout=120)) as sup, \
            httpx.AsyncClient(base_url=url_of(sup, "optimization"), timeout=300) as http:
        for size in sizes:
            components, options = map(int, size.split("x"))
            body = {**make(7, components, options), "mip_gap": 1e-4, "time_limit": 110}
            start = time.perf_counter()
            r = await http.post("/select", json=body)
            wall = time.perf_counter() - start
            answer = r.json()
            print(f"{kind} {size} = {components * options} binaries: HTTP {r.status_code} "
                  f"{answer.get('status') or answer.get('error')}, HiGHS "
                  f"{answer.get('solve_seconds', 0):.2f} s, request {wall:.2f} s, "
                  f"nodes {answer.get('nodes')}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
