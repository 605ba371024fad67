"""The old clients' requests to the six services' own ports: `GET /health` and `POST /process`.

From Cideation/Endpoint (docs/migration.md maps every field):

- `neon/container_client.py` sends every /process body as `{data, timestamp (ISO), source:
  "orchestrator"}` with an `X-Request-ID: req_<epoch seconds>` header, after a `GET /health`
  it only checks for HTTP 200. It reads an answer only when it is a 200, as JSON, and sets
  `status` from it (`result.get("status", "completed")`); neon/orchestrator.py then reads
  that `status` and nothing else.
- `neon/orchestrator.py` sends five stages (`_execute_dag_alpha` ... `_execute_graph_runtime`;
  the DGL stage only when :5006 answers, which is no service of ours), the bodies built by
  `neon/json_transformer.py` from the components it is given (process_bodies.json, recorded
  by running that transformer).
- `tests/test_phase2_container_orchestration.py` and `tests/test_phase1_implementation.py`,
  and the old GraphQL server's resolvers (`frontend/graphql_server.py`), which read
  `status == "success"` and `results.manufacturing_score`, `results.calculations.<type>`,
  `results.formulas_executed`.

A few of those requests cannot be mapped: they are recorded with the 422 they get.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from bem.compat.catalogue import Case, Http, Read

CONTAINERS = {"dag_alpha": "ne-dag-alpha", "functor_types": "ne-functor-types",
              "callback_engine": "ne-callback-engine", "sfde": "sfde",
              "graph_runtime": "ne-graph-runtime-engine",
              "optimization": "ne-optimization-engine"}
STAGES = {"dag_alpha": "_execute_dag_alpha", "functor_types": "_execute_functor_types",
          "callback_engine": "_execute_callback_engine", "sfde": "_execute_sfde_engine",
          "graph_runtime": "_execute_graph_runtime"}
# container_client's envelope: start_time.isoformat() and int(start_time.timestamp())
WHEN, REQUEST_ID = "2025-06-20T14:35:40.512337", "req_1750430140"
CLIENT_HEADERS = {"X-Request-ID": REQUEST_ID}
STATUS = (Read("status", str),)  # what container_client and the orchestrator read
SUCCESS = Read("status", equals="success")  # what the old tests and GraphQL resolvers test


@cache
def bodies() -> dict[str, Any]:
    raw = resources.files(__package__).joinpath("process_bodies.json").read_text()
    return json.loads(raw)  # type: ignore[no-any-return]


def via_client(service: str, data: Any, reads: tuple[Read, ...] = STATUS,
               status: int = 200) -> Http:
    """A request of neon/container_client.py `_make_request`."""
    return Http(service, "POST", "/process",
                {"data": data, "timestamp": WHEN, "source": "orchestrator"},
                headers=CLIENT_HEADERS, status=status, reads=reads)


def health_checks() -> list[Case]:
    return [Case("neon/container_client.py", f"_check_container_health ({name})",
                 Http(service, "GET", "/health")) for service, name in CONTAINERS.items()]


def pipeline(source: str, group: str, components: str, refused: dict[str, str]
             ) -> list[Case]:
    """The orchestrator's five stages over one set of components; `refused`: the stages
    that are a 422, and why."""
    cases = []
    for service, stage in STAGES.items():
        why = refused.get(service)
        name = f"execute_pipeline {stage} over {components}" + (f" ({why})" if why else "")
        exchange = via_client(service, bodies()[group][service],
                              reads=() if why else STATUS, status=422 if why else 200)
        cases.append(Case(source, name, exchange))
    return cases


# tests/test_phase2_container_orchestration.py ---------------------------------------------
PHASE2 = "tests/test_phase2_container_orchestration.py"
PHASE2_DATA = {
    "components": [
        {"id": "comp_001", "type": "beam", "primary_functor": "structural",
         "status": "processed"},
        {"id": "comp_002", "type": "column", "primary_functor": "structural",
         "status": "completed"},
        {"id": "comp_003", "type": "slab", "primary_functor": "cost", "status": "processed"},
    ],
    "node_sequence": ["comp_001", "comp_002", "comp_003"],
    "phase": "phase_2",
    "affinity_types": ["structural", "cost", "energy"],
}
CLIENT_TEST_DATA = {
    "components": [{"id": "client_test_001", "type": "beam", "primary_functor": "structural"}],
    "phase": "phase_2",
}
NO_OPTIONS = "no old payload maps: a 422 naming data.components[0].options"


def phase2_cases() -> list[Case]:
    cases = []
    for service, name in CONTAINERS.items():
        cases.append(Case(PHASE2, f"test_container_services: GET /health ({name})",
                          Http(service, "GET", "/health", reads=(Read("status", str),))))
        mapped = service != "optimization"
        cases.append(Case(
            PHASE2, f"test_container_services: POST /process ({name})" +
            ("" if mapped else f" - {NO_OPTIONS}"),
            Http(service, "POST", "/process",
                 {"data": PHASE2_DATA, "timestamp": "2025-06-20T14:35:41.101927"},
                 status=200 if mapped else 422, reads=STATUS if mapped else ())))
    cases += pipeline(PHASE2, "test_phase2_orchestrator", "test_orchestrator's components",
                      {"callback_engine": "its components have `id`, the transformer reads "
                                          "`component_id`: null, a 422 naming "
                                          "data.callbacks[0].component_id"})
    # test_container_client calls call_container without await, so it never sends these;
    # they are the requests it means, and it tests status == "success".
    cases += [Case(PHASE2, f"test_container_client ({CONTAINERS[s]}; the requests it means: "
                           f"it never awaits them)", via_client(s, CLIENT_TEST_DATA,
                                                                reads=(SUCCESS,)))
              for s in STAGES]
    return cases


# tests/test_phase1_implementation.py ----------------------------------------------------
PHASE1 = "tests/test_phase1_implementation.py"


def phase1_cases() -> list[Case]:
    unknown = Case(PHASE1, "test_container_communication: call_container(DAG_ALPHA, "
                           "{'test': 'data'}) (expected to fail; a 422 naming data)",
                   via_client("dag_alpha", {"test": "data"}, reads=(), status=422))
    return [unknown, *pipeline(PHASE1, "test_phase1_orchestrator",
                               "test_orchestrator_integration's mock components", {})]


# frontend/graphql_server.py -------------------------------------------------------------
GRAPHQL = "frontend/graphql_server.py"
# A node as load_graph_from_db makes it from a component row (neon/test_pipeline.py's
# comp_001), in the shape analyze_component sends: node.properties.__dict__.
NODE_COMPONENT = {
    "id": "comp_001", "type": "structural", "primary_functor": "structural",
    "properties": {"material": "Structural Steel",
                   "dimensions": {"length_mm": 5000.0, "width_mm": 300.0, "height_mm": 400.0},
                   "specifications": {"component_type": "structural", "geometry_type": "",
                                      "surface_area_m2": 12.5}},
}


def affinity_request(component: str, types: list[str], parameters: dict[str, float]
                     ) -> dict[str, Any]:
    """What execute_data_affinity sends for an AffinityRequest on a load_graph_from_db node."""
    context = {"component_type": "structural", "has_spatial_data": True,
               "has_geometry": True, "has_dimensions": True, "materials_count": 1}
    return {"sfde_requests": [{"component_id": component, "affinity_type": t,
                               "input_parameters": parameters, "formula_context": context}
                              for t in types],
            "affinity_types": types, "execution_mode": "symbolic_reasoning"}


def graphql_cases() -> list[Case]:
    analyze = {"components": [NODE_COMPONENT]}
    demo = affinity_request("test_component_001", ["structural", "cost", "energy"],
                            {"volume_cm3": 1000.0, "area_m2": 10.5, "length_mm": 2500.0})
    console_types = ["structural", "cost", "energy", "mep", "spatial", "time"]
    console = affinity_request("comp_001", console_types,
                               {"volume_cm3": 1000.0, "area_m2": 10.0, "length_mm": 2000.0})

    def affinity_reads(types: list[str]) -> tuple[Read, ...]:
        return (SUCCESS, Read("results.formulas_executed", int),
                *(Read(f"results.calculations.{t}", dict) for t in types))

    return [
        # The resolvers call call_container without await: these are the requests they mean.
        Case(GRAPHQL, "analyze_component: DAG_ALPHA structural score",
             via_client("dag_alpha", analyze, reads=(
                 SUCCESS, Read("results.manufacturing_score", (float, type(None)))))),
        Case(GRAPHQL, "analyze_component: SFDE_ENGINE cost estimate",
             via_client("sfde", {**analyze, "affinity_types": ["cost"]}, reads=(
                 SUCCESS, Read("results.calculations.cost.total_cost",
                               (float, type(None)))))),
        Case(GRAPHQL, "execute_data_affinity (the request of frontend/test_graphql_demo.py)",
             via_client("sfde", demo, reads=affinity_reads(["structural", "cost", "energy"]))),
        Case(GRAPHQL, "execute_data_affinity (every type frontend/agent_console_graphql.html "
                      "offers, with its parameters)",
             via_client("sfde", console, reads=affinity_reads(console_types))),
    ]


CASES: list[Case] = [
    *health_checks(),
    *pipeline("neon/orchestrator.py", "pipeline",
              "neon/test_pipeline.py's database components", {}),
    *phase2_cases(),
    *phase1_cases(),
    *graphql_cases(),
]
