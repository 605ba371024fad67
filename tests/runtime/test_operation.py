"""One operation definition serves HTTP and in-process calls alike, or is refused at once.

A parameter FastAPI reads from the request but an in-process call cannot supply (a header,
a cookie, a dependency other than Ctx, a second body) would make the two diverge silently:
the decorator refuses it when the module defining the operation is imported.
"""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import Body, Cookie, Depends, Header, Query, Request, Response
from pydantic import BaseModel

from bem.errors import ValidationFailed
from bem.runtime.runtime import Ctx
from bem.runtime.service import ServiceSpec, operation_of
from bem.services.graph_runtime import api as graph_runtime


class Item(BaseModel):
    name: str


class Other(BaseModel):
    size: int


def fresh() -> ServiceSpec:
    return ServiceSpec(name="probe", title="probe", description="")


async def _user() -> str:
    return "someone"


def test_what_both_transports_supply_is_accepted() -> None:
    spec = fresh()

    @spec.operation("POST", "/items/{key}")
    async def put(key: str, body: Item, ctx: Ctx, response: Response = None,  # type: ignore[assignment]
                  limit: Annotated[int, Query(ge=1)] = 10) -> Item:
        return body

    op = operation_of(put)
    assert (op.path_params, op.query_params, op.body_param) == (("key",), ("limit",), "body")
    assert op.bind(Item(name="a"), {"key": "k", "limit": "3"})["limit"] == 3


@pytest.mark.parametrize(("annotation", "what"), [
    (Annotated[str, Header()], "a header"),
    (Annotated[str, Cookie()], "a cookie"),
    (Annotated[str, Depends(_user)], "a dependency"),
    (Annotated[str, Body(embed=True)], "an explicit Body"),
])
def test_a_parameter_only_http_can_supply_is_refused(annotation: Any, what: str) -> None:
    spec = fresh()

    async def get(token: str, ctx: Ctx) -> Item:
        return Item(name=token)

    get.__annotations__["token"] = annotation
    with pytest.raises(TypeError, match=f"probe.get: parameter 'token' is {what}"):
        spec.operation("GET", "/")(get)
    assert spec.operations == {}


def test_a_default_marker_is_refused_too() -> None:
    spec = fresh()
    with pytest.raises(TypeError, match="'token' is a header"):
        @spec.operation("GET", "/")
        async def get(ctx: Ctx, token: str = Header()) -> Item:
            return Item(name=token)


def test_a_second_body_is_refused() -> None:
    spec = fresh()
    with pytest.raises(TypeError, match="a second body parameter 'other'"):
        @spec.operation("POST", "/")
        async def post(item: Item, other: Other, ctx: Ctx) -> Item:
            return item


def test_a_model_hidden_in_a_parameter_or_the_raw_request_is_refused() -> None:
    spec = fresh()
    with pytest.raises(TypeError, match=r"'items' .* holds a model"):
        @spec.operation("POST", "/")
        async def post(items: list[Item], ctx: Ctx) -> Item:
            return items[0]
    with pytest.raises(TypeError, match="'request' is the raw Request"):
        @spec.operation("GET", "/")
        async def get(request: Request, ctx: Ctx) -> Item:
            return Item(name="x")


def test_calls_name_the_programming_error() -> None:
    """A call with what the operation does not take is the caller's bug, said at once."""
    async def plain(ctx: Ctx) -> None: ...

    with pytest.raises(TypeError, match="is not a service operation"):
        operation_of(plain)
    op = operation_of(graph_runtime.get_graph)
    with pytest.raises(TypeError, match=r"no parameter 'graphid'.*its parameters: graph_id"):
        op.bind(None, {"graphid": "x"})
    with pytest.raises(TypeError, match="takes no body"):
        op.bind({"graph_id": "x"})


def test_a_bad_parameter_is_named_as_http_names_it() -> None:
    op = operation_of(graph_runtime.get_layout)
    with pytest.raises(ValidationFailed) as info:
        op.bind(None, {"graph_id": 12})
    assert info.value.field == "query.graph_id"  # what FastAPI's loc ("query", ...) gives
