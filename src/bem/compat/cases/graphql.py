"""The old GraphQL clients: the agent console, the demo script and the integration README.

Every document is the old file's own, token for token (whitespace compacted); every variable
is what the old file sends. `reads` are what that client reads from the answer: the agent
console throws on any `errors` and then reads the fields it puts into Cytoscape; the demo
script prints what it reads, and takes the other branch (printing `errors`) when there are
some.

The demo script sends ids no project has (`test_component_001`, `test_source_001`...). The
old server answered those with nulls or an unchecked event; here they are GraphQL errors
naming the argument (bad input is named, never accepted silently, docs/migration.md), which
is the script's other branch: those cases read `errors`, and that the error comes from the
field's resolver (`path`), not from a schema that lacks the field.
"""

from __future__ import annotations

from bem.compat.catalogue import Case, Http, Read, Receive, Send, WebSocket

CONSOLE = "frontend/agent_console_graphql.html"
DEMO = "frontend/test_graphql_demo.py"
DEMO_PRINTED = "frontend/test_graphql_demo.py (demo_cytoscape_queries)"
README = "frontend/GRAPHQL_INTEGRATION_README.md"

NO_ERRORS = Read("errors", absent=True)
AFFINITY_KINDS = ("structural", "cost", "energy", "mep", "spatial", "time")
OLD_PARAMETERS = {"volume_cm3": 1000.0, "area_m2": 10.0, "length_mm": 2000.0}  # the console's

# --- the documents ---------------------------------------------------------------------------
CONSOLE_GRAPH = """query LoadCytoscapeGraph($filter: NodeFilter) {
  graph(filter: $filter) {
    nodes { id type phase primaryFunctor secondaryFunctor position { x y }
            coefficients { structural cost energy mep fabrication time }
            properties { material dimensions specifications } status }
    edges { id source target relationshipType weight properties }
    metadata } }"""

_AFFINITY_FIELDS = "affinityType executionStatus formulasExecuted componentId " \
                   "calculationResults"
CONSOLE_AFFINITY = "mutation ExecuteDataAffinity($request: AffinityRequest!) {\n" \
    "  executeDataAffinity(request: $request) {\n" + "".join(
        f"    {kind}Affinity {{ {_AFFINITY_FIELDS} }}\n" for kind in AFFINITY_KINDS) + "  } }"

DEMO_INTROSPECTION = """query IntrospectionQuery {
  __schema { types { name kind description fields { name type { name kind } } } } }"""

DEMO_GRAPH = """query GetGraph($filter: NodeFilter) {
  graph(filter: $filter) {
    nodes { id type phase primaryFunctor coefficients { structural cost energy }
            position { x y } status }
    edges { id source target relationshipType weight }
    metadata } }"""

DEMO_ANALYSIS = """query AnalyzeComponent($nodeId: String!) {
  analyzeComponent(nodeId: $nodeId) {
    structuralScore costEstimate energyEfficiency manufacturingFeasibility } }"""

DEMO_AFFINITY = "mutation ExecuteDataAffinity($request: AffinityRequest!) {\n" \
    "  executeDataAffinity(request: $request) {\n" + "".join(
        f"    {kind}Affinity {{ {_AFFINITY_FIELDS} }}\n"
        for kind in ("structural", "cost", "energy")) + "  } }"

TRIGGER_PULSE = """mutation TriggerPulse($pulseType: PulseType!, $sourceNode: String!, \
$targetNode: String) {
  triggerPulse(pulseType: $pulseType, sourceNode: $sourceNode, targetNode: $targetNode) {
    id pulseType sourceNode targetNode timestamp status data } }"""

UPDATE_POSITION = """mutation UpdateNodePosition($id: String!, $position: PositionInput!) {
  updateNodePosition(id: $id, position: $position) }"""

PULSE_HISTORY = """query GetPulseHistory($limit: Int) {
  pulseHistory(limit: $limit) { id pulseType sourceNode targetNode timestamp status data } }"""

PRINTED_GRAPH = """query LoadCytoscapeGraph {
  graph {
    nodes { id type phase primaryFunctor position { x y }
            coefficients { structural cost energy mep fabrication time } status }
    edges { id source target relationshipType weight } } }"""

PRINTED_FILTER = """query FilterByPhase {
  graph(filter: {phases: [PHASE_1, PHASE_2]}) { nodes { id type primaryFunctor } } }"""

PRINTED_SUBSCRIPTION = """subscription LivePulseEvents {
  pulseEvents { id pulseType sourceNode targetNode timestamp status } }"""

PRINTED_AFFINITY = """mutation ExecuteDataAffinity {
  executeDataAffinity(
    request: {
      componentId: "structural_beam_001"
      affinityTypes: ["structural", "cost", "energy"]
      executionMode: "symbolic_reasoning"
      parameters: { volume_cm3: 1500.0 area_m2: 12.5 length_mm: 3000.0 }
    }
  ) {
    structuralAffinity { affinityType executionStatus calculationResults }
    costAffinity { affinityType calculationResults } } }"""

PRINTED_MOVE = """mutation MoveNode {
  updateNodePosition(id: "node_001" position: {x: 250.0, y: 180.0}) }"""

README_AFFINITY_CONFIG = """query GetAffinityConfig {
  affinityConfiguration { functorTypes { name dataAffinity includedFunctors }
                          availableAffinityTypes } }"""

README_AFFINITY = """mutation ExecuteDataAffinity {
  executeDataAffinity(
    request: {
      componentId: "structural_beam_001"
      affinityTypes: ["structural", "cost", "energy"]
      executionMode: "symbolic_reasoning"
      parameters: { volume_cm3: 1500.0 area_m2: 12.5 length_mm: 3000.0 }
    }
  ) {
    structuralAffinity { affinityType executionStatus formulasExecuted calculationResults }
    costAffinity { affinityType calculationResults }
    energyAffinity { affinityType calculationResults } } }"""

README_GRAPH = """query LoadCytoscapeGraph {
  graph {
    nodes { id type phase primaryFunctor position { x y } coefficients { structural cost energy } }
    edges { id source target relationshipType weight } } }"""

README_SUBSCRIPTION = """subscription LivePulseEvents {
  pulseEvents { id pulseType sourceNode targetNode timestamp status } }"""


# --- helpers ---------------------------------------------------------------------------------
def graphql(query: str, variables: dict[str, object] | None = None,
            reads: tuple[Read, ...] = ()) -> Http:
    """POST /graphql as the old clients send it: `{query, variables}` (the console and the
    demo send `variables: {}` when they have none)."""
    return Http("graphql", "POST", "/graphql", {"query": query, "variables": variables or {}},
                reads=reads)


def refused(field: str) -> tuple[Read, ...]:
    """The demo's error branch: it prints `errors`; the error is the field's own."""
    return (Read("errors[*].message", str), Read("errors[0].path", equals=[field]))


def graph_reads(prefix: str, node_fields: tuple[str, ...], edge_fields: tuple[str, ...]
                ) -> tuple[Read, ...]:
    return (NO_ERRORS, *(Read(f"{prefix}.nodes[*].{f}") for f in node_fields),
            Read(f"{prefix}.nodes[*].id", str), Read(f"{prefix}.edges", list),
            *(Read(f"{prefix}.edges[*].{f}") for f in edge_fields))


def trigger(source: str = "V01") -> Http:
    """A pulse some old client triggers meanwhile (the demo's TriggerPulse mutation)."""
    return graphql(TRIGGER_PULSE, {"pulseType": "FIT_PULSE", "sourceNode": source,
                                   "targetNode": "V04"},
                   reads=(NO_ERRORS, Read("data.triggerPulse.id", str)))


def affinity_reads(kinds: tuple[str, ...], component: str) -> tuple[Read, ...]:
    """What displayAffinityResults reads of each requested type."""
    return (NO_ERRORS, *(r for kind in kinds for r in (
        Read(f"data.executeDataAffinity.{kind}Affinity.executionStatus", str),
        Read(f"data.executeDataAffinity.{kind}Affinity.formulasExecuted", int),
        Read(f"data.executeDataAffinity.{kind}Affinity.componentId", equals=component))))


def subscription(query: str, protocol: str, field: str) -> WebSocket:
    """A subscription over `protocol`, a pulse triggered meanwhile, the pulse received.
    graphql-transport-ws is what Apollo's GraphQLWsLink speaks, graphql-ws (the
    subscriptions-transport-ws protocol) its older WebSocketLink; the old server (strawberry's
    GraphQLRouter) spoke both. The message after the subscription (a ping; for graphql-ws,
    which has none, a second subscription the server refuses) is answered once the server
    has started the first: the pulse is triggered after that."""
    if protocol == "graphql-transport-ws":
        start = {"id": "1", "type": "subscribe", "payload": {"query": query}}
        barrier: tuple[Send | Receive, ...] = (
            Send({"type": "ping"}), Receive(match=(Read("type", equals="pong"),)))
        data = "next"
    else:
        start = {"id": "1", "type": "start", "payload": {"query": query}}
        barrier = (Send({"id": "2", "type": "start",
                         "payload": {"query": "subscription { noSuchField }"}}),
                   Receive(match=(Read("type", equals="error"), Read("id", equals="2"))))
        data = "data"
    pulse = f"payload.data.{field}"
    return WebSocket("graphql", "/graphql", subprotocols=(protocol,), steps=(
        Send({"type": "connection_init", "payload": {}}),
        Receive(match=(Read("type", equals="connection_ack"),)),
        Send(start), *barrier, trigger(),
        Receive(match=(Read("type", equals=data), Read("id", equals="1"),
                       Read(f"{pulse}.sourceNode", equals="V01")),
                reads=(Read(f"{pulse}.id", str), Read(f"{pulse}.pulseType", equals="FIT_PULSE"),
                       Read(f"{pulse}.sourceNode", str), Read(f"{pulse}.targetNode", str),
                       Read(f"{pulse}.timestamp", str), Read(f"{pulse}.status", str)))))


HEALTH = Http("graphql", "GET", "/health")

CASES: list[Case] = [
    # --- the agent console ----------------------------------------------------------------
    Case(CONSOLE, "testGraphQLConnection: GET /health (response.ok)", HEALTH),
    Case(CONSOLE, "LoadCytoscapeGraph, every node into Cytoscape", graphql(
        CONSOLE_GRAPH, reads=graph_reads(
            "data.graph", ("type", "phase", "primaryFunctor", "secondaryFunctor", "position",
                           "coefficients", "properties", "status"),
            ("id", "source", "target", "relationshipType", "weight", "properties")))),
    Case(CONSOLE, "ExecuteDataAffinity: node V01, structural", graphql(
        CONSOLE_AFFINITY, {"request": {"componentId": "V01", "affinityTypes": ["structural"],
                                       "executionMode": "symbolic_reasoning",
                                       "parameters": OLD_PARAMETERS}},
        reads=(*affinity_reads(("structural",), "V01"), Read(
            "data.executeDataAffinity.structuralAffinity.executionStatus",
            equals="completed")))),
    Case(CONSOLE, "ExecuteDataAffinity: node V01, every affinity type", graphql(
        CONSOLE_AFFINITY, {"request": {"componentId": "V01",
                                       "affinityTypes": list(AFFINITY_KINDS),
                                       "executionMode": "symbolic_reasoning",
                                       "parameters": OLD_PARAMETERS}},
        reads=affinity_reads(AFFINITY_KINDS, "V01"))),
    Case(CONSOLE, "ws/cytoscape: a live pulse (handleRealtimeUpdate)", WebSocket(
        "graphql", "/ws/cytoscape", steps=(trigger(), Receive(
            match=(Read("type", equals="pulse_event"), Read("source_node", equals="V01")),
            reads=(Read("type", equals="pulse_event"),))))),
    # --- the demo script ------------------------------------------------------------------
    Case(DEMO, "test_health_check", Http("graphql", "GET", "/health",
                                         reads=(Read("status", str),))),
    Case(DEMO, "test_introspection_query", graphql(DEMO_INTROSPECTION, reads=(
        NO_ERRORS, Read("data.__schema.types[*].name", str),
        Read("data.__schema.types[*].kind", str),
        Read("data.__schema.types[*].fields", (list, type(None))),
        Read("data.__schema.types[*].description", (str, type(None)))))),
    Case(DEMO, "test_graph_query", graphql(DEMO_GRAPH, reads=(
        NO_ERRORS, Read("data.graph.nodes[*].id", str), Read("data.graph.nodes[0].type"),
        Read("data.graph.edges", list)))),
    Case(DEMO, "test_component_analysis (test_component_001)", graphql(
        DEMO_ANALYSIS, {"nodeId": "test_component_001"}, reads=refused("analyzeComponent"))),
    Case(DEMO, "test_pulse_history", graphql(PULSE_HISTORY, {"limit": 10}, reads=(
        NO_ERRORS, Read("data.pulseHistory", list)))),
    Case(DEMO, "test_data_affinity_execution (test_component_001)", graphql(
        DEMO_AFFINITY, {"request": {
            "componentId": "test_component_001",
            "affinityTypes": ["structural", "cost", "energy"],
            "executionMode": "symbolic_reasoning",
            "parameters": {"volume_cm3": 1000.0, "area_m2": 10.5, "length_mm": 2500.0}}},
        reads=refused("executeDataAffinity"))),
    Case(DEMO, "test_pulse_trigger (test_source_001)", graphql(
        TRIGGER_PULSE, {"pulseType": "FIT_PULSE", "sourceNode": "test_source_001",
                        "targetNode": "test_target_001"}, reads=refused("triggerPulse"))),
    Case(DEMO, "test_node_position_update (test_node_001)", graphql(
        UPDATE_POSITION, {"id": "test_node_001", "position": {"x": 150.5, "y": 200.3}},
        reads=refused("updateNodePosition"))),
    Case(DEMO, "test_websocket_connection", WebSocket("graphql", "/ws/cytoscape", steps=())),
    Case(DEMO_PRINTED, "LoadCytoscapeGraph", graphql(PRINTED_GRAPH, reads=graph_reads(
        "data.graph", ("type", "phase", "primaryFunctor", "position", "coefficients",
                       "status"), ("id", "source", "target", "relationshipType", "weight")))),
    Case(DEMO_PRINTED, "FilterByPhase", graphql(PRINTED_FILTER, reads=(
        NO_ERRORS, Read("data.graph.nodes[*].id", str), Read("data.graph.nodes[*].type"),
        Read("data.graph.nodes[*].primaryFunctor")))),
    Case(DEMO_PRINTED, "LivePulseEvents (graphql-transport-ws)", subscription(
        PRINTED_SUBSCRIPTION, "graphql-transport-ws", "pulseEvents")),
    Case(DEMO_PRINTED, "ExecuteDataAffinity (structural_beam_001)", graphql(
        PRINTED_AFFINITY, reads=refused("executeDataAffinity"))),
    Case(DEMO_PRINTED, "MoveNode (node_001)", graphql(PRINTED_MOVE,
                                                      reads=refused("updateNodePosition"))),
    # --- the integration README -----------------------------------------------------------
    Case(README, "GetAffinityConfig", graphql(README_AFFINITY_CONFIG, reads=(
        NO_ERRORS, Read("data.affinityConfiguration.functorTypes[*].name", str),
        Read("data.affinityConfiguration.functorTypes[*].dataAffinity", str),
        Read("data.affinityConfiguration.functorTypes[*].includedFunctors", list),
        Read("data.affinityConfiguration.availableAffinityTypes[*]", str)))),
    Case(README, "ExecuteDataAffinity (structural_beam_001)", graphql(
        README_AFFINITY, reads=refused("executeDataAffinity"))),
    Case(README, "LoadCytoscapeGraph", graphql(README_GRAPH, reads=graph_reads(
        "data.graph", ("type", "phase", "primaryFunctor", "position", "coefficients"),
        ("id", "source", "target", "relationshipType", "weight")))),
    Case(README, "LivePulseEvents (graphql-transport-ws: GraphQLWsLink)", subscription(
        README_SUBSCRIPTION, "graphql-transport-ws", "pulseEvents")),
    Case(README, "LivePulseEvents (graphql-ws: WebSocketLink)", subscription(
        README_SUBSCRIPTION, "graphql-ws", "pulseEvents")),
]
