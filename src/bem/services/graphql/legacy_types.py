"""The old platform's GraphQL types (Cideation/Endpoint frontend/graphql_server.py), kept for
its clients, and how they are read off the platform's own data.

Names, enum values and argument types are the old schema's, so an old client's documents and
variable declarations (`$request: AffinityRequest!`, `$pulseType: PulseType!`) still
validate. The values come from the services: nothing here is a placeholder. How each old
field maps onto the new model is in docs/migration.md; the derivations are the functions at
the end of this module.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON


@strawberry.enum(description="A design domain (the old platform's node and functor types).")
class NodeType(Enum):
    STRUCTURAL = "structural"
    COST = "cost"
    ENERGY = "energy"
    MEP = "mep"
    FABRICATION = "fabrication"
    TIME = "time"


@strawberry.enum(description="The old phase names: PHASE_1 = alpha, PHASE_2 = beta, PHASE_3 = "
                             "gamma; CROSS_PHASE = nodes with an edge to another phase.")
class PhaseType(Enum):
    PHASE_1 = "phase_1"
    PHASE_2 = "phase_2"
    PHASE_3 = "phase_3"
    CROSS_PHASE = "cross_phase"


@strawberry.enum(description="The old pulse names: BID_PULSE = the pulse type `bid`, ...")
class PulseType(Enum):
    BID_PULSE = "bid_pulse"
    OCCUPANCY_PULSE = "occupancy_pulse"
    COMPLIANCY_PULSE = "compliancy_pulse"
    FIT_PULSE = "fit_pulse"
    INVESTMENT_PULSE = "investment_pulse"
    DECAY_PULSE = "decay_pulse"
    REJECT_PULSE = "reject_pulse"


PHASES = {PhaseType.PHASE_1: "alpha", PhaseType.PHASE_2: "beta", PhaseType.PHASE_3: "gamma"}


def pulse_type_of(name: str) -> PulseType:
    """The old enum member of a pulse type (`fit` -> FIT_PULSE)."""
    return PulseType(f"{name}_pulse")


@strawberry.type
class Position:
    x: float
    y: float


@strawberry.type(description="The node's agent's weight of each design domain "
                             "(`<domain>_weight_preference` of the agent coefficients; "
                             "fabrication: material_weight_preference). Null when not given.")
class Coefficients:
    structural: float | None = None
    cost: float | None = None
    energy: float | None = None
    mep: float | None = None
    fabrication: float | None = None
    time: float | None = None


@strawberry.type
class NodeProperties:
    material: str | None = strawberry.field(description="always null: nodes carry no "
                                                        "material name")
    dimensions: JSON | None = strawberry.field(description="the attributes with a length, "
                                                           "area or volume unit (_m, _m2, "
                                                           "_m3, _mm)")
    specifications: JSON | None = strawberry.field(description="every attribute (attrs)")


@strawberry.type(description="A pulse event: one the callback engine accepted, or one pulse of "
                             "it reaching a node.")
class PulseEvent:
    id: str = strawberry.field(description="the event id (callback_engine GET /events/{id})")
    pulse_type: PulseType
    source_node: str = strawberry.field(description="the node the event entered at")
    target_node: str | None = strawberry.field(
        description="the node a pulse reached; for an event, the node named when triggered")
    timestamp: datetime = strawberry.field(description="when the event was accepted")
    data: JSON | None
    status: str = strawberry.field(description="pending | processed | failed")


@strawberry.type
class DataAffinityResult:
    affinity_type: str
    calculation_results: JSON = strawberry.field(
        description="sfde POST /affinity's answer for the type: `formulas`: per formula "
                    "its params, their sources and its outputs; `missing`: per formula not "
                    "evaluated, what to send; `status`, `formulas_executed`, `cost`")
    execution_status: str = strawberry.field(description="completed | partial | "
                                                         "missing_parameters")
    formulas_executed: int
    component_id: str


@strawberry.type
class AffinityAnalysis:
    structural_affinity: DataAffinityResult | None = None
    cost_affinity: DataAffinityResult | None = None
    energy_affinity: DataAffinityResult | None = None
    mep_affinity: DataAffinityResult | None = None
    spatial_affinity: DataAffinityResult | None = None
    time_affinity: DataAffinityResult | None = None


@strawberry.type
class ComponentAnalysis:
    structural_score: float | None = strawberry.field(description="dag_alpha: the node's score")
    cost_estimate: float | None = strawberry.field(
        description="sfde material and labour cost (needs `parameters`: unit_price, or "
                    "hours and rate)")
    energy_efficiency: float | None = strawberry.field(
        description="always null: no service computes an energy efficiency")
    manufacturing_feasibility: float | None = strawberry.field(
        description="dag_alpha: the node's own score (without its predecessors)")


@strawberry.type
class FunctorAffinityType:
    name: str
    data_affinity: str
    included_functors: list[str]


@strawberry.type
class AffinityConfiguration:
    functor_types: list[FunctorAffinityType]
    available_affinity_types: list[str]


@strawberry.input
class PositionInput:
    x: float
    y: float


@strawberry.input(description="The old project context: `projectId` is a stored graph's id "
                              "(absent: the sample project), `agentId` keeps one agent's "
                              "nodes, `phase` one phase (alpha or phase_1, ...); "
                              "`agentProjectTag` has no equivalent and no effect.")
class ProjectContextInput:
    agent_project_tag: str | None = None
    project_id: str | None = None
    phase: str | None = None
    agent_id: str | None = None


@strawberry.input(description="Which nodes of the graph to answer; criteria combine with AND, "
                              "the values of one list with OR.")
class NodeFilter:
    phases: list[PhaseType] | None = None
    functor_types: list[NodeType] | None = strawberry.field(
        default=None, description="nodes whose `type` is one of these")
    node_ids: list[str] | None = None
    status: str | None = strawberry.field(default=None,
                                          description="every node is `active`")
    project_context: ProjectContextInput | None = None


@strawberry.input
class AffinityRequest:
    affinity_types: list[str] = strawberry.field(
        description="structural | cost | energy | mep | spatial | time")
    component_id: str = strawberry.field(description="a node of the graph")
    execution_mode: str | None = strawberry.field(
        default="symbolic_reasoning",
        description="accepted for old clients; formulas are always evaluated numerically")
    parameters: JSON | None = strawberry.field(
        default=None, description="numbers by name: formula parameters (unit_price, U, dT, "
                                  "...) or the old dimensions (volume_cm3, area_m2, "
                                  "length_mm, ...)")
    graph_id: strawberry.ID | None = strawberry.field(
        default=None, description="a stored graph; null = the sample project")


# The affinity types executeDataAffinity answers: the old AffinityAnalysis's fields (sfde
# evaluates these and more: POST /affinity).
AFFINITY_KINDS = tuple(name.removesuffix("_affinity")
                       for name in AffinityAnalysis.__annotations__)


# --- derivations ---------------------------------------------------------------------------
DOMAINS = [t.value for t in NodeType]
_COEFFICIENT_ALIASES = {"fabrication": "material_weight_preference"}
_DIMENSION_SUFFIXES = ("_m", "_m2", "_m3", "_mm")
ACTIVE = "active"


def coefficients_of(agent: dict[str, float]) -> dict[str, float | None]:
    """Domain -> weight, from a node's agent coefficients."""
    out: dict[str, float | None] = {}
    for domain in DOMAINS:
        value = agent.get(f"{domain}_weight_preference")
        if value is None and domain in _COEFFICIENT_ALIASES:
            value = agent.get(_COEFFICIENT_ALIASES[domain])
        out[domain] = value
    return out


def ranked_domains(coefficients: dict[str, float | None]) -> list[NodeType]:
    """The domains the agent weighs, heaviest first (ties in NodeType order)."""
    weighed = [(-w, i, d) for i, (d, w) in enumerate(coefficients.items()) if w]
    return [NodeType(d) for _, _, d in sorted(weighed)]


def properties_of(attrs: dict[str, Any]) -> NodeProperties:
    dimensions = {k: v for k, v in attrs.items() if k.endswith(_DIMENSION_SUFFIXES)}
    return NodeProperties(material=None, dimensions=dimensions or None,
                          specifications=dict(attrs))


def edge_ids(edges: list[dict[str, Any]]) -> list[str]:
    """`source->target`, with `#2`, `#3`... for further edges between the same pair."""
    seen: dict[tuple[str, str], int] = {}
    ids = []
    for e in edges:
        pair = (e["source"], e["target"])
        seen[pair] = seen.get(pair, 0) + 1
        n = seen[pair]
        ids.append(f"{pair[0]}->{pair[1]}" + (f"#{n}" if n > 1 else ""))
    return ids


def event_time(event_id: str) -> datetime:
    """Event ids are `<milliseconds>-<sequence>` of their acceptance (Redis stream ids)."""
    return datetime.fromtimestamp(int(event_id.split("-", 1)[0]) / 1000, UTC)


def pulse_event_from_pulse(pulse: dict[str, Any]) -> PulseEvent | None:
    """A pulse as the callback engine publishes it, as an old PulseEvent (None if it is not
    one: the bus is shared)."""
    try:
        return PulseEvent(id=pulse["event_id"], pulse_type=pulse_type_of(pulse["pulse_type"]),
                          source_node=pulse["source"], target_node=pulse["node"],
                          timestamp=event_time(pulse["event_id"]), data=pulse,
                          status="processed")
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def pulse_event_from_record(record: dict[str, Any]) -> PulseEvent:
    """An accepted event (callback_engine's record) as an old PulseEvent."""
    target = (record.get("payload") or {}).get("target_node")
    return PulseEvent(id=record["event_id"], pulse_type=pulse_type_of(record["type"]),
                      source_node=record["node"],
                      target_node=target if isinstance(target, str) else None,
                      timestamp=event_time(record["event_id"]),
                      data=record, status=record["status"])


def old_pulse_message(event: PulseEvent) -> dict[str, Any]:
    """The JSON the old server relayed on /ws/cytoscape (its Redis `pulse_events` message),
    with the `type` the old agent console dispatches on."""
    return {"type": "pulse_event", "id": event.id, "pulse_type": event.pulse_type.value,
            "source_node": event.source_node, "target_node": event.target_node,
            "timestamp": event.timestamp.isoformat(), "data": event.data,
            "status": event.status}


def old_graph_messages(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A graph change on the bus as the old `graph_updates` messages: one
    `node_position_update` per moved node; other changes (a graph stored) as they are."""
    when = message.get("timestamp")
    stamp = (datetime.fromtimestamp(when, UTC) if isinstance(when, int | float)
             else datetime.now(UTC)).isoformat()
    if message.get("type") != "layout_updated":
        return [{**message, "timestamp": stamp}]
    positions = message.get("positions")
    if not isinstance(positions, dict):
        return []
    return [{"type": "node_position_update", "node_id": node, "position": xy,
             "graph_id": message.get("graph_id"), "timestamp": stamp}
            for node, xy in positions.items()]
