"""What each layer of the gateway costs a routed request, without sockets or a load generator.

    .venv/bin/python benchmarks/gateway_layers.py [--requests 8000] [--rounds 5]

A `single` cluster of sfde and graphql in this process; `GET /sfde/formulas/roi` is sent to
the graphql app's ASGI callable (REST routing in-process, as `single` serves it) and
`GET /formulas/roi` to sfde's, and the process CPU time per request is the median of
`--rounds` alternating rounds. Then the same routed request with one middleware class at a
time made a pass-through: the difference is that layer's cost (the metrics, grace and
body-limit layers are on both apps, so their figure is for both; access and rate limiting is
the gateway's alone). Complements benchmarks/gateway.py, whose wrk figures include uvicorn.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from bem.gateway.access import AccessMiddleware
from bem.runtime.body_limit import BodyLimitMiddleware
from bem.runtime.grace import GraceExpiredMiddleware
from bem.runtime.metrics import MetricsMiddleware

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.support when run as a script

from tests.support import make_settings, run_cluster  # noqa: E402

LAYERS = {"access and rate limit (gateway)": AccessMiddleware,
          "request metrics (both apps)": MetricsMiddleware,
          "grace (both apps)": GraceExpiredMiddleware,
          "body limit (both apps)": BodyLimitMiddleware}


def scope(path: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2), "headers": [(b"host", b"bench"),
                                                    (b"user-agent", b"wrk")]}


async def cpu_per_request(app: Any, path: str, n: int) -> float:
    base = scope(path)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"{path} answered {message['status']}")

    start = time.process_time()
    for _ in range(n):
        await app({**base, "state": {}}, receive, send)
    return (time.process_time() - start) / n * 1e6


async def passthrough(self: Any, scope: Any, receive: Any, send: Any) -> None:
    await self.app(scope, receive, send)


async def measure(requests: int, rounds: int) -> dict[str, float]:
    settings = make_settings(rate_limit_rps=1_000_000, rate_limit_burst=1_000_000)
    async with run_cluster("single", settings, services=["sfde", "graphql"]) as sup:
        gateway = sup.runtime.contexts["graphql"].app
        sfde = sup.runtime.contexts["sfde"].app
        await cpu_per_request(gateway, "/sfde/formulas/roi", requests // 4)  # warm up
        runs: dict[str, list[float]] = {}
        for _ in range(rounds):
            runs.setdefault("sfde on its own", []).append(
                await cpu_per_request(sfde, "/formulas/roi", requests))
            runs.setdefault("routed through the gateway", []).append(
                await cpu_per_request(gateway, "/sfde/formulas/roi", requests))
            for label, cls in LAYERS.items():
                original = cls.__call__
                cls.__call__ = passthrough  # type: ignore[method-assign]
                try:
                    runs.setdefault(label, []).append(
                        await cpu_per_request(gateway, "/sfde/formulas/roi", requests))
                finally:
                    cls.__call__ = original  # type: ignore[method-assign]
        return {label: statistics.median(values) for label, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=8000, help="per case and round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median)")
    args = parser.parse_args()
    result = uvloop.run(measure(args.requests, args.rounds))
    routed = result["routed through the gateway"]
    print("| case | CPU us per request | layer's cost, us |")
    print("|---|---:|---:|")
    for label, value in result.items():
        cost = f"{routed - value:.1f}" if label in LAYERS else "-"
        print(f"| {label if label not in LAYERS else 'routed, without ' + label} "
              f"| {value:.1f} | {cost} |")
    print(f"\nthe gateway adds {routed - result['sfde on its own']:.1f} us of CPU in-process")


if __name__ == "__main__":
    main()
