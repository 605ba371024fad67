"""Abuse limits of the GraphQL schema: depth, tokens, aliases; introspection stays allowed.

The limits are validation rules: they reject a document before any resolver runs, so the
schema is exercised directly here (batching, an HTTP-level limit, is in test_schema.py).
"""

from __future__ import annotations

import pytest
from graphql import get_introspection_query

from bem.services.graphql.execution import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS
from bem.services.graphql.schema import schema


def nested(levels: int) -> str:
    """`sampleGraph { nodes { successors { ... { id } } } }`: depth = levels + 2."""
    inner = "id"
    for _ in range(levels):
        inner = f"successors {{ {inner} }}"
    return f"{{ sampleGraph {{ nodes {{ {inner} }} }} }}"


async def errors_of(query: str) -> list[str]:
    result = await schema.execute(query)
    return [e.message for e in result.errors or ()]


async def test_depth_limit() -> None:
    # depth counts the fields with a selection below them: sampleGraph, nodes, successors...
    too_deep = await errors_of(nested(MAX_DEPTH))
    assert too_deep == [f"'anonymous' exceeds maximum operation depth of {MAX_DEPTH}"]
    # (a query just within the limit is answered by a real cluster in test_schema.py)


async def test_token_limit() -> None:
    fields = " ".join("__typename" for _ in range(MAX_TOKENS))
    errors = await errors_of(f"{{ {fields} }}")
    assert errors and "token" in errors[0].lower() and str(MAX_TOKENS) in errors[0]


async def test_alias_limit() -> None:
    aliased = " ".join(f"a{i}: __typename" for i in range(MAX_ALIASES + 1))
    errors = await errors_of(f"{{ {aliased} }}")
    assert errors == [f"{MAX_ALIASES + 1} aliases found. Allowed: {MAX_ALIASES}"]
    allowed = " ".join(f"a{i}: __typename" for i in range(MAX_ALIASES))
    assert await errors_of(f"{{ {allowed} }}") == []


async def test_introspection_is_allowed() -> None:
    result = await schema.execute(get_introspection_query(descriptions=True))
    assert result.errors is None
    types = {t["name"] for t in result.data["__schema"]["types"]}
    assert {"Graph", "Analysis", "Pulse", "Event", "Health", "Metric"} <= types
    assert result.data["__schema"]["subscriptionType"]["name"] == "Subscription"


async def test_unexpected_failures_are_masked_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    # Executed without the gateway's context, the resolver fails with a plain Python error:
    # the client sees no internals, the log has the traceback.
    result = await schema.execute("{ sampleGraph { name } }")
    assert [e.message for e in result.errors or ()] == [
        "internal error in the gateway; see its log"]
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records)


async def test_a_refused_document_stays_refused() -> None:
    # Documents are parsed and validated once and kept: the kept verdict is the same.
    query = nested(MAX_DEPTH)
    first, second = await errors_of(query), await errors_of(query)
    assert first == second == [f"'anonymous' exceeds maximum operation depth of {MAX_DEPTH}"]
    assert schema.prepared(query) is schema.prepared(query)


async def test_subscriptions_have_the_same_limits() -> None:
    # Subscriptions run strawberry's own pipeline, with extensions built from the same limits.
    async def errors(query: str) -> list[str]:
        result = await anext(await schema.subscribe(query))
        return [e.message for e in result.errors or ()]

    aliased = " ".join(f"a{i}: node" for i in range(MAX_ALIASES + 1))
    assert await errors(f"subscription {{ pulses {{ {aliased} }} }}") == [
        f"{MAX_ALIASES + 1} aliases found. Allowed: {MAX_ALIASES}"]
    fields = " ".join("node" for _ in range(MAX_TOKENS))
    too_long = await errors(f"subscription {{ pulses {{ {fields} }} }}")
    assert too_long and str(MAX_TOKENS) in too_long[0]
