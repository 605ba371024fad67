"""What the first request of each kind pays now that no process imports its compute
modules (NumPy, HiGHS, jsonschema) before it is ready: it imports them in a thread once ready.

    .venv/bin/python benchmarks/first_requests.py [--repeat 3] [--settle 0]

The optimized topology is launched (launch.SETTINGS, a private redis-server) and, `--settle`
seconds after every port is healthy, each backend is sent, straight to its port, one kind of
request: the first after start-up, then five more of the same kind, each on new data (a
fresh sample copy, another budget, ...) so that no answer comes from a cache. Printed per
kind: the first request's time, the median of the next five, and the difference (what the
first pays), medians over `--repeat` launches. With no settling time a first request can
meet its module still being imported in the background and wait for it; with a second or
two, the imports are done.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.launch import flush_all, launch, private_redis
from benchmarks.load import BEAM, SELECT_PROBLEM, sample_variant

# (label, service, path, body of the i-th request)
KINDS: tuple[tuple[str, str, str, Callable[[int], dict[str, Any]]], ...] = (
    ("dag_alpha POST /run (sfde's formulas: NumPy)", "dag_alpha", "/run",
     lambda i: {"graph": sample_variant(i)}),
    ("graph_runtime POST /analyze summary, pagerank (kernels: NumPy, rustworkx)",
     "graph_runtime", "/analyze",
     lambda i: {"graph": sample_variant(1000 + i), "metrics": ["summary", "pagerank"]}),
    ("sfde POST /evaluate", "sfde", "/evaluate",
     lambda i: {"formula": "simple_beam_udl", "params": {**BEAM, "w": BEAM["w"] + i}}),
    ("optimization POST /select (HiGHS)", "optimization", "/select",
     lambda i: {**SELECT_PROBLEM, "budget": SELECT_PROBLEM["budget"] + i}),
    ("functor_types POST /validate (jsonschema)", "functor_types", "/validate",
     lambda i: {"components": [{"id": f"c{i}", "functor_type": "stateless_spatial"}]}),
)
LATER = 5


def one_launch(redis_url: str, settle: float) -> dict[str, tuple[float, float]]:
    flush_all(redis_url)
    running = launch("optimized", redis_url)
    out = {}
    try:
        time.sleep(settle)
        with httpx.Client(timeout=60) as http:
            for label, service, path, body in KINDS:
                times = []
                for i in range(1 + LATER):
                    began = time.perf_counter()
                    http.post(running.url(service) + path, json=body(i)).raise_for_status()
                    times.append(time.perf_counter() - began)
                out[label] = (times[0], statistics.median(times[1:]))
    finally:
        running.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="launches of the topology")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds between every port healthy and the first request")
    args = parser.parse_args()
    with private_redis() as redis:
        runs = [one_launch(redis.url, args.settle) for _ in range(args.repeat)]
    print(f"| request (optimized, {args.settle:g} s after healthy, median of {args.repeat} "
          f"launches) | first ms | later ms "
          f"| the first pays ms |\n|---|---:|---:|---:|")
    for label, *_ in KINDS:
        first = statistics.median(r[label][0] for r in runs) * 1000
        later = statistics.median(r[label][1] for r in runs) * 1000
        print(f"| {label} | {first:.1f} | {later:.1f} | {first - later:.1f} |")


if __name__ == "__main__":
    main()
