"""The GraphQL schema of the gateway: one schema over the six services.

Resolvers reach the services only through the service client (`calls.call`), so in the
`single` topology a query never leaves the process, and elsewhere it goes to a healthy
replica. A service's error becomes a GraphQL error with the service's message and code;
anything unexpected is masked and logged.

The old platform's operations (its agent console's `graph(filter:)`, `executeDataAffinity`,
`pulseEvents`...) are deprecated fields of this same schema, visible as such in
introspection; they live in legacy.py. Names follow GraphQL's camelCase throughout.

Abuse limits (validation rules, checked before anything runs): operation depth, document
tokens, aliases, and operations per batched request. Introspection is allowed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from bem.services.graphql import execution, peers
from bem.services.graphql.calls import call, call_json, service_context
from bem.services.graphql.convert import jsonable, pick, without_unset
from bem.services.graphql.dag import DagRun, dag_run_from
from bem.services.graphql.events import (
    Event,
    EventInput,
    Pulse,
    SubmittedEvents,
    event_from,
    pulse_from,
    submitted_from,
)
from bem.services.graphql.formulas import (
    Evaluation,
    ExpressionValue,
    Formula,
    evaluation_from,
    formula_from,
    formulas_from,
)
from bem.services.graphql.health import Health, health_from
from bem.services.graphql.legacy import (
    LegacyMutation,
    LegacyQuery,
    LegacySubscription,
    OldContext,
    OldFilter,
    load_graph,
    recent_events,
)
from bem.services.graphql.optimization import (
    ParameterOptimum,
    Selection,
    optimum_from,
    selection_from,
)
from bem.services.graphql.registry import (
    Affinity,
    Compatibility,
    FunctorTypeDetail,
    FunctorTypeRegistry,
    LinkInput,
    PlacementInput,
    Validation,
    compatibility_from,
    registry_from,
    type_detail_from,
    validation_from,
)
from bem.services.graphql.types import (
    DEFAULT_METRICS,
    JSON,
    Analysis,
    AnalyzeOptions,
    Graph,
    GraphInput,
    Layout,
    Metric,
    NodePositionInput,
    StoredGraph,
    analyze,
    graph_from,
    layout_from,
)

MAX_BATCH = 10  # operations in one batched HTTP request
MAX_SUBSCRIPTIONS = 20  # active subscriptions on one WebSocket connection
PULSE_TOPIC = "pulses"


def _source(graph_id: strawberry.ID | None, graph: GraphInput | None) -> dict[str, Any]:
    """`graph_id` or an inline `graph`; the service says when neither or both are given."""
    source: dict[str, Any] = {}
    if graph_id is not None:
        source["graph_id"] = str(graph_id)
    if graph is not None:
        source["graph"] = without_unset(graph)
    return source


@strawberry.type
class Query(LegacyQuery):
    # --- graph_runtime -----------------------------------------------------------------
    @strawberry.field(description="A stored graph by id (graph_runtime GET /graphs/{id}); "
                                  "without one, the sample project (as the old API answered "
                                  "it, with its filter).")
    async def graph(self, info: Info, id: strawberry.ID | None = None,
                    filter: OldFilter = None, project_context: OldContext = None) -> Graph:
        return await load_graph(info, id, filter, project_context)

    @strawberry.field(description="The sample project V01-V10.")
    async def sample_graph(self, info: Info) -> Graph:
        return graph_from(await call(info, peers.graph_runtime.sample))

    @strawberry.field(description="Analyse a stored (`graph_id`) or inline (`graph`) graph; "
                                  "only the requested `metrics` are filled in.")
    async def analyze(self, info: Info, graph_id: strawberry.ID | None = None,
                      graph: GraphInput | None = None,
                      metrics: list[Metric] = DEFAULT_METRICS,  # type: ignore[valid-type]
                      options: AnalyzeOptions | None = None) -> Analysis:
        return await analyze(info, _source(graph_id, graph), metrics, options)

    # --- sfde --------------------------------------------------------------------------
    @strawberry.field(description="The formula catalogue (sfde GET /formulas).")
    async def formulas(self, info: Info) -> list[Formula]:
        return formulas_from(await call(info, peers.sfde.list_formulas))

    @strawberry.field(description="One formula: parameters, units, outputs, reference.")
    async def formula(self, info: Info, name: str) -> Formula:
        return formula_from(await call_json(info, peers.sfde.get_formula, name=name))

    @strawberry.field(description="Evaluate a named formula for one row (`params`: a number "
                                  "per parameter) or for columns (`columns`: an array per "
                                  "parameter).")
    async def evaluate(self, info: Info, formula: str, params: JSON | None = None,
                       columns: JSON | None = None) -> Evaluation:
        payload: dict[str, Any] = {"formula": formula}
        if params is not None:
            payload["params"] = params
        if columns is not None:
            payload["columns"] = columns
        return evaluation_from(await call(info, peers.sfde.evaluate, payload))

    @strawberry.field(description="Evaluate a safe arithmetic expression over variables "
                                  "(numbers, or arrays evaluated element-wise).")
    async def evaluate_expression(self, info: Info, expression: str,
                                  variables: JSON | None = None) -> ExpressionValue:
        answer = await call_json(info, peers.sfde.evaluate_expression,
                                 {"expression": expression, "variables": variables or {}})
        return pick(ExpressionValue, answer)  # type: ignore[no-any-return]

    # --- functor_types -----------------------------------------------------------------
    @strawberry.field(description="The functor-type registry.")
    async def functor_types(self, info: Info) -> FunctorTypeRegistry:
        return registry_from(await call(info, peers.functor_types.list_types))

    @strawberry.field(description="One functor type and its component schema.")
    async def functor_type(self, info: Info, name: str) -> FunctorTypeDetail:
        return type_detail_from(await call(info, peers.functor_types.get_type, name=name))

    @strawberry.field(description="Validate components (nodes of a project graph: id, "
                                  "phase, functor, attrs...) against their functor types.")
    async def validate_components(self, info: Info, components: JSON) -> Validation:
        return validation_from(await call(info, peers.functor_types.validate,
                                          {"components": components}))

    @strawberry.field(description="The affinity matrix between design domains.")
    async def affinity(self, info: Info) -> Affinity:
        answer = await call_json(info, peers.functor_types.affinity)
        return pick(Affinity, answer)  # type: ignore[no-any-return]

    @strawberry.field(description="May these types run in these phases, may these types "
                                  "feed each other? With no pairs, just the tables.")
    async def compatibility(self, info: Info, placements: list[PlacementInput] | None = None,
                            links: list[LinkInput] | None = None) -> Compatibility:
        return compatibility_from(await call(info, peers.functor_types.compatibility, {
            "placements": without_unset(placements or []),
            "links": without_unset(links or [])}))

    # --- dag_alpha ---------------------------------------------------------------------
    @strawberry.field(description="Run the alpha phase over a stored or inline graph "
                                  "(idempotent: also a query).")
    async def dag_run(self, info: Info, graph_id: strawberry.ID | None = None,
                      graph: GraphInput | None = None) -> DagRun:
        return dag_run_from(await call(info, peers.dag_alpha.run, _source(graph_id, graph)))

    # --- optimization ------------------------------------------------------------------
    @strawberry.field(description="Choose one option per component under a budget and "
                                  "constraints (`problem`: the body of optimization POST "
                                  "/select; a MILP).")
    async def select_options(self, info: Info, problem: JSON) -> Selection:
        return selection_from(await call(info, peers.optimization.select, problem))

    @strawberry.field(description="Minimise or maximise an sfde formula output over bounded "
                                  "parameters (`problem`: the body of optimization POST "
                                  "/parameters).")
    async def optimize_parameters(self, info: Info, problem: JSON) -> ParameterOptimum:
        return optimum_from(await call(info, peers.optimization.parameters, problem))

    @strawberry.field(description="Where the nodes of a stored graph (or, without graphId, "
                                  "the sample project) are drawn.")
    async def layout(self, info: Info, graph_id: strawberry.ID | None = None) -> Layout:
        return layout_from(await call(info, peers.graph_runtime.get_layout, graph_id=graph_id,
                                      arguments={"graph_id": "graphId"}))

    # --- callback_engine ---------------------------------------------------------------
    @strawberry.field(description="An accepted event and its processing status.")
    async def event(self, info: Info, id: strawberry.ID) -> Event:
        return event_from(await call(info, peers.callback_engine.get_event, event_id=id))

    @strawberry.field(description="The last finished events (processed or failed), most "
                                  "recently finished first.")
    async def recent_events(self, info: Info, limit: int = 100) -> list[Event]:
        return [event_from(e) for e in await recent_events(info, limit)]

    @strawberry.field(description="Event processing counters and lag.")
    async def event_stats(self, info: Info) -> JSON:
        return await call_json(info, peers.callback_engine.stats)

    # --- the platform ------------------------------------------------------------------
    @strawberry.field(description="Every cluster and replica with each service's health, "
                                  "aggregated fail > warn > pass (the dashboard's report).")
    async def health(self, info: Info) -> Health:
        return health_from(await call(info, peers.dashboard.cluster_health))


@strawberry.type
class Mutation(LegacyMutation):
    @strawberry.mutation(description="Store a graph; its id is its content hash.")
    async def store_graph(self, info: Info, graph: GraphInput) -> StoredGraph:
        answer = jsonable(await call(info, peers.graph_runtime.store_graph,
                                     without_unset(graph)))
        return StoredGraph(graph_id=strawberry.ID(answer["graph_id"]), nodes=answer["nodes"],
                           edges=answer["edges"], created=answer["created"])

    @strawberry.mutation(description="Submit pulse events to the callback engine; each is "
                                     "accepted once per idempotency key.")
    async def submit_events(self, info: Info, events: list[EventInput]) -> SubmittedEvents:
        return submitted_from(await call(info, peers.callback_engine.submit_events,
                                         {"events": without_unset(events)}))

    @strawberry.mutation(description="Run the alpha phase over a stored or inline graph.")
    async def run_dag(self, info: Info, graph_id: strawberry.ID | None = None,
                      graph: GraphInput | None = None) -> DagRun:
        return dag_run_from(await call(info, peers.dag_alpha.run, _source(graph_id, graph)))

    @strawberry.mutation(description="Move nodes of a stored graph (or, without graphId, the "
                                     "sample project); the others keep their positions. The "
                                     "graph and its id stay as they are.")
    async def set_node_positions(self, info: Info, positions: list[NodePositionInput],
                                 graph_id: strawberry.ID | None = None) -> Layout:
        payload = {"graph_id": graph_id, "positions": {p.node: {"x": p.x, "y": p.y}
                                                       for p in positions}}
        return layout_from(await call(info, peers.graph_runtime.set_layout, payload,
                                      arguments={"graph_id": "graphId"}))


def _wanted(message: dict[str, Any], graph_id: strawberry.ID | None, node: str | None,
            types: list[str] | None) -> bool:
    return ((graph_id is None or message.get("graph_id") == graph_id)
            and (node is None or message.get("node") == node)
            and (types is None or message.get("pulse_type") in types))


@strawberry.type
class Subscription(LegacySubscription):
    @strawberry.subscription(description="Pulses as the callback engine publishes them, "
                                         "optionally only those of one graph, node or pulse "
                                         "type.")
    async def pulses(self, info: Info, graph_id: strawberry.ID | None = None,
                     node: str | None = None, types: list[str] | None = None,
                     ) -> AsyncGenerator[Pulse, None]:
        # A bounded queue per subscriber: a slow client loses its oldest pulses, it never
        # holds up the bus or the other subscribers.
        with service_context(info).runtime.bus.subscribe(PULSE_TOPIC) as sub:
            async for message in sub:
                if _wanted(message, graph_id, node, types):
                    yield pulse_from(message)


schema = execution.GatewaySchema(
    query=Query, mutation=Mutation, subscription=Subscription,
    # camelCase names (strawberry's default): GraphQL's convention, and the old platform's
    # clients' (its fields are part of this schema). JSON values (attrs, results) keep the
    # services' snake_case keys: they are data, not schema.
    config=StrawberryConfig(batching_config={"max_operations": MAX_BATCH}),
    # Limits (execution.py): checked once per distinct document for queries and mutations,
    # by these extensions for subscriptions.
    extensions=execution.extensions())
