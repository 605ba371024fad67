"""The old platform's `POST /process` on each engineering service: one envelope, many payloads.

The old clients (Cideation/Endpoint: `neon/container_client.py` and what is built on it) send
`{data, timestamp, source}` with an `X-Request-ID` header and read `{status, results,
processing_time_ms, service}`, `status` being `success`. `data` is the body of the service's
new operation (`ServiceSpec.legacy_operation`) or one of its old payloads
(`ServiceSpec.legacy_payloads`, translated by `services/<name>/legacy.py`). The shape is
chosen by its top-level keys: the one sharing the most keys with `data` wins (ties: the new
body, then the order declared), so a 422 names the fields of the shape the client meant, as
`data.<field>`; data sharing no key with any shape is a 422 listing them all.

Every request is counted in `bem_legacy_requests_total{service, operation}`: the old payload's
name, `envelope` for a new body in the old envelope, `unrecognized` for the rest. See
docs/migration.md.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union

import orjson
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, Field, SkipValidation, create_model
from pydantic import ValidationError as PydanticValidationError

from bem.errors import BemError, ValidationFailed, problems_message
from bem.runtime.runtime import ServiceContext
from bem.runtime.service import (
    ERROR_RESPONSES,
    OldPayload,
    Operation,
    request_context,
    validation_failed,
)

ENVELOPE = "envelope"  # operation label: the new body inside the old envelope
UNRECOGNIZED = "unrecognized"  # operation label: data that is no known shape (a 422)
MAX_FIELDS_LISTED = 12


class LegacyAnswer(BaseModel):
    """The old answer shape; `results` is the old payload's answer or the new operation's."""

    status: str = Field(description="'success' (the old clients test status == 'success')")
    results: Any
    processing_time_ms: float = Field(description="measured time spent serving the request")
    service: str
    timestamp: float | str | None = Field(None, description="the request's, echoed back")


@dataclass(frozen=True)
class Shape:
    """One shape `data` may have: the new body (payload None) or an old payload."""

    name: str
    fields: frozenset[str]
    payload: OldPayload | None

    def describe(self) -> str:
        listed = ", ".join(sorted(self.fields)[:MAX_FIELDS_LISTED])
        return f"{self.name} ({listed})"


def shapes(op: Operation, payloads: Sequence[OldPayload]) -> list[Shape]:
    """The new body first (it wins ties), then the old payloads in their declared order."""
    new = frozenset(op.body_model.model_fields if op.body_model else ()) | set(op.params)
    return [Shape(f"{op.method} {op.path}", new, None),
            *(Shape(p.name, frozenset(p.model.model_fields), p) for p in payloads)]


def choose(table: Sequence[Shape], data: dict[str, Any]) -> Shape | None:
    """The shape sharing the most top-level keys with `data`; empty data is the new body's
    (whose own errors then say what is missing); None when no key is known."""
    if not data:
        return table[0]
    keys = set(data)
    best = max(table, key=lambda s: len(keys & s.fields))  # max keeps the first of a tie
    return best if keys & best.fields else None


def envelope_id(timestamp: Any, source: str | None, request_id: str | None) -> str:
    """Identifies one envelope: an identical resend (a retry) gives the same id."""
    raw = orjson.dumps([timestamp, source, request_id])
    return hashlib.sha256(raw).hexdigest()[:32]


def readdress(exc: BemError, rename: Callable[[str], str]) -> BemError:
    """The same error with every field (and the message's field prefixes) renamed, so an
    error of the new operation names the old field it came from."""
    seen: set[tuple[Any, Any]] = set()
    details = []
    for detail in exc.details:
        if isinstance(detail.get("field"), str):
            detail["field"] = rename(detail["field"])
        if (detail.get("field"), detail.get("message")) not in seen:  # now the same field
            seen.add((detail.get("field"), detail.get("message")))
            details.append(detail)
    exc.details = details
    if exc.field:
        old = exc.field
        exc.field = rename(old)
        # A function, not a template: a backslash in a client's key is no escape.
        exc.message = re.sub(rf"(^|; ){re.escape(old)}:", lambda m: f"{m[1]}{exc.field}:",
                             exc.message)
    if exc.details:
        exc.message = problems_message(exc.details)
    return exc


def _data_field(name: str) -> str:
    return f"data.{name}" if name and name != "body" else "data"


async def _serve_new(op: Operation, data: dict[str, Any], ctx: ServiceContext) -> Any:
    try:
        kwargs = op.bind(data)
    except BemError as exc:
        raise readdress(exc, _data_field) from None
    result = await op.fn(**kwargs, ctx=ctx)
    return op.response.dump_python(result, mode="json")


async def _serve_old(payload: OldPayload, data: dict[str, Any], ctx: ServiceContext,
                     key: str) -> Any:
    try:
        old = payload.model.model_validate(data)
    except PydanticValidationError as exc:
        raise validation_failed(exc.errors(), ("data",)) from None
    return await payload.serve(old, ctx, key)


def _unrecognized(service: str, table: Sequence[Shape], data: dict[str, Any]) -> BemError:
    got = ", ".join(sorted(data)[:MAX_FIELDS_LISTED])
    olds = "; ".join(s.describe() for s in table[1:]) or "none"
    return ValidationFailed(f"data: {service} /process knows none of the fields {got}; send "
                            f"the body of {table[0].describe()}, or an old payload: {olds}",
                            field="data")


def _request_model(ctx: ServiceContext, op: Operation) -> type[BaseModel]:
    """The envelope as OpenAPI shows it: `data` is the new body or one of the old payloads.
    The schema only: `data` is checked by `choose` and the chosen model (SkipValidation)."""
    models = [m for m in (op.body_model, *(p.model for p in ctx.spec.legacy_payloads)) if m]
    data_type = SkipValidation[Union[tuple(models)]]  # type: ignore[valid-type]  # noqa: UP007
    title = "".join(part.title() for part in ctx.name.split("_"))
    return create_model(
        f"{title}ProcessRequest",
        __doc__="The old platform's envelope around the new body or an old payload.",
        data=(Annotated[data_type, Field(description=f"the body of {op.method} {op.path}, or "
                                                     f"an old payload")], ...),
        # strict: a boolean is no time (lax mode read `false` as 0.0)
        timestamp=(Annotated[float, Field(allow_inf_nan=False, strict=True)]
                   | Annotated[str, Field(max_length=64)] | None,
                   Field(None, description="client time (echoed back)")),
        source=(str | None, Field(None, max_length=256,
                                  description="the calling client, e.g. 'orchestrator'")))


def install_process(app: FastAPI, ctx: ServiceContext) -> None:
    """Serve the legacy `POST /process` of `ctx`'s service (which has a legacy_operation)."""
    spec = ctx.spec
    op = spec.get(spec.legacy_operation or "")
    table = shapes(op, spec.legacy_payloads)
    counter = ctx.runtime.metrics.legacy_requests
    model = _request_model(ctx, op)

    async def process(envelope: Any, request: Request) -> LegacyAnswer:
        start = time.perf_counter()
        data = envelope.data
        if not isinstance(data, dict):
            counter.labels(spec.name, ctx.runtime.cluster, UNRECOGNIZED).inc()
            raise ValidationFailed("data: must be a JSON object", field="data")
        shape = choose(table, data)
        counter.labels(spec.name, ctx.runtime.cluster,
                       UNRECOGNIZED if shape is None else
                       ENVELOPE if shape.payload is None else shape.name).inc()
        if shape is None:
            raise _unrecognized(spec.name, table, data)
        if shape.payload is None:
            results = await _serve_new(op, data, ctx)
        else:
            key = envelope_id(envelope.timestamp, envelope.source,
                              request.headers.get("x-request-id"))
            results = await _serve_old(shape.payload, data, ctx, key)
        elapsed = (time.perf_counter() - start) * 1000
        return LegacyAnswer(status="success", results=results,
                            processing_time_ms=round(elapsed, 3), service=spec.name,
                            timestamp=envelope.timestamp)

    # The request model is built at run time, so the signature is given as objects (a string
    # annotation, under `from __future__ import annotations`, could not be resolved).
    process.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("envelope", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                           annotation=model),
         inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                           annotation=Request)],
        return_annotation=LegacyAnswer)
    olds = "".join(f"\n- `{p.name}`: {inspect.getdoc(p.model) or ''}"
                   for p in spec.legacy_payloads)
    app.add_api_route(
        "/process", process, methods=["POST"], tags=["legacy"], responses=ERROR_RESPONSES,
        dependencies=[Depends(request_context)],  # as an operation's Ctx: waits for warm-up
        response_model=LegacyAnswer, summary="The old platform's envelope (migration)",
        description=(f"`data` is the body of `{op.method} {op.path}` ({op.name}), or one of "
                     f"the old platform's payloads:{olds or ' none.'}\n\nThe shape is chosen "
                     f"by the keys of `data`; the answer is the old `{{status, results, "
                     f"processing_time_ms, service}}`. See docs/migration.md."))
