"""Who runs with whom: the clusters of the optimized layout and the three topologies.

Placement is configuration, not code: a process is started with a cluster name (or a single
service name) and hosts exactly those services; everything else is a remote peer.
"""

from __future__ import annotations

from bem.runtime.placement import Placement

CLUSTERS: dict[str, tuple[str, ...]] = {
    "compute": ("dag_alpha", "sfde", "graph_runtime"),
    "logic": ("functor_types", "callback_engine", "optimization"),
    "gateway": ("graphql", "ecm_ws", "dashboard"),
}
CLUSTER_OF: dict[str, str] = {svc: name for name, members in CLUSTERS.items() for svc in members}
ALL_SERVICES: tuple[str, ...] = tuple(svc for members in CLUSTERS.values() for svc in members)
GATEWAY_SERVICES = frozenset(CLUSTERS["gateway"])
PLACEMENT = Placement(cluster_of=CLUSTER_OF, gateway=GATEWAY_SERVICES)  # what the runtime is given

# topology -> the processes it runs, each a `bem serve` target
TOPOLOGIES: dict[str, tuple[str, ...]] = {
    "sprawl": ALL_SERVICES,
    "optimized": ("compute", "logic", "gateway"),
    "single": ("single",),
}
SERVE_TARGETS = ("compute", "logic", "gateway", "single", *ALL_SERVICES)


def members(target: str) -> tuple[str, ...]:
    """The services a `bem serve TARGET` process hosts."""
    if target == "single":
        return ALL_SERVICES
    if target in CLUSTERS:
        return CLUSTERS[target]
    if target in CLUSTER_OF:
        return (target,)
    raise ValueError(f"unknown cluster or service {target!r}; "
                     f"choose one of: {', '.join(SERVE_TARGETS)}")
