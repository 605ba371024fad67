"""Tracing's CPU cost per request without sockets or a load generator: sfde's ASGI app
called in-process (`GET /formulas/roi`, one span per request when sampled), process CPU time
per request (exporter thread included) with tracing off, at 10 % and at 100 %, each twice,
alternating. Complements benchmarks/tracing.py, whose wrk figures move with machine load.

    .venv/bin/python benchmarks/tracing_asgi.py [--requests 5000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.otlp import otlp_receiver  # noqa: E402
from tests.support import make_settings, run_cluster  # noqa: E402

SAMPLERS = {"off": None, "10%": ("parentbased_traceidratio", 0.1),
            "100%": ("parentbased_always_on", None)}
SCOPE = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
         "scheme": "http", "path": "/formulas/roi", "raw_path": b"/formulas/roi",
         "query_string": b"", "root_path": "", "headers": [(b"host", b"sfde")],
         "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}


async def request(app: Any) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: Any) -> None:
        return None

    await app({**SCOPE, "state": {}}, receive, send)


async def cpu_per_request(mode: str, endpoint: str, n: int) -> float:
    sampler = SAMPLERS[mode]
    otel = {} if sampler is None else {"otel_exporter_otlp_endpoint": endpoint,
                                       "otel_traces_sampler": sampler[0],
                                       "otel_traces_sampler_arg": sampler[1]}
    async with run_cluster("single", make_settings(**otel), services=["sfde"]) as sup:
        app = sup.runtime.contexts["sfde"].app
        for _ in range(n // 10):
            await request(app)
        start = time.process_time()
        for _ in range(n):
            await request(app)
        return (time.process_time() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {m: [] for m in SAMPLERS}
    with otlp_receiver() as receiver:
        for _ in range(2):
            for mode in SAMPLERS:
                figures[mode].append(uvloop.run(cpu_per_request(mode, receiver.endpoint,
                                                                args.requests)))
    off = min(figures["off"])
    for mode, values in figures.items():
        print(f"{mode:5} {min(values):7.1f} us CPU per request (best of {len(values)}), "
              f"x{min(values) / off:.2f} of off")


if __name__ == "__main__":
    main()
