"""Which metrics need a DAG, and the 422 when the graph is not one: shared by NetworkX's
analysis (`compute`) and the kernels', here so that the kernels, which the event loop runs
for small analyses, do not import NetworkX (~20 MB and ~0.1 s a process) to raise it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from bem.errors import ValidationFailed

DAG_METRICS = frozenset({"topological_order", "levels", "critical_path"})


def require_dag(metrics: Iterable[str], cycle_of: Callable[[], list[str] | None]) -> None:
    """A DAG-only metric asked of a cyclic graph is a 422 naming a cycle (`cycle_of` finds
    one, or None; it runs only when such a metric is asked)."""
    wanted = DAG_METRICS.intersection(metrics)
    if not wanted:
        return
    cycle = cycle_of()
    if cycle is not None:
        raise ValidationFailed(
            f"graph: {', '.join(sorted(wanted))} need a DAG, but the graph has the cycle "
            f"{' -> '.join(cycle)}", field="graph.edges",
            details=[{"field": "graph.edges", "message": "cycle", "cycle": cycle,
                      "type": "cycle"}])
