"""A GraphQL client over HTTP for the gateway tests."""

from __future__ import annotations

from typing import Any

import httpx


async def gql(http: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None,
              *, expect_errors: bool = False) -> dict[str, Any]:
    """POST a GraphQL operation; the `data` (or, with expect_errors, the whole answer)."""
    answer = await http.post("/graphql", json={"query": query, "variables": variables or {}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    if expect_errors:
        assert body.get("errors"), body
        return body  # type: ignore[no-any-return]
    assert "errors" not in body, body["errors"]
    return body["data"]  # type: ignore[no-any-return]
