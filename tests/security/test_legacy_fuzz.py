"""Hostile old payloads: POST /process on the six services with `data` built from the old
platform's own vocabulary (the top-level fields of every shape a service accepts, and the
fields nested inside them), and near misses: a request an old client really sends
(bem/compat/cases) with one part replaced by something hostile, so requests reach deep into
a translation. Whatever comes in, the answer is a 200 or a 4xx, and every 422 names a field
under `data`.

test_openapi.py fuzzes /process from its OpenAPI too (schema-valid and -invalid bodies); this
adds the near misses a schema would not generate: right keys, wrong values, mixed shapes.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bem.compat.cases import all_cases
from bem.compat.catalogue import Http
from bem.runtime.legacy import shapes
from bem.services import spec
from tests.support import Topology

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("BEM_FUZZ_EXAMPLES", "8")) * 10
SERVICES = ["dag_alpha", "functor_types", "callback_engine", "sfde", "graph_runtime",
            "optimization"]
# Fields inside the old payloads (neon/json_transformer.py) and the values they take.
NESTED = ["id", "component_id", "node_id", "source_node", "target_node", "affinity_type",
          "input_parameters", "callback_type", "phase", "properties", "centroid", "bbox",
          "volume", "area", "dimensions", "nodes", "edges", "weight", "dictionary", "w", "L",
          "length_mm", "width_mm", "height_mm", "quantity", "unit_price", "execution_mode",
          "formula", "params", "graph", "options", "type", "node", "idempotency_key"]
WORDS = ["V01", "V04", "comp_001", "structural", "cost", "energy", "spatial", "mep",
         "relational", "combinatorial", "dag", "alpha", "beta", "cross_phase", "stateless",
         "build_and_execute", "deterministic", "roi", "", "x" * 200]
leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                   st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1]),
                   st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(WORDS),
                   st.text(max_size=8))


def values() -> st.SearchStrategy[Any]:
    return st.recursive(leaves, lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.dictionaries(st.sampled_from(NESTED), kids, max_size=5)), max_leaves=24)


def data_for(service: str) -> st.SearchStrategy[dict[str, Any]]:
    s = spec(service)
    fields = sorted(set().union(*(x.fields for x in shapes(s.get(str(s.legacy_operation)),
                                                           s.legacy_payloads))))
    return st.dictionaries(st.sampled_from([*fields, "test"]), values(), max_size=5)


def recorded(service: str) -> list[dict[str, Any]]:
    """The `data` of every recorded old /process request to the service (bem compat)."""
    return [c.exchange.body["data"] for c in all_cases() if isinstance(c.exchange, Http)
            and c.exchange.service == service and c.exchange.path == "/process"]


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [path] + [p for k, v in value.items() for p in leaf_paths(v, (*path, k))]
    if isinstance(value, list):
        return [path] + [p for i, v in enumerate(value) for p in leaf_paths(v, (*path, i))]
    return [path]


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


@st.composite
def near_misses(draw: st.DrawFn, service: str) -> dict[str, Any]:
    """A recorded old payload with one part replaced by something hostile."""
    data = draw(st.sampled_from(recorded(service)))
    path = draw(st.sampled_from([p for p in leaf_paths(data) if p]))
    return replaced(data, path, draw(values()))  # type: ignore[no-any-return]


def check(url: str, http: requests.Session, data: dict[str, Any],
          statuses: Counter[int], problems: list[str]) -> None:
    r = http.post(url, json={"data": data, "timestamp": "2025-06-20T14:35:40"}, timeout=30)
    statuses[r.status_code] += 1
    if r.status_code >= 500 or (r.status_code != 200 and r.status_code >= 300 and
                                r.status_code not in (400, 404, 413, 422, 507)):
        problems.append(f"HTTP {r.status_code} for {data!r}: {r.text[:300]}")
    elif r.status_code == 422 and not str(r.json().get("field", "")).startswith("data"):
        problems.append(f"422 without a data field for {data!r}: {r.text[:300]}")


@pytest.mark.parametrize("kind", ["random", "near_miss"])
@pytest.mark.parametrize("service", SERVICES)
def test_old_payloads_never_crash_the_service(cluster: Topology, service: str, kind: str
                                              ) -> None:
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    strategy = data_for(service) if kind == "random" else near_misses(service)
    with requests.Session() as http:
        url = cluster.url(service) + "/process"

        @given(data=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(data: dict[str, Any]) -> None:
            check(url, http, data, statuses, problems)

        run()
    print(f"legacy fuzz {service} ({kind}): {sum(statuses.values())} requests, "
          f"statuses {dict(sorted(statuses.items()))}")
    assert not problems, "\n".join(problems[:5])
    assert statuses[422] > 0
