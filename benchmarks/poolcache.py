"""The compute pool and the two-level cache, on a CPU-heavy graph analysis.

The analysis: betweenness centrality (Brandes, O(V E) for an unweighted graph) of a seeded
random DAG whose estimated cost exceeds INLINE_BUDGET_MS, so graph_runtime sends it to the pool.

Every timed analysis asks a `top_k` never asked before: a new cache key, the same work.

- Pool: the same batch of concurrent analyses on a `bem serve graph_runtime` with WORKERS=1
  and on one with WORKERS=2; speed-up = wall time with 1 worker / with 2. The pool's task
  counter confirms that every analysis ran in the pool.
- Cache: two replicas A and B on the same Redis. Per key: A computes it (miss), A again
  (L1 hit), B, which never computed it (Redis hit: B's L1 cannot have it, Redis has A's
  result), B again (L1 hit). Each level is confirmed by the processes' own cache counters
  (/metrics), not assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import statistics
import time
from typing import Any

import httpx
from benchmarks.launch import Running, flush_cache, ready, start
from prometheus_client.parser import text_string_to_metric_families


def generated_graph(nodes: int, edges: int, seed: int = 7) -> dict[str, Any]:
    """A random DAG (edges only from a lower to a higher index), phases by position."""
    rnd = random.Random(seed)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < edges:
        a, b = sorted(rnd.sample(range(nodes), 2))
        pairs.add((a, b))
    phases = ("alpha", "beta", "gamma")
    return {"name": f"bench-{nodes}x{edges}",
            "nodes": [{"id": f"N{i:05d}", "phase": phases[3 * i // nodes]}
                      for i in range(nodes)],
            "edges": [{"source": f"N{a:05d}", "target": f"N{b:05d}",
                       "weight": round(rnd.uniform(1, 10), 2)} for a, b in sorted(pairs)]}


def store(running: Running, graph: dict[str, Any]) -> str:
    answer = httpx.post(running.url("graph_runtime") + "/graphs", json=graph, timeout=60)
    answer.raise_for_status()
    return str(answer.json()["graph_id"])


def analysis(gid: str, key: int) -> dict[str, Any]:
    return {"graph_id": gid, "metrics": ["betweenness"], "options": {"top_k": key}}


def counters(running: Running) -> dict[str, float]:
    """This process's pool and cache counters, from its own /metrics."""
    text = httpx.get(running.url("graph_runtime") + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "bem_cache_requests_total":
                out[f"{s.labels['level']}_{s.labels['result']}"] = s.value
            elif s.name == "bem_pool_task_duration_seconds_sum":
                out["pool_task_s"] = s.value  # time spent in the workers, all tasks
            elif s.name == "bem_pool_tasks_total":
                out[f"pool_{s.labels['outcome']}"] = s.value
            elif s.name == "bem_inline_tasks_total":
                out["inline"] = s.value
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    changed = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k)}
    return {k: int(v) if v.is_integer() else round(v, 3) for k, v in changed.items()}


async def _batch(running: Running, gid: str, keys: list[int]) -> float:
    url = running.url("graph_runtime") + "/analyze"
    async with httpx.AsyncClient(timeout=300) as http:
        start = time.perf_counter()
        answers = await asyncio.gather(*(http.post(url, json=analysis(gid, k)) for k in keys))
        elapsed = time.perf_counter() - start
    for answer in answers:
        answer.raise_for_status()
    return elapsed


def _timed_post(http: httpx.Client, running: Running, body: dict[str, Any]) -> float:
    start = time.perf_counter()
    http.post(running.url("graph_runtime") + "/analyze", json=body).raise_for_status()
    return (time.perf_counter() - start) * 1000


class Replicas:
    """Three graph_runtime processes on the run's Redis: WORKERS=1, and A and B with
    WORKERS=2, warmed up before anything is timed."""

    def __init__(self, redis_url: str, graph: dict[str, Any]) -> None:
        self.graph = graph
        self._stack = contextlib.ExitStack()
        flush_cache(redis_url)
        try:
            # Started together, then waited for: their imports overlap on the cores.
            self.one, self.a, self.b = [
                self._start(redis_url, name, workers)
                for name, workers in (("WORKERS=1", 1), ("A", 2), ("B", 2))]
            for running in (self.one, self.a, self.b):
                ready(running)
            self.gid = store(self.one, graph)
            self._keys = itertools.count(1000)  # every analysis gets a key never asked
            # Untimed: each process loads the graph into its store and each of its workers
            # runs one analysis, so no timed request pays a first-time cost.
            for running, workers in ((self.one, 1), (self.a, 2), (self.b, 2)):
                asyncio.run(_batch(running, self.gid,
                                   [next(self._keys) for _ in range(workers)]))
        except BaseException:
            self.close()
            raise

    def _start(self, redis_url: str, name: str, workers: int) -> Running:
        running = start(f"graph_runtime {name}", redis_url, targets=("graph_runtime",),
                        workers=workers)
        self._stack.callback(running.stop)
        return running

    def close(self) -> None:
        self._stack.close()

    def pool_batch(self, workers: int, concurrent: int) -> dict[str, Any]:
        """Wall time of `concurrent` cold analyses on the WORKERS=`workers` process."""
        running = self.one if workers == 1 else self.a
        before = counters(running)
        keys = [next(self._keys) for _ in range(concurrent)]
        wall = asyncio.run(_batch(running, self.gid, keys))
        seen = delta(counters(running), before)
        return {"workers": workers, "wall_s": round(wall, 3), "counters": seen,
                "all_in_pool": seen.get("pool_ok") == concurrent}

    def _levels(self, http: httpx.Client, key: int) -> list[tuple[str, float]]:
        body = analysis(self.gid, key)
        return [("miss", _timed_post(http, self.a, body)),
                ("l1_hit", _timed_post(http, self.a, body)),
                ("redis_hit", _timed_post(http, self.b, body)),
                ("l1_hit", _timed_post(http, self.b, body))]

    def cache_levels(self, keys: int) -> dict[str, Any]:
        """Per key: A computes (miss), A again (L1), B (Redis), B again (L1)."""
        times: dict[str, list[float]] = {"miss": [], "l1_hit": [], "redis_hit": []}
        with httpx.Client(timeout=300) as http:
            # One untimed key first: the first Redis hit of a process pays one-off costs.
            self._levels(http, next(self._keys))
            before_a, before_b = counters(self.a), counters(self.b)
            for _ in range(keys):
                for level, ms in self._levels(http, next(self._keys)):
                    times[level].append(ms)
        seen_a, seen_b = delta(counters(self.a), before_a), delta(counters(self.b), before_b)
        confirmed = (seen_a.get("redis_miss") == keys and seen_a.get("l1_hit") == keys
                     and seen_b.get("redis_hit") == keys and seen_b.get("l1_hit") == keys)
        med = {k: statistics.median(v) for k, v in times.items()}
        return {"analysis": "betweenness", "nodes": len(self.graph["nodes"]),
                "edges": len(self.graph["edges"]), "keys": keys,
                **{f"{k}_ms": round(v, 2) for k, v in med.items()},
                "miss_over_l1": round(med["miss"] / med["l1_hit"], 1),
                "miss_over_redis": round(med["miss"] / med["redis_hit"], 1),
                "levels_confirmed": confirmed, "counters": {"A": seen_a, "B": seen_b}}


def pool_speedup(runs: list[dict[str, Any]], concurrent: int,
                 graph: dict[str, Any]) -> dict[str, Any]:
    def median(key: str, workers: int) -> float:
        return statistics.median(r[key] for r in runs if r["workers"] == workers)

    for r in runs:
        r["task_s"] = r["counters"].get("pool_task_s", 0.0)
    wall = {w: median("wall_s", w) for w in (1, 2)}
    return {"analysis": "betweenness", "nodes": len(graph["nodes"]),
            "edges": len(graph["edges"]), "concurrent_requests": concurrent,
            "wall_s_workers_1": round(wall[1], 3), "wall_s_workers_2": round(wall[2], 3),
            "speedup": round(wall[1] / wall[2], 2),
            # Time inside the workers: if it grows with 2 workers, they did not get two
            # cores to themselves (a busy or SMT-shared machine).
            "task_s_workers_1": round(median("task_s", 1), 3),
            "task_s_workers_2": round(median("task_s", 2), 3),
            "all_in_pool": all(r["all_in_pool"] for r in runs), "runs": runs}
