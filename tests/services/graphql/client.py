"""GraphQL clients for the gateway tests: over HTTP, and over graphql-transport-ws."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol


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


class TransportWS:
    """A minimal graphql-transport-ws client (the protocol GraphQL over WebSocket uses:
    https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md) on `websockets`."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, **kwargs: Any) -> AsyncIterator[TransportWS]:
        async with connect(url, subprotocols=[Subprotocol("graphql-transport-ws")],
                           **kwargs) as ws:
            client = cls(ws)
            await client.send({"type": "connection_init", "payload": {}})
            assert await client.receive() == {"type": "connection_ack"}
            yield client

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self, timeout: float = 10.0) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))  # type: ignore[no-any-return]

    async def subscribe(self, sub_id: str, query: str,
                        variables: dict[str, Any] | None = None) -> None:
        await self.send({"id": sub_id, "type": "subscribe",
                         "payload": {"query": query, "variables": variables or {}}})
