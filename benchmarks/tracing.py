"""What tracing costs: gateway throughput with tracing off, at 10 % sampling and at 100 %,
side by side in one run.

    .venv/bin/python benchmarks/tracing.py [--seconds 8] [--connections 32] [--rounds 2]

Three `single` processes run at once, the same settings but for the OTEL_* variables: off
(none set), `parentbased_traceidratio` 0.1 and `parentbased_always_on`, both exporting over
OTLP/HTTP to a real receiver (tests/otlp.py, in this process, decoding every batch). Each
case is loaded by wrk in interleaved rounds (benchmarks/gateway.py's `measure`: the median
round, the server CPU time per request), so the three modes meet the same machine
conditions. Cases: sfde `GET /formulas/roi` on its own port (one span), the same through the
gateway's REST routing (two), and the formula through `POST /graphql` (the request, the
resolver, the service call and the callee's span: four). Spans the processes dropped (a
full queue) are read from their /metrics and reported.

Writes benchmarks/results/tracing-<date>-<host>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gateway import (  # noqa: E402
    FORMULA_PATH,
    FORMULA_QUERY,
    UNLIMITED,
    measure,
    wrk_binary,
)
from tests.otlp import otlp_receiver  # noqa: E402
from tests.support import Topology, metric_total  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODES = {"off": {},
         "10%": {"otel_traces_sampler": "parentbased_traceidratio",
                 "otel_traces_sampler_arg": "0.1"},
         "100%": {"otel_traces_sampler": "parentbased_always_on"}}
CASE_TEXT = {"backend": "sfde `GET /formulas/roi` on its own port",
             "rest": "the same through gateway REST routing",
             "graphql": "the same formula through `POST /graphql`"}


def cases(topo: Topology, mode: str) -> list[dict[str, Any]]:
    gateway = topo.url("graphql")
    return [{"case": "backend", "topology": mode, "url": topo.url("sfde") + FORMULA_PATH},
            {"case": "rest", "topology": mode, "url": gateway + "/sfde" + FORMULA_PATH},
            {"case": "graphql", "topology": mode, "url": gateway + "/graphql",
             "method": "POST", "body": json.dumps({"query": FORMULA_QUERY})}]


def table(results: list[dict[str, Any]]) -> str:
    off = {r["case"]: r for r in results if r["topology"] == "off"}
    rows = ["| request | tracing | req/s | vs off | server CPU ms/req | CPU vs off | p50 ms "
            "| p99 ms | errors |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for case in CASE_TEXT:
        for r in (r for r in results if r["case"] == case):
            base = off[case]
            rows.append(
                f"| {CASE_TEXT[case]} | {r['topology']} | {r['rps']:.0f} | "
                f"{r['rps'] / base['rps']:.2f} | {r['cpu_ms_per_request']:.3f} | "
                f"{r['cpu_ms_per_request'] / base['cpu_ms_per_request']:.2f} | "
                f"{r['p50_ms']} | {r['p99_ms']} | {r['non_2xx'] + r['socket_errors']} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8, help="per case and round")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (median)")
    args = parser.parse_args()
    wrk_binary()
    with otlp_receiver() as receiver, ExitStack() as stack:
        topologies = {}
        for mode, env in MODES.items():
            print(f"{mode}: starting single ...", flush=True)
            otel = {"otel_exporter_otlp_endpoint": receiver.endpoint, **env} if env else {}
            topologies[mode] = stack.enter_context(Topology(["single"], **UNLIMITED, **otel))
        servers = [t["single"].process.pid for t in topologies.values()]  # type: ignore[union-attr]
        all_cases = [c for mode, topo in topologies.items() for c in cases(topo, mode)]
        results = measure(all_cases, args.seconds, args.connections, args.rounds, servers)
        dropped = {mode: metric_total(httpx.get(topo.url("sfde") + "/metrics").text,
                                      "bem_trace_spans_dropped_total")
                   for mode, topo in topologies.items() if mode != "off"}
    report = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "host": socket.gethostname(), "machine": platform.machine(),
              "cpus": os.cpu_count(), "python": platform.python_version(),
              "settings": {"seconds": args.seconds, "connections": args.connections,
                           "rounds": args.rounds, "wrk_threads": 1},
              "spans_received": len(receiver.spans), "spans_dropped": dropped,
              "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"tracing-{dt.date.today().isoformat()}-{socket.gethostname()}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = table(results)
    (RESULTS / f"{stem}.md").write_text(
        f"Tracing overhead, {report['date']}, {report['host']} ({report['cpus']} CPUs), "
        f"wrk -t1 -c{args.connections}, {args.seconds} s x {args.rounds} rounds (median "
        f"round). Command: `.venv/bin/python benchmarks/tracing.py --seconds {args.seconds} "
        f"--connections {args.connections} --rounds {args.rounds}`. Spans received by the "
        f"OTLP receiver: {len(receiver.spans)}; dropped by the processes: {dropped}.\n\n"
        f"{text}\n")
    print(text)
    print(f"spans received {len(receiver.spans)}, dropped {dropped}")
    print(f"written: benchmarks/results/{stem}.json and .md")


if __name__ == "__main__":
    main()
