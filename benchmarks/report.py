"""Turn a benchmark result into ratios, the guide's claims, a markdown table and a chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

TOPOLOGIES = ("sprawl", "optimized", "single")
MEMORY_CLAIM = (0.33, 0.50)  # the operations guide: optimized uses 33-50 % less memory
STARTUP_CLAIM = 0.60  # "60 % faster start-up", read as 60 % less time from launch to healthy


def _get(data: dict[str, Any], *path: str) -> float | None:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return float(data) if isinstance(data, int | float) and math.isfinite(data) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


# metric -> path inside a topology's result
COMPARED: dict[str, tuple[str, ...]] = {
    "pss_warm": ("memory", "warm", "pss_mb"),
    "pss_loaded": ("memory", "loaded", "pss_mb"),
    "rss_loaded": ("memory", "loaded", "rss_mb"),
    "startup": ("startup_s", "median"),
    "dag_run_p50": ("latency", "dag_run", "p50_ms"),
    "graphql_p50": ("latency", "graphql", "p50_ms"),
    "graphql_health_p50": ("latency", "graphql_health", "p50_ms"),
    "throughput": ("throughput", "rps"),
}


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    topo = result["topologies"]
    out: dict[str, Any] = {}
    for other in ("optimized", "single"):
        out[f"{other}/sprawl"] = {
            m: _ratio(_get(topo.get(other, {}), *p), _get(topo.get("sprawl", {}), *p))
            for m, p in COMPARED.items()}
    out["hop_http/in_process"] = _get(result, "hop", "http_over_in_process")
    out["pool_speedup_workers_2/1"] = _get(result, "pool", "speedup")
    out["cache_miss/l1_hit"] = _get(result, "cache", "miss_over_l1")
    out["cache_miss/redis_hit"] = _get(result, "cache", "miss_over_redis")
    return out


def _verdict_memory(saving: float) -> str:
    low, high = MEMORY_CLAIM
    if saving >= high:
        return "beats the claim"
    return "within the claim" if saving >= low else "misses the claim"


def _less_more(ratio: float) -> str:
    return f"{1 - ratio:.0%} less" if ratio <= 1 else f"{ratio - 1:.0%} more"


def claims(r: dict[str, Any]) -> list[str]:
    """One line per claim of the guide, with the measured figure and a verdict."""
    lines = []
    for other in ("optimized", "single"):
        pss = r[f"{other}/sprawl"]["pss_loaded"]
        if pss is not None:
            lines.append(f"memory: {other} uses {_less_more(pss)} PSS than sprawl after load "
                         f"(guide, optimized: 33-50 % less) - {_verdict_memory(1 - pss)}")
        start = r[f"{other}/sprawl"]["startup"]
        if start is not None:
            verdict = "meets the claim" if 1 - start >= STARTUP_CLAIM else "misses the claim"
            lines.append(f"start-up: {other} is healthy in {_less_more(start)} time than "
                         f"sprawl (guide, optimized: 60 % faster, read as 60 % less time) - "
                         f"{verdict}")
    return lines


# --- markdown ----------------------------------------------------------------------------
def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        value = f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return f"{value}{unit}"


def _latency_cell(lat: dict[str, Any] | None) -> str:
    if not lat:
        return "-"
    if "skipped" in lat:
        return "skipped"
    cell = f"{_fmt(lat['p50_ms'])} / {_fmt(lat['p95_ms'])} / {_fmt(lat['p99_ms'])}"
    return cell + (f" ({lat['errors']} errors)" if lat["errors"] else "")


def _throughput_cell(tp: dict[str, Any] | None) -> str:
    if not tp:
        return "-"
    if "skipped" in tp:
        return "skipped"
    return f"{_fmt(tp['rps'])} req/s ({tp['errors']} errors of {tp['requests']:,})"


def _row(label: str, cells: list[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def _topology_table(result: dict[str, Any]) -> list[str]:
    topo = [result["topologies"].get(t, {}) for t in TOPOLOGIES]
    p = result["params"]

    def mem(t: dict[str, Any], when: str, key: str) -> str:
        m = t.get("memory", {}).get(when)
        return f"{_fmt(m[key])} MB" if m else "-"

    def procs(t: dict[str, Any]) -> str:
        total = _get(t, "memory", "loaded", "processes")
        return f"{t.get('processes', '-')}" + (f" ({total:.0f})" if total else "")

    return [
        _row("", list(TOPOLOGIES)), _row("---", ["---"] * 3),
        _row("processes (with pool workers and forkservers)",
             [procs(t) for t in topo]),
        _row("PSS after warm-up", [mem(t, "warm", "pss_mb") for t in topo]),
        _row("PSS after load", [mem(t, "loaded", "pss_mb") for t in topo]),
        _row("RSS after load", [mem(t, "loaded", "rss_mb") for t in topo]),
        _row(f"start-up to every /health pass (median of {p['launches']})",
             [_fmt(_get(t, "startup_s", "median"), " s") for t in topo]),
        _row(f"dag_alpha POST /run, p50 / p95 / p99 ms (concurrency {p['concurrency']})",
             [_latency_cell(t.get("latency", {}).get("dag_run")) for t in topo]),
        _row(f"GraphQL, a field per backend service, p50 / p95 / p99 ms "
             f"(concurrency {p['concurrency']})",
             [_latency_cell(t.get("latency", {}).get("graphql")) for t in topo]),
        _row("GraphQL `health` (dashboard asks every process), p50 / p95 / p99 ms",
             [_latency_cell(t.get("latency", {}).get("graphql_health")) for t in topo]),
        _row(f"gateway throughput, mixed workload (concurrency {p['wrk_concurrency']}, "
             f"{p['wrk_seconds']} s)", [_throughput_cell(t.get("throughput")) for t in topo]),
    ]


def _extra_table(result: dict[str, Any]) -> list[str]:
    rows = ["| measurement | value |", "|---|---|"]
    pool, cache, hop = result.get("pool", {}), result.get("cache", {}), result.get("hop", {})
    if "speedup" in pool:
        rows.append(f"| pool: {pool['concurrent_requests']} concurrent betweenness analyses "
                    f"({pool['nodes']} nodes, {pool['edges']} edges), WORKERS=1 vs 2 | "
                    f"{pool['wall_s_workers_1']} s vs {pool['wall_s_workers_2']} s: "
                    f"speed-up {pool['speedup']}x (time inside the workers: "
                    f"{pool['task_s_workers_1']} s vs {pool['task_s_workers_2']} s)"
                    f"{'' if pool['all_in_pool'] else ' (NOT all ran in the pool)'} |")
    if "miss_ms" in cache:
        ok = "confirmed by the cache counters" if cache["levels_confirmed"] else \
            "NOT confirmed by the cache counters"
        rows.append(f"| cache: the same analysis as miss / L1 hit / Redis hit (median of "
                    f"{cache['keys']} keys) | {cache['miss_ms']} / {cache['l1_hit_ms']} / "
                    f"{cache['redis_hit_ms']} ms ({ok}) |")
    if "http" in hop:
        rows.append(f"| hop: graph_runtime get_graph in-process vs loopback HTTP, median "
                    f"(p99) | {hop['in_process']['median_us']} us "
                    f"({hop['in_process']['p99_us']}) vs {hop['http']['median_us']} us "
                    f"({hop['http']['p99_us']}): {hop['http_over_in_process']}x |")
    for name in ("pool", "cache", "hop"):
        if "skipped" in result.get(name, {}):
            rows.append(f"| {name} | skipped: {result[name]['skipped']} |")
    return rows


def _ratio_table(r: dict[str, Any]) -> list[str]:
    labels = {"pss_loaded": "PSS after load", "startup": "start-up time",
              "dag_run_p50": "dag_alpha /run p50", "graphql_p50": "GraphQL p50",
              "graphql_health_p50": "GraphQL health p50", "throughput": "gateway throughput"}
    rows = ["| ratio | optimized / sprawl | single / sprawl |", "|---|---|---|"]
    for key, label in labels.items():
        rows.append(f"| {label} | {_fmt(r['optimized/sprawl'][key])} | "
                    f"{_fmt(r['single/sprawl'][key])} |")
    return rows


def markdown(result: dict[str, Any]) -> str:
    m, p = result["machine"], result["params"]
    lines = [
        f"## Topology benchmark: {result['date']} on {m['host']}", "",
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['ram_gb']} GB RAM, "
        f"Python {m['python']}, {m['platform']}; load average {m['load_avg_start']} at the "
        f"start. Mode: {result['mode']} ({p['rounds']} round(s) over the three topologies, "
        f"{p['launches']} launches each, {result['duration_s']:.0f} s in all). "
        f"Command: `{result['command']}`.", "",
        "Every topology: " + ", ".join(f"{k.upper()}={v}" for k, v in
                                       result["settings"].items())
        + "; one private redis-server (appendonly, fsync every second) shared by the run.", "",
        *_topology_table(result), "",
        *_ratio_table(result["ratios"]), "",
        *[f"- {line}" for line in result["claims"]], "",
        *_extra_table(result),
    ]
    if result.get("skipped"):
        lines += ["", "Skipped (endpoint not there yet, or it refused the benchmark's "
                      "request):"]
        lines += [f"- `{k}`: {v}" for k, v in sorted(result["skipped"].items())]
    return "\n".join(lines) + "\n"


# --- chart -------------------------------------------------------------------------------
def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    r = result["ratios"]
    labels = {"pss_loaded": "memory (PSS)", "startup": "start-up time",
              "dag_run_p50": "dag_alpha /run p50", "graphql_p50": "GraphQL p50",
              "graphql_health_p50": "GraphQL health p50", "throughput": "throughput"}
    keys = [k for k in labels if r["optimized/sprawl"][k] is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8),
                                      gridspec_kw={"width_ratios": [3, 2]})
    height = 0.38
    for i, (name, color) in enumerate((("optimized", "#2a7ab0"), ("single", "#e08a1e"))):
        values = [r[f"{name}/sprawl"][k] or 0.0 for k in keys]
        ys = [j + (i - 0.5) * height for j in range(len(keys))]
        bars = left.barh(ys, values, height=height, color=color, label=f"{name} / sprawl")
        left.bar_label(bars, fmt="%.2f", padding=2, fontsize=8)
    left.axvline(1.0, color="black", linewidth=0.8)
    left.axvline(1 - MEMORY_CLAIM[0], color="grey", linestyle="--", linewidth=0.8)
    left.axvline(1 - STARTUP_CLAIM, color="grey", linestyle=":", linewidth=0.8)
    left.set_yticks(range(len(keys)), [labels[k] for k in keys])
    left.invert_yaxis()
    left.set_xlabel("ratio to sprawl (1.0 = same; guide: memory <= 0.67 dashed, "
                    "start-up <= 0.40 dotted)", fontsize=8)
    left.margins(x=0.15)  # room for the bar labels
    left.legend(fontsize=8, loc="best", framealpha=0.9)
    left.set_title("Topologies relative to sprawl (9 processes)", fontsize=10)

    extra = {"HTTP hop /\nin-process": r["hop_http/in_process"],
             "pool speed-up\nWORKERS 2/1": r["pool_speedup_workers_2/1"],
             "cache miss /\nL1 hit": r["cache_miss/l1_hit"],
             "cache miss /\nRedis hit": r["cache_miss/redis_hit"]}
    extra = {k: v for k, v in extra.items() if v is not None}
    bars = right.bar(list(extra), list(extra.values()), color="#5a9e6f")
    right.bar_label(bars, fmt="%.1fx", fontsize=8)
    right.set_yscale("log")
    right.tick_params(axis="x", labelsize=8)
    right.set_title("Hop, pool and cache (log scale)", fontsize=10)
    m = result["machine"]
    fig.suptitle(f"BEM topology benchmark, {result['date'][:10]}, {m['host']}: {m['cpus']} "
                 f"CPUs, {m['ram_gb']} GB, Python {m['python']} ({result['mode']})",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
