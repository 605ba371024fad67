"""The old platform's GraphQL operations, as deprecated fields of the one schema.

The old server (Cideation/Endpoint frontend/graphql_server.py) read a database, called the
old containers and answered placeholders where it had nothing; here every old operation is
answered by the services through the service client, like every other field: graphs from
graph_runtime (the sample project, or a stored graph as `projectId`), scores from dag_alpha,
affinity types from sfde (POST /affinity), pulses from the callback engine and the pulse
bus, positions from the layout graph_runtime keeps beside each graph. Each use of an old
operation is counted in `bem_legacy_requests_total{service="graphql", operation=<old
field>}`, so an operator sees when the last old client is gone. The field-by-field mapping
is in docs/migration.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Annotated, Any

import orjson
import strawberry
from strawberry.types import Info

from bem.errors import NotFound
from bem.services.callback_engine.models import MAX_RECENT
from bem.services.graphql import peers
from bem.services.graphql.calls import argument_error, call, call_json, service_context
from bem.services.graphql.legacy_types import (
    ACTIVE,
    AFFINITY_KINDS,
    PHASES,
    AffinityAnalysis,
    AffinityConfiguration,
    AffinityRequest,
    ComponentAnalysis,
    DataAffinityResult,
    FunctorAffinityType,
    NodeFilter,
    PhaseType,
    PositionInput,
    ProjectContextInput,
    PulseEvent,
    PulseType,
    event_time,
    old_graph_messages,
    pulse_event_from_pulse,
    pulse_event_from_record,
)
from bem.services.graphql.types import JSON, Graph, Node, graph_from

SERVICE = "graphql"  # the `service` label of the legacy counter
PULSE_TOPIC = "pulses"
GRAPH_TOPIC = "graph"
_OLD_PHASES = {t.value: phase for t, phase in PHASES.items()}


def count(info: Info, operation: str) -> None:
    """One use of an old operation (`bem_legacy_requests_total`)."""
    m = service_context(info).runtime.metrics
    m.legacy_requests.labels(SERVICE, m.cluster, operation).inc()


# --- the project graph ---------------------------------------------------------------------
async def fetch_graph(info: Info, graph_id: str | None, argument: str) -> Graph:
    """A stored graph, or the sample project for None; an unknown id names `argument`."""
    if graph_id is None:
        return graph_from(await call(info, peers.graph_runtime.sample))
    return graph_from(await call(info, peers.graph_runtime.get_graph, graph_id=graph_id,
                                 arguments={"graph_id": argument}))


def node_of(graph: Graph, node_id: str, argument: str) -> Node:
    node = graph.index.nodes.get(node_id)
    if node is None:
        where = f"graph {graph.graph_id}" if graph.graph_id else "the sample project"
        known = ", ".join(list(graph.index.nodes)[:12])
        raise argument_error(argument, f"no node {node_id!r} in {where} (nodes: {known}"
                                       f"{', ...' if len(graph.index.nodes) > 12 else ''})",
                             NotFound)
    return node


def _phase_test(graph: Graph, phases: list[PhaseType]) -> Callable[[Node], bool]:
    wanted = {PHASES[p] for p in phases if p in PHASES}
    cross = PhaseType.CROSS_PHASE in phases
    index = graph.index

    def test(n: Node) -> bool:
        neighbours = index.succ[n.id] + index.pred[n.id]
        return n.phase in wanted or (cross and any(index.nodes[m].phase != n.phase
                                                   for m in neighbours))
    return test


def _context_tests(context: ProjectContextInput, argument: str) -> list[Callable[[Node], bool]]:
    tests: list[Callable[[Node], bool]] = []
    if context.agent_id is not None:
        try:
            agent = int(context.agent_id)
        except ValueError:
            raise argument_error(f"{argument}.agentId", f"an agent number, not "
                                                        f"{context.agent_id!r}") from None
        tests.append(lambda n: n.agent == agent)
    if context.phase is not None:
        phase = _OLD_PHASES.get(context.phase.lower(), context.phase.lower())
        if phase not in PHASES.values():
            raise argument_error(f"{argument}.phase", f"alpha, beta, gamma (or phase_1, "
                                                      f"phase_2, phase_3), not "
                                                      f"{context.phase!r}")
        tests.append(lambda n: n.phase == phase)
    return tests


def _filtered(graph: Graph, node_filter: NodeFilter | None,
              context: ProjectContextInput | None, context_argument: str) -> Graph:
    tests = _context_tests(context, context_argument) if context is not None else []
    if node_filter is not None:
        f = node_filter
        if f.phases is not None:
            tests.append(_phase_test(graph, f.phases))
        if f.functor_types is not None:
            kinds = set(f.functor_types)
            tests.append(lambda n: graph.index.domain(n.id, 0) in kinds)
        if f.node_ids is not None:
            ids = set(f.node_ids)
            tests.append(lambda n: n.id in ids)
        if f.status is not None:
            tests.append(lambda n: f.status == ACTIVE)
    if not tests:
        return graph
    nodes = [n for n in graph.nodes if all(t(n) for t in tests)]
    kept = {n.id for n in nodes}
    return dataclasses.replace(graph, nodes=nodes, edges=[
        e for e in graph.edges if e.source in kept and e.target in kept])


async def load_graph(info: Info, graph_id: strawberry.ID | None,
                     node_filter: NodeFilter | None,
                     project_context: ProjectContextInput | None) -> Graph:
    """The `graph` field, new (`id`) and old (`filter`, `projectContext`) at once."""
    if graph_id is None or node_filter is not None or project_context is not None:
        count(info, "graph")
    context, argument = project_context, "projectContext"
    if node_filter is not None and node_filter.project_context is not None:
        context, argument = node_filter.project_context, "filter.projectContext"
    project_id = context.project_id if context is not None else None
    if graph_id is not None and project_id is not None and str(graph_id) != project_id:
        raise argument_error(f"{argument}.projectId", f"names graph {project_id!r} while id "
                                                      f"names {str(graph_id)!r}; give one")
    source = "id" if graph_id is not None else f"{argument}.projectId"
    graph = await fetch_graph(info, str(graph_id) if graph_id is not None else project_id,
                              source)
    return _filtered(graph, node_filter, context, argument)


def _graph_source(graph: Graph) -> dict[str, Any]:
    return {"graph_id": str(graph.graph_id)} if graph.graph_id else {"graph": graph.data}


async def recent_events(info: Info, limit: int) -> list[dict[str, Any]]:
    """callback_engine's last finished events (its bound checked here, to name `limit`)."""
    if not 1 <= limit <= MAX_RECENT:
        raise argument_error("limit", f"between 1 and {MAX_RECENT}, not {limit}")
    answer = await call_json(info, peers.callback_engine.recent_events, limit=limit)
    return answer["events"]  # type: ignore[no-any-return]


# --- affinity analysis (sfde POST /affinity) ----------------------------------------------
async def affinity_of(info: Info, node: Node, kinds: list[str], parameters: Any,
                      arguments: dict[str, str]) -> dict[str, dict[str, Any]]:
    """sfde's evaluation of each affinity type for `node`: the request's `parameters`
    over the node's attributes. `arguments` names the GraphQL argument behind each field
    of the sfde request, for its errors."""
    request = {"component_id": node.id, "affinity_types": kinds, "attributes": node.attrs}
    if parameters is not None:
        request["parameters"] = parameters
    answer = await call_json(info, peers.sfde.evaluate_affinity, {"requests": [request]},
                             arguments={f"requests[0].{k}": v for k, v in arguments.items()})
    return answer["results"][0]["affinity"]  # type: ignore[no-any-return]


def _result(kind: str, component: str, evaluation: dict[str, Any]) -> DataAffinityResult:
    return DataAffinityResult(affinity_type=kind, calculation_results=evaluation,
                              execution_status=evaluation["status"],
                              formulas_executed=evaluation["formulas_executed"],
                              component_id=component)


def _affinity_types(kinds: list[str]) -> list[str]:
    """The requested types, each once; only those AffinityAnalysis has a field for."""
    known = ", ".join(AFFINITY_KINDS)
    if not kinds:
        raise argument_error("request.affinityTypes", f"give at least one of {known}")
    for i, kind in enumerate(kinds):
        if kind not in AFFINITY_KINDS:
            raise argument_error(f"request.affinityTypes[{i}]", f"{kind!r} is none of {known} "
                                                                f"(the old AffinityAnalysis "
                                                                f"fields; sfde POST /affinity "
                                                                f"evaluates every type)")
    return list(dict.fromkeys(kinds))


# --- the old root fields -------------------------------------------------------------------
@strawberry.type
class LegacyQuery:
    @strawberry.field(deprecation_reason="use graph(id:) { node(id:) } or sampleGraph "
                                         "{ node(id:) }",
                      description="One node of the sample project (or of the stored graph "
                                  "projectContext.projectId); null when absent.")
    async def node(self, info: Info, id: str,
                   project_context: ProjectContextInput | None = None) -> Node | None:
        count(info, "node")
        project_id = project_context.project_id if project_context else None
        graph = await fetch_graph(info, project_id, "projectContext.projectId")
        return _filtered(graph, None, project_context, "projectContext").index.nodes.get(id)

    @strawberry.field(deprecation_reason="use dagRun (node scores) and evaluate (sfde "
                                         "formulas)",
                      description="A node's dag_alpha scores and its sfde cost estimate.")
    async def analyze_component(self, info: Info, node_id: str, parameters: JSON | None = None,
                                graph_id: strawberry.ID | None = None) -> ComponentAnalysis:
        count(info, "analyzeComponent")
        graph = await fetch_graph(info, str(graph_id) if graph_id else None, "graphId")
        node = node_of(graph, node_id, "nodeId")
        run, by_type = await asyncio.gather(
            call_json(info, peers.dag_alpha.run, _graph_source(graph)),
            affinity_of(info, node, ["cost"], parameters,
                              {"parameters": "parameters", "attributes": "nodeId"}))
        scores = run["nodes"].get(node_id, {})
        return ComponentAnalysis(structural_score=scores.get("score"),
                                 cost_estimate=by_type["cost"]["cost"],
                                 energy_efficiency=None,
                                 manufacturing_feasibility=scores.get("own_score"))

    @strawberry.field(deprecation_reason="use recentEvents",
                      description="The last finished pulse events, most recent first.")
    async def pulse_history(self, info: Info, limit: int = 100) -> list[PulseEvent]:
        count(info, "pulseHistory")
        return [pulse_event_from_record(r) for r in await recent_events(info, limit)]

    @strawberry.field(deprecation_reason="use functorTypes and affinity",
                      description="The functor types and the affinity types "
                                  "executeDataAffinity accepts.")
    async def affinity_configuration(self, info: Info) -> AffinityConfiguration:
        count(info, "affinityConfiguration")
        answer = await call_json(info, peers.functor_types.list_types)
        return AffinityConfiguration(
            functor_types=[FunctorAffinityType(name=t["name"], data_affinity=t["description"],
                                               included_functors=t["functors"])
                           for t in answer["types"]],
            available_affinity_types=list(AFFINITY_KINDS))


@strawberry.type
class LegacyMutation:
    @strawberry.mutation(deprecation_reason="use setNodePositions",
                         description="Move a node of the sample project (or of the stored "
                                     "graph graphId): graph_runtime keeps the layout beside "
                                     "the graph; later queries answer it as Node.position.")
    async def update_node_position(self, info: Info, id: str, position: PositionInput,
                                   graph_id: strawberry.ID | None = None) -> str:
        count(info, "updateNodePosition")
        payload = {"graph_id": str(graph_id) if graph_id else None,
                   "positions": {id: {"x": position.x, "y": position.y}}}
        await call(info, peers.graph_runtime.set_layout, payload, arguments={
            "graph_id": "graphId", f"positions.{id}": "id", f"positions.{id}.x": "position.x",
            f"positions.{id}.y": "position.y"})
        return f"Updated position for node {id}"

    @strawberry.mutation(deprecation_reason="use evaluate (one sfde formula per call) or "
                                            "POST /sfde/affinity (every type at once)",
                         description="Evaluate the sfde formulas of each affinity type for a "
                                     "component (see AffinityRequest.parameters).")
    async def execute_data_affinity(self, info: Info, request: AffinityRequest
                                    ) -> AffinityAnalysis:
        count(info, "executeDataAffinity")
        kinds = _affinity_types(request.affinity_types)
        graph = await fetch_graph(info, str(request.graph_id) if request.graph_id else None,
                                  "request.graphId")
        node = node_of(graph, request.component_id, "request.componentId")
        by_type = await affinity_of(info, node, kinds, request.parameters, {
            "parameters": "request.parameters", "attributes": "request.componentId",
            "affinity_types": "request.affinityTypes"})
        return AffinityAnalysis(**{f"{k}_affinity": _result(k, node.id, by_type[k])
                                   for k in kinds})

    @strawberry.mutation(deprecation_reason="use submitEvents (with your idempotency key)",
                         description="Submit a pulse entering the graph at sourceNode; the "
                                     "callback engine routes it by its type (targetNode is "
                                     "checked and kept with the event). Each call is a new "
                                     "event.")
    async def trigger_pulse(self, info: Info, pulse_type: PulseType, source_node: str,
                            target_node: str | None = None,
                            graph_id: strawberry.ID | None = None) -> PulseEvent:
        count(info, "triggerPulse")
        gid = str(graph_id) if graph_id else None
        graph = await fetch_graph(info, gid, "graphId")
        node_of(graph, source_node, "sourceNode")
        if target_node is not None:
            node_of(graph, target_node, "targetNode")
        payload = {"manual_trigger": True, "target_node": target_node}
        event = {"idempotency_key": f"graphql-trigger-{uuid.uuid4().hex}",
                 "type": pulse_type.value.removesuffix("_pulse"), "node": source_node,
                 "graph_id": gid, "payload": payload}
        answer = await call_json(info, peers.callback_engine.submit_events, {"events": [event]})
        event_id = answer["events"][0]["event_id"]
        return PulseEvent(id=event_id, pulse_type=pulse_type, source_node=source_node,
                          target_node=target_node, timestamp=event_time(event_id),
                          data={**payload, "graph_id": gid, "durable": answer["durable"]},
                          status="pending")


@strawberry.type
class LegacySubscription:
    @strawberry.subscription(deprecation_reason="use pulses",
                             description="Every pulse the callback engine publishes, one per "
                                         "node it reaches.")
    async def pulse_events(self, info: Info) -> AsyncGenerator[PulseEvent, None]:
        count(info, "pulseEvents")
        with service_context(info).runtime.bus.subscribe(PULSE_TOPIC) as sub:
            async for message in sub:
                event = pulse_event_from_pulse(message)
                if event is not None:
                    yield event

    @strawberry.subscription(deprecation_reason="use the `graph` topic of the ECM WebSocket "
                                                "(ws://HOST:8765/ws)",
                             description="Graph changes as JSON text: node_position_update "
                                         "(one per moved node), graph_stored.")
    async def graph_updates(self, info: Info) -> AsyncGenerator[str, None]:
        count(info, "graphUpdates")
        with service_context(info).runtime.bus.subscribe(GRAPH_TOPIC) as sub:
            async for message in sub:
                for old in old_graph_messages(message):
                    yield orjson.dumps(old).decode()


FILTER_DEPRECATION = "use graph(id:) and select nodes by phase, agent or id"
CONTEXT_DEPRECATION = "use graph(id:)"
OldFilter = Annotated[NodeFilter | None, strawberry.argument(
    deprecation_reason=FILTER_DEPRECATION)]
OldContext = Annotated[ProjectContextInput | None, strawberry.argument(
    deprecation_reason=CONTEXT_DEPRECATION, description="projectId: a stored graph")]
