"""Where the memory and the start-up time of the `single` topology go.

    .venv/bin/python benchmarks/imports.py [--json FILE]

1. Memory and time by import. A fresh interpreter imports the stack layer by layer, in the
   order a `bem serve single` process meets it, and reports after each layer its resident
   memory, split into anonymous pages (Python objects, heaps: private to the process) and
   file pages (code of the shared libraries: shared with every other process mapping them,
   so they cost PSS only once per machine). Each layer is also imported alone in its own
   fresh interpreter: its cost with its dependencies, whatever came before.
2. Import time by package: `python -X importtime` of everything the single process imports,
   self time summed per top-level package.
3. The running `bem serve single`: every process of its tree (the cluster, the pool's
   forkserver and workers, multiprocessing's resource tracker) with PSS, RSS and USS, and
   its start-up time next to the import time of its main process.

Prints the tables and names the largest cost.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from benchmarks.launch import (  # noqa: E402
    SETTINGS,
    Running,
    exit_on_sigterm,
    private_redis,
    ready,
    start,
)

# (label, modules); "service:<name>" = that service's API module and its compute modules.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pydantic + fastapi", ("pydantic", "pydantic_settings", "fastapi")),
    ("uvicorn + uvloop + httptools", ("uvicorn", "uvloop", "httptools", "websockets")),
    ("httpx", ("httpx",)),
    ("redis + hiredis", ("redis.asyncio", "hiredis")),
    ("orjson + prometheus_client", ("orjson", "prometheus_client")),
    ("numpy", ("numpy",)),
    ("scipy (optimize, sparse)", ("scipy.optimize", "scipy.sparse")),
    ("networkx", ("networkx",)),
    ("strawberry + graphql-core", ("strawberry", "strawberry.fastapi")),
    ("jsonschema + yaml", ("jsonschema", "yaml")),
    ("bem runtime", ("bem.runtime.supervisor", "bem.runtime.pool")),
    *((f"bem service {s}", (f"service:{s}",)) for s in (
        "graph_runtime", "sfde", "dag_alpha", "functor_types", "callback_engine",
        "optimization", "graphql", "ecm_ws", "dashboard")),
)

# Runs in the fresh interpreter: imports each layer given in argv, prints one JSON line each.
PROBE = r"""
import importlib, json, sys, time

def memory():
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0]) / 1024
    return fields

def load(module):
    if module.startswith("service:"):
        from bem.services import spec
        s = spec(module[8:])
        for m in s.compute_modules:
            importlib.import_module(m)
        if s.name == "graphql":
            importlib.import_module("bem.services.graphql.schema")
    else:
        importlib.import_module(module)

print(json.dumps({"layer": "python", "seconds": 0.0, **memory()}), flush=True)
for layer in json.loads(sys.argv[1]):
    start = time.perf_counter()
    for module in layer[1]:
        load(module)
    print(json.dumps({"layer": layer[0], "seconds": time.perf_counter() - start, **memory()}),
          flush=True)
"""


def probe(layers: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, Any]]:
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(layers)], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=300)
    return [json.loads(line) for line in out.stdout.splitlines()]


def by_layer() -> list[dict[str, Any]]:
    """Cumulative (in order, one interpreter) and alone (own interpreter) cost per layer."""
    steps = probe(list(LAYERS))
    rows = []
    for prev, step in itertools.pairwise(steps):
        alone = probe([(step["layer"], dict(LAYERS)[step["layer"]])])
        rows.append({"layer": step["layer"],
                     "rss_mb": round(step["VmRSS"] - prev["VmRSS"], 1),
                     "anon_mb": round(step["RssAnon"] - prev["RssAnon"], 1),
                     "file_mb": round(step["RssFile"] - prev["RssFile"], 1),
                     "ms": round(step["seconds"] * 1000),
                     "alone_rss_mb": round(alone[1]["VmRSS"] - alone[0]["VmRSS"], 1),
                     "alone_ms": round(alone[1]["seconds"] * 1000)})
    rows.append({"layer": "total (python baseline: "
                          f"{steps[0]['VmRSS']:.1f} MB)",
                 "rss_mb": round(steps[-1]["VmRSS"] - steps[0]["VmRSS"], 1),
                 "anon_mb": round(steps[-1]["RssAnon"] - steps[0]["RssAnon"], 1),
                 "file_mb": round(steps[-1]["RssFile"] - steps[0]["RssFile"], 1),
                 "ms": round(sum(s["seconds"] for s in steps) * 1000)})
    return rows


def import_times() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`-X importtime` of every layer at once: self time per top-level package, and the
    slowest single modules."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", PROBE,
                          json.dumps(list(LAYERS))], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=300)
    modules: dict[str, int] = {}
    for line in out.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():  # not the header
            modules[parts[2].strip()] = int(parts[0])
    packages: dict[str, int] = {}
    for name, us in modules.items():
        packages[name.split(".")[0]] = packages.get(name.split(".")[0], 0) + us
    return ([{"package": k, "self_ms": round(v / 1000)}
             for k, v in sorted(packages.items(), key=lambda kv: -kv[1])],
            [{"module": k, "self_ms": round(v / 1000)}
             for k, v in sorted(modules.items(), key=lambda kv: -kv[1])])


def role(proc: psutil.Process) -> str:
    cmd = " ".join(proc.cmdline())
    if "forkserver" in cmd:  # workers are forked from the forkserver: the same command line
        parent = proc.parent()
        return "pool worker" if parent and "forkserver" in " ".join(parent.cmdline()) \
            else "pool forkserver"
    if "resource_tracker" in cmd:
        return "resource tracker"
    return "cluster process (9 services)"


def running_single() -> dict[str, Any]:
    """Start-up timeline and per-process memory of `bem serve single`."""
    with private_redis() as redis:
        running = start("single", redis.url)
        try:
            timeline = _timeline(running)
            time.sleep(1.0)  # let start-up garbage settle, as the topology benchmark does
            procs = [{"process": role(p), "pid": p.pid, **_memory(p)}
                     for p in _tree(running)]
        finally:
            running.stop()
    return {"startup_s": round(running.startup_s, 2), "timeline": timeline,
            "processes": procs}


def _tree(running: Running) -> list[psutil.Process]:
    assert running.procs[0].process is not None
    root = psutil.Process(running.procs[0].process.pid)
    return [root, *root.children(recursive=True)]


def _memory(proc: psutil.Process) -> dict[str, float]:
    info = proc.memory_full_info()
    return {f"{k}_mb": round(getattr(info, k) / 2**20, 1) for k in ("pss", "rss", "uss")}


def _timeline(running: Running) -> dict[str, float]:
    """Wait for every port to pass while watching the process tree: when the pool's
    forkserver appears (the cluster process has imported and built everything and starts
    its pool) and when the last worker is forked (the forkserver has preloaded)."""
    marks: dict[str, float] = {}
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        waiting = executor.submit(ready, running)
        while not waiting.done():
            with contextlib.suppress(psutil.Error):
                roles = [role(p) for p in _tree(running)]
                now = round(time.perf_counter() - running.started, 2)
                if "pool forkserver" in roles:
                    marks.setdefault("pool_forkserver_started_s", now)
                if roles.count("pool worker") >= SETTINGS["workers"]:
                    marks.setdefault("pool_workers_forked_s", now)
            time.sleep(0.01)
        waiting.result()  # re-raises a failed start
    marks["healthy_s"] = round(running.startup_s, 2)
    return marks


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def largest(layers: list[dict[str, Any]], tree: dict[str, Any]) -> str:
    heaviest = max(layers[:-1], key=lambda r: r["rss_mb"])
    slowest = max(layers[:-1], key=lambda r: r["ms"])
    pool = sum(p["pss_mb"] for p in tree["processes"]
               if p["process"] in ("pool forkserver", "pool worker"))
    total = sum(p["pss_mb"] for p in tree["processes"])
    main = tree["processes"][0]["pss_mb"]
    t = tree["timeline"]
    lines = [f"Largest import by memory: {heaviest['layer']} (+{heaviest['rss_mb']} MB RSS, "
             f"{heaviest['anon_mb']} MB of it private); slowest: {slowest['layer']} "
             f"({slowest['ms']} ms).",
             f"Memory: the pool (forkserver + workers) holds {pool:.1f} of the {total:.1f} MB "
             f"PSS of the single topology, the cluster process itself {main:.1f} MB."]
    if "pool_forkserver_started_s" in t and "pool_workers_forked_s" in t:
        preload = t["pool_workers_forked_s"] - t["pool_forkserver_started_s"]
        lines.append(f"Start-up: {t['pool_forkserver_started_s']} of {t['healthy_s']} s pass "
                     f"before the pool starts; the forkserver's preload then takes "
                     f"{preload:.2f} s ({preload / t['healthy_s']:.0%}), alongside the cluster "
                     f"process importing the compute modules and building its apps.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures")
    args = parser.parse_args()
    exit_on_sigterm()
    print("importing layer by layer, then each alone ...", flush=True)
    layers = by_layer()
    print("python -X importtime ...", flush=True)
    times, modules = import_times()
    print("launching `bem serve single` (the benchmark's settings and Redis) ...", flush=True)
    tree = running_single()
    total_ms = sum(t["self_ms"] for t in times)
    print("\n## Memory and time by import layer (fresh interpreter, in order)\n")
    print(_table(layers, ["layer", "rss_mb", "anon_mb", "file_mb", "ms", "alone_rss_mb",
                          "alone_ms"]))
    print(f"\n## Import self time by package (-X importtime, total {total_ms} ms)\n")
    print(_table(times[:12], ["package", "self_ms"]))
    print("\n## Slowest single modules (self time)\n")
    print(_table(modules[:12], ["module", "self_ms"]))
    t = tree["timeline"]
    print(f"\n## The running `bem serve single`: healthy in {tree['startup_s']} s\n")
    print(f"- 0 to {t.get('pool_forkserver_started_s')} s: interpreter and the nine services' "
          f"API modules; then the pool's forkserver starts\n"
          f"- to {t.get('pool_workers_forked_s')} s: the forkserver imports NumPy and the "
          f"compute modules, then forks the workers (meanwhile the cluster "
          f"process imports the compute modules, connects Redis and builds its apps)\n"
          f"- to {t['healthy_s']} s: workers ready, ports bound, registered, every /health "
          f"passes\n")
    print(_table(tree["processes"], ["process", "pid", "pss_mb", "rss_mb", "uss_mb"]))
    print("\n" + largest(layers, tree))
    if args.json:
        args.json.write_text(json.dumps({"layers": layers, "import_times": times,
                                         "slowest_modules": modules[:30], "single": tree},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
