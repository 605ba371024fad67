"""Hostile GraphQL: random queries from the schema, and documents built to exhaust the server.

tests/services/graphql checks each limit on its own (depth, tokens, aliases, batch size,
introspection). Here a real gateway process meets what an attacker would send: random
queries and mutations over the whole published schema (schemathesis generates them by
introspection, arguments included), fragment cycles, deeply nested JSON variables, the
largest batch of the largest operations the limits allow. Whatever comes in, the answer is
an HTTP 200 or 4xx, never an internal error, and every GraphQL error is one a client caused
(a validation error, or a service's 4xx carried in `extensions.status`).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import graphql
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.graphql import nodes

from bem.services.graphql.execution import MAX_ALIASES, MAX_DEPTH
from bem.services.graphql.schema import MAX_BATCH
from tests.support import Topology

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("BEM_FUZZ_EXAMPLES", "8"))
json_leaves = st.one_of(st.integers(-(2**31), 2**31 - 1).map(nodes.Int),
                        st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
                        st.text(max_size=12).map(nodes.String), st.booleans().map(nodes.Boolean))


def _object(fields: dict[str, graphql.ValueNode]) -> graphql.ObjectValueNode:
    return nodes.Object([graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=v)
                         for k, v in fields.items()])


# The JSON scalar (free-form inputs such as optimisation problems and formula variables)
schemathesis.graphql.scalar("JSON", st.recursive(json_leaves, lambda kids: st.one_of(
    st.lists(kids, max_size=4).map(nodes.List),
    st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), kids, max_size=4)
    .map(_object)), max_leaves=12))


def problems(answer: requests.Response | Any) -> list[str]:
    """What is wrong with an answer to hostile GraphQL (nothing, for a good one)."""
    if answer.status_code >= 500:
        return [f"HTTP {answer.status_code}: {answer.text[:300]}"]
    body = answer.json()
    found = []
    for result in body if isinstance(body, list) else [body]:
        for error in result.get("errors") or ():
            status = (error.get("extensions") or {}).get("status")
            by_client = "path" not in error or (isinstance(status, int) and status < 500)
            if not by_client or "internal error" in error["message"]:
                found.append(str(error)[:400])
    return found


def test_random_operations_over_the_schema(cluster: Topology) -> None:
    schema = schemathesis.graphql.from_url(cluster.url("graphql") + "/graphql")
    failures: list[str] = []
    outcomes: Counter[str] = Counter()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def run(case: Any) -> None:
                answer = case.call(session=session, timeout=30)
                errors = answer.json().get("errors") if answer.status_code == 200 else None
                outcomes["errors" if errors else f"HTTP {answer.status_code}"] += 1
                assert not problems(answer), (case.body, problems(answer))

            try:
                run()
            except Unsatisfiable:
                pass
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label}: {str(exc)[:1500]}")
    print(f"graphql fuzz: {sum(outcomes.values())} operations sent, {dict(outcomes)}")
    assert outcomes["HTTP 200"] > 0
    assert not failures, "\n\n".join(failures)


def post(cluster: Topology, body: Any) -> requests.Response:
    return requests.post(cluster.url("graphql") + "/graphql", json=body, timeout=60)


def test_fragment_cycles_are_refused_before_anything_runs(cluster: Topology) -> None:
    query = """{ sampleGraph { ...A } }
               fragment A on Graph { name ...B }
               fragment B on Graph { nodes { id } ...A }"""
    answer = post(cluster, {"query": query})
    assert answer.status_code == 200 and not problems(answer)
    assert "Cannot spread fragment 'A' within itself" in answer.text


@pytest.mark.parametrize("levels", [600, 5000])  # beyond orjson's encoder, the stdlib decoder
def test_deeply_nested_json_variables_are_a_client_error(cluster: Topology, levels: int
                                                         ) -> None:
    query = "query($v: JSON!) { evaluateExpression(expression: \"x\", variables: $v) " \
            "{ value } }"
    body = '{"query": ' + json.dumps(query) + ', "variables": {"v": ' + '{"a": ' * levels \
        + "1" + "}" * levels + "}}"
    answer = requests.post(cluster.url("graphql") + "/graphql", data=body, timeout=60,
                           headers={"content-type": "application/json"})
    assert answer.status_code < 500 and not problems(answer), answer.text[:300]
    assert answer.status_code == 400 or answer.json()["errors"]


@pytest.mark.parametrize("field", ["selectOptions", "optimizeParameters"])
@pytest.mark.parametrize("value", ["1", "[1, 2]", "\"text\"", "null"])
def test_a_json_argument_of_the_wrong_shape_is_a_client_error(
        cluster: Topology, field: str, value: str) -> None:
    """Found by the fuzzing above: `problem: 1` was an internal error."""
    answer = post(cluster, {"query": f"{{ {field}(problem: {value}) {{ result }} }}"})
    assert answer.status_code == 200 and not problems(answer), answer.text
    assert answer.json()["errors"], answer.text


def test_the_largest_batch_the_limits_allow_is_answered(cluster: Topology) -> None:
    """MAX_BATCH operations of MAX_ALIASES root fields each: the most one request can ask."""
    fields = " ".join(f"f{i}: formula(name: \"roi\") {{ name }}" for i in range(MAX_ALIASES))
    answer = post(cluster, [{"query": f"{{ {fields} }}"}] * MAX_BATCH)
    assert answer.status_code == 200 and not problems(answer)
    assert all(len(r["data"]) == MAX_ALIASES for r in answer.json())
    over = post(cluster, [{"query": f"{{ {fields} x: formula(name: \"roi\") {{ name }} }}"}])
    assert "aliases found" in over.text


def test_depth_is_bounded_whatever_the_path(cluster: Topology) -> None:
    for levels in (MAX_DEPTH * 3, MAX_DEPTH * 200):  # the validator's limit, the parser's
        inner = "id"
        for _ in range(levels):
            inner = f"predecessors {{ {inner} }}"
        answer = post(cluster, {"query": f"{{ sampleGraph {{ nodes {{ {inner} }} }} }}"})
        assert answer.status_code == 200 and not problems(answer)
        assert answer.json()["data"] is None
        assert "exceeds maximum operation depth" in answer.text or \
            "nested too deeply" in answer.text
