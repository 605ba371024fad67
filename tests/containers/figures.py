"""The deployment figures the container suite measures, written to benchmarks/results/.

Each figure keeps the command that produced it. A run merges its figures into
deployment.json (a partial run updates only what it measured) and rewrites deployment.md,
the table the README shows.
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any

from tests.support import REPO

RESULTS = REPO / "benchmarks" / "results"
JSON = RESULTS / "deployment.json"
MARKDOWN = RESULTS / "deployment.md"
SUITE = "./scripts/test tests/containers"
GUIDE_BEFORE, GUIDE_AFTER = "8-12 GB", "4-6 GB"  # the operations guide, total memory


class Figures:
    def __init__(self) -> None:
        self.figures: dict[str, dict[str, Any]] = {}
        self.load_at_start = os.getloadavg()[0]

    def record(self, name: str, value: Any, command: str, **details: Any) -> None:
        self.figures[name] = {"value": value, "command": command, **details}
        print(f"\ndeployment figure {name}: {value}")

    def write(self, engine_version: str) -> None:
        if not self.figures:
            return
        try:
            data = json.loads(JSON.read_text())
        except (OSError, ValueError):
            data = {"figures": {}}
        data["figures"].update(self.figures)
        data["machine"] = {
            "cpus": os.cpu_count(), "platform": platform.platform(), "engine": engine_version,
            "load_average_at_start": round(self.load_at_start, 2),
            "date": time.strftime("%Y-%m-%d", time.gmtime()), "suite": SUITE}
        RESULTS.mkdir(parents=True, exist_ok=True)
        JSON.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        MARKDOWN.write_text(render(data))


def render(data: dict[str, Any]) -> str:
    f = data["figures"]
    m = data["machine"]
    lines = [f"Machine: {m['cpus']} CPUs, {m['platform']}; Docker engine {m['engine']} "
             f"(Debian's docker.io), load average {m['load_average_at_start']} at the start; "
             f"{m['date']}. Measured by `{m['suite']}`.", "",
             "| figure | value | command |", "|---|---|---|"]
    for name, label in LABELS:
        if name in f:
            lines.append(f"| {label} | {_shown(f[name])} | `{f[name]['command']}` |")
    memory = _memory_table(f)
    return "\n".join(lines + (["", *memory] if memory else [])) + "\n"


LABELS = [
    ("image_size", "image size (bem, Debian base)"),
    ("base_images", "offline base images from Debian packages"),
    ("image_build", "image build, offline"),
    ("up_development", "`up --wait` to every container healthy, development"),
    ("up_minimal", "`up --wait`, minimal"),
    ("up_monitoring", "`up --wait`, monitoring without Grafana"),
    ("up_legacy", "`up --wait`, legacy layout (9 services + Redis)"),
    ("scale_balance", "`--scale compute-cluster=3`: requests per replica"),
    ("replica_kill", "a replica SIGKILLed under load: failed requests"),
    ("compose_stop", "`compose stop` under in-flight requests"),
    ("rolling_update", "Swarm rolling update under load: failed requests"),
    ("memory_total", "`docker stats` memory, all containers"),
]


def _shown(figure: dict[str, Any]) -> str:
    value = figure["value"]
    note = figure.get("note")
    text = f"{value}"
    return f"{text} ({note})" if note else text


def _memory_table(f: dict[str, Any]) -> list[str]:
    if "memory_optimized" not in f or "memory_legacy" not in f:
        return []
    opt, leg = f["memory_optimized"]["value"], f["memory_legacy"]["value"]
    lines = ["`docker stats --no-stream` memory after the same traffic (MiB), "
             f"against the guide's \"{GUIDE_BEFORE} before, {GUIDE_AFTER} after\":", "",
             "| legacy container | MiB | optimized container | MiB |", "|---|---|---|---|"]
    left, right = sorted(leg.items()), sorted(opt.items())
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ("", "")
        b = right[i] if i < len(right) else ("", "")
        lines.append(f"| {a[0]} | {a[1]} | {b[0]} | {b[1]} |")
    total_l, total_o = sum(leg.values()), sum(opt.values())
    lines.append(f"| **total** | **{total_l:,.0f}** | **total** | **{total_o:,.0f}** |")
    lines += ["", f"Legacy {total_l / 1024:.2f} GiB vs optimized {total_o / 1024:.2f} GiB "
              f"({1 - total_o / total_l:.0%} less; the guide: {GUIDE_BEFORE} before, "
              f"{GUIDE_AFTER} after, 33-50 % less). Legacy: "
              f"`{f['memory_legacy']['command']}`, {f['memory_legacy'].get('note', '')}. "
              f"Optimized: `{f['memory_optimized']['command']}`, "
              f"{f['memory_optimized'].get('note', '')}."]
    return lines
