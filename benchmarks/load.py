"""The requests a benchmark sends, and the two ways it sends them.

- `latency`: httpx async clients at a fixed concurrency; every answer is checked (status,
  and no `errors` in a GraphQL answer); percentiles of the good ones, the bad ones counted.
- `throughput`: wrk (C, epoll) with a Lua script cycling through a mixed workload, so the
  load generator takes little of the CPU the servers need on a small machine; answers
  counted by status, GraphQL errors and socket errors.

Several services are still being built. A request whose endpoint is not there yet is found
by a probe before timing and reported as skipped with the reason, never timed as an error.
The workload is planned once per run and reused unchanged for every topology, so all of
them serve the same mix.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from benchmarks.hop import percentile
from benchmarks.launch import Running

from bem.data import sample_project

GRAPHQL_ERROR = '"errors":[{"message"'  # how a GraphQL answer with errors starts a list
BEAM = {"w": 12.5, "L": 8.0}  # kN/m over m: M = w L^2 / 8 = 100 kN m


@dataclass(frozen=True)
class Call:
    """One HTTP request: to which service's port, method, path, JSON body."""

    name: str
    service: str
    method: str
    path: str
    body: Any = None

    def send(self, http: httpx.AsyncClient | httpx.Client, running: Running) -> Any:
        return http.request(self.method, running.url(self.service) + self.path,
                            json=self.body)


def problem(response: httpx.Response) -> str | None:
    """Why an answer is not a success, or None."""
    if not response.is_success:
        return f"{response.status_code} {response.text[:160]}"
    if response.request.url.path.endswith("/graphql") and GRAPHQL_ERROR in response.text:
        return "GraphQL errors: " + response.text[:200]
    return None


# --- the workload ------------------------------------------------------------------------
# The documented example of optimization POST /select (SelectRequest), with explicit weights
# in place of its agent coefficients: two components, a budget.
SELECT_PROBLEM = {
    "components": [
        {"id": "V01", "options": [
            {"id": "concrete", "cost": 42000, "scores": {"material": 0.7, "cost": 0.8}},
            {"id": "steel", "cost": 61000, "scores": {"material": 0.9, "cost": 0.5}}]},
        {"id": "V02", "options": [
            {"id": "timber", "cost": 30000, "scores": {"material": 0.6, "cost": 0.9}},
            {"id": "steel", "cost": 45000, "scores": {"material": 0.9, "cost": 0.6}}]}],
    "budget": 90000,
    "weights": {"material": 0.6, "cost": 0.4}}

# GraphQL fields, one per backend service: (service, field text, variables it uses). A field
# whose type is an object is asked for `{ __typename }` when it has no selection here: its
# resolver, the backend call, runs whatever is selected.
GRAPHQL_FIELDS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("graph_runtime", "analyze(graphId: $gid, metrics: [summary, critical_path]) "
                      "{ summary { nodes edges } criticalPath { length } }", {"gid": "ID!"}),
    ("sfde", "evaluateExpression(expression: \"w * L**2 / 8\", variables: $beam) { value }",
     {"beam": "JSON!"}),
    ("functor_types", "functorTypes", {}),
    ("dag_alpha", "dagRun(graphId: $gid)", {"gid": "ID!"}),
    ("callback_engine", "eventStats", {}),
    ("optimization", "selectOptions(problem: $problem)", {"problem": "JSON!"}),
)
HEALTH_FIELD = ("dashboard", "health { status clusters { name status } }", {})
NEEDS_SELECTION = "must have a selection of subfields"


def graphql_call(name: str, fields: list[tuple[str, str, dict[str, str]]],
                 gid: str) -> Call:
    """One query selecting `fields`, declaring only the variables they use."""
    declared = {k: v for _, _, uses in fields for k, v in uses.items()}
    values = {"gid": gid, "beam": BEAM, "problem": SELECT_PROBLEM}
    header = ", ".join(f"${k}: {t}" for k, t in declared.items())
    query = (f"query Bench{'(' + header + ')' if header else ''} "
             f"{{ {' '.join(text for _, text, _ in fields)} }}")
    return Call(name, "graphql", "POST", "/graphql",
                {"query": query, "variables": {k: values[k] for k in declared}})


def mixed_calls(gid: str) -> list[Call]:
    """The throughput mix, all through the gateway's REST routing and /graphql. Repeated
    requests: after the first, analyses and DAG runs are answered from the cache."""
    small_query = graphql_call("mix.graphql", [GRAPHQL_FIELDS[0], GRAPHQL_FIELDS[1]], gid)
    return [
        Call("mix.get_graph", "graphql", "GET", f"/graph_runtime/graphs/{gid}"),
        Call("mix.analyze_cached", "graphql", "POST", "/graph_runtime/analyze",
             {"graph_id": gid, "metrics": ["summary", "pagerank"]}),
        Call("mix.sfde_evaluate", "graphql", "POST", "/sfde/evaluate",
             {"formula": "simple_beam_udl", "params": BEAM}),
        Call("mix.sfde_expression", "graphql", "POST", "/sfde/expressions",
             {"expression": "w * L**2 / 8", "variables": {"w": 12.5, "L": [4.0, 6.0, 8.0]}}),
        Call("mix.event_stats", "graphql", "GET", "/callback_engine/stats"),
        Call("mix.functor_types", "graphql", "GET", "/functor_types/types"),
        Call("mix.dag_run_cached", "graphql", "POST", "/dag_alpha/run", {"graph_id": gid}),
        small_query,
    ]


def sample_variant(i: int) -> dict[str, Any]:
    """The sample project under another name: the same work, but its own content id, so
    neither dag_alpha's run cache nor graph_runtime's analysis cache has it yet."""
    graph = sample_project()
    graph["name"] = f"{graph.get('name') or 'sample'} (benchmark copy {i})"
    return graph


@dataclass
class Workload:
    """What this run sends, decided by probing the first topology; `skipped` says why not.

    Latency series send each request once with a fresh copy of the sample project (see
    `sample_variant`), so every DAG run does its full cross-service work.
    """

    gid: str
    copies: int  # sample copies per latency series (warm-up included)
    dag_run: bool
    graphql_fields: list[tuple[str, str, dict[str, str]]]
    health: bool
    mix: list[Call]
    skipped: dict[str, str] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)  # stored: the sample, then its copies

    def copy_ids(self, series: int) -> list[str]:
        first = 1 + series * self.copies  # ids[0] is the sample itself
        return self.ids[first:first + self.copies]

    def series(self) -> dict[str, list[Call]]:
        """Latency series name -> its requests, in order (the first ones are warm-up)."""
        out: dict[str, list[Call]] = {}
        if self.dag_run:
            out["dag_run"] = [Call("dag_run", "dag_alpha", "POST", "/run", {"graph_id": g})
                              for g in self.copy_ids(0)]
        if self.graphql_fields:
            out["graphql"] = [graphql_call("graphql", self.graphql_fields, g)
                              for g in self.copy_ids(1)]
        if self.health:
            out["graphql_health"] = [graphql_call("graphql_health", [HEALTH_FIELD], "")
                                     ] * self.copies
        return out

    def prepare(self, running: Running) -> None:
        """Store the sample and its copies in a freshly started topology (content-addressed:
        the same ids in every topology)."""
        graphs = [sample_project()] + [sample_variant(i) for i in range(2 * self.copies)]
        ids = asyncio.run(_store_all(running, graphs))
        if self.ids and ids != self.ids:
            raise RuntimeError("the sample graphs' content ids differ between topologies")
        self.ids = ids


async def _store_all(running: Running, graphs: list[dict[str, Any]]) -> list[str]:
    url = running.url("graph_runtime") + "/graphs"
    gate = asyncio.Semaphore(8)
    async with httpx.AsyncClient(timeout=60) as http:
        async def one(graph: dict[str, Any]) -> str:
            async with gate:
                answer = await http.post(url, json=graph)
            answer.raise_for_status()
            return str(answer.json()["graph_id"])

        return list(await asyncio.gather(*(one(g) for g in graphs)))


def plan_workload(running: Running, copies: int) -> Workload:
    """Probe every request once on a running topology; keep those that answer."""
    gid = asyncio.run(_store_all(running, [sample_project()]))[0]
    skipped: dict[str, str] = {}
    with httpx.Client(timeout=60) as http:
        def works(call: Call) -> bool:
            why = problem(call.send(http, running))
            if why is not None:
                skipped[call.name] = why
            return why is None

        dag = works(Call("dag_run", "dag_alpha", "POST", "/run", {"graph_id": gid}))
        fields = [f for f in (_graphql_field(http, running, f, gid, skipped)
                                        for f in GRAPHQL_FIELDS)
                  if f is not None]
        if not fields:
            skipped["graphql"] = "no GraphQL field of any backend service answers yet"
        health = works(graphql_call("graphql_health", [HEALTH_FIELD], gid))
        mix = [c for c in mixed_calls(gid) if works(c)]
    workload = Workload(gid, copies, dag, fields, health, mix, skipped)
    workload.prepare(running)
    return workload


def _graphql_field(http: httpx.Client, running: Running,
                   spec: tuple[str, str, dict[str, str]], gid: str,
                   skipped: dict[str, str]) -> tuple[str, str, dict[str, str]] | None:
    """The field as written, or with `{ __typename }` if its type turned out to be an
    object; None (and the reason in `skipped`) when its service does not answer it."""
    service, text, uses = spec
    why = problem(graphql_call("probe", [spec], gid).send(http, running))
    if why is not None and NEEDS_SELECTION in why:
        spec = (service, text + " { __typename }", uses)
        why = problem(graphql_call("probe", [spec], gid).send(http, running))
    if why is None:
        return spec
    skipped[f"graphql.{service}"] = why
    return None


# --- latency at fixed concurrency --------------------------------------------------------
@dataclass
class Samples:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, other: Samples) -> None:
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors
        self.examples = (self.examples + other.examples)[:3]

    def summary(self, concurrency: int) -> dict[str, Any]:
        lat = self.latencies_ms
        out: dict[str, Any] = {"requests": len(lat) + self.errors, "errors": self.errors,
                               "concurrency": concurrency}
        for q in (50, 95, 99):  # None when every request failed: no latency to report
            out[f"p{q}_ms"] = round(percentile(lat, q / 100), 2) if lat else None
        out["mean_ms"] = round(sum(lat) / len(lat), 2) if lat else None
        if self.examples:
            out["error_examples"] = self.examples
        return out


async def latency(running: Running, calls: list[Call], concurrency: int,
                  warmup: int) -> Samples:
    """Send `calls` in order, `concurrency` at a time; time each answer after the first
    `warmup` ones."""
    samples = Samples()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        for call in calls[:warmup]:
            await call.send(http, running)
        queue = iter(calls[warmup:])

        async def worker() -> None:
            for call in queue:  # shared iterator: each request is sent once
                start = time.perf_counter()
                try:
                    why = problem(await call.send(http, running))
                except httpx.HTTPError as exc:
                    why = f"{type(exc).__name__}: {exc}"
                elapsed = (time.perf_counter() - start) * 1000
                if why is None:
                    samples.latencies_ms.append(elapsed)
                else:
                    samples.errors += 1
                    if len(samples.examples) < 3:
                        samples.examples.append(why)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


# --- throughput with wrk -----------------------------------------------------------------
WRK_SCRIPT = r"""
local requests = {%(requests)s}
local prepared, n, threads = {}, 0, {}
statuses, graphql_errors = {}, 0

function setup(thread) table.insert(threads, thread) end

function init(args)
  for i, r in ipairs(requests) do
    local headers = {}
    if r[3] then headers["Content-Type"] = "application/json" end
    prepared[i] = wrk.format(r[1], r[2], headers, r[3])
  end
end

function request()
  n = n %% #prepared + 1
  return prepared[n]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 and string.find(body, '%(gql_error)s', 1, true) then
    graphql_errors = graphql_errors + 1
  end
end

function done(summary, latency, requests)
  local merged, gql, parts = {}, 0, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do merged[k] = (merged[k] or 0) + v end
    gql = gql + t:get("graphql_errors")
  end
  for k, v in pairs(merged) do table.insert(parts, string.format('"%%d":%%d', k, v)) end
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests":%%d,"duration_us":%%d,"connect":%%d,' ..
    '"read":%%d,"write":%%d,"timeout":%%d,"status_errors":%%d,"graphql_errors":%%d,' ..
    '"statuses":{%%s},"p50_us":%%d,"p99_us":%%d}\n', summary.requests, summary.duration,
    e.connect, e.read, e.write, e.timeout, e.status, gql, table.concat(parts, ","),
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua_request(call: Call) -> str:
    body = "nil" if call.body is None else f"[==[{json.dumps(call.body)}]==]"
    return f'{{"{call.method}", [==[{call.path}]==], {body}}}'


def wrk_script(calls: list[Call]) -> str:
    return WRK_SCRIPT % {"requests": ", ".join(_lua_request(c) for c in calls),
                         "gql_error": GRAPHQL_ERROR}


def throughput(running: Running, calls: list[Call], seconds: float,
               concurrency: int) -> dict[str, Any]:
    """Requests per second through the gateway for `calls` in turn, errors counted."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"skipped": "wrk is not installed (apt-get install -y wrk)"}
    if not calls:
        return {"skipped": "no request of the mix answers yet"}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bem-bench-") as script:
        script.write(wrk_script(calls))
        script.flush()
        # One thread: wrk's event loop needs a fraction of a core for Python servers' rates,
        # and every core it does not take is left to the servers being measured.
        out = subprocess.run(
            [wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
             "-s", script.name, running.url("graphql")],
            capture_output=True, text=True, timeout=seconds + 120, check=False)
    match = re.search(r"^BENCH_JSON (.*)$", out.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}{out.stderr}")
    raw = json.loads(match.group(1))
    socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    errors = raw["status_errors"] + raw["graphql_errors"] + socket_errors
    return {"rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
            "requests": raw["requests"], "errors": errors, "concurrency": concurrency,
            "seconds": round(raw["duration_us"] / 1e6, 1), "statuses": raw["statuses"],
            "graphql_errors": raw["graphql_errors"], "socket_errors": socket_errors,
            "p50_ms": round(raw["p50_us"] / 1000, 2), "p99_ms": round(raw["p99_us"] / 1000, 2),
            "mix": [c.name for c in calls]}
