"""The slowest recent traces per service, for the dashboard's waterfall page (`/traces`).

Every process keeps its last finished spans in memory (runtime/otel.py, `SpanBuffer`) and
serves them at `/traces/local`. The dashboard asks every process it finds (the same replicas
as the health report, gateway/platform_health.py) for the slowest traces that began there,
keeps the SLOWEST per service, then asks every process again for all the spans of those
traces (one trace crosses processes in sprawl) and lays each trace out as a waterfall: its
spans in start order, each with its depth, offset and duration from the trace's start.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from bem.gateway import Gateway
from bem.gateway.platform_health import FETCH_TIMEOUT

if TYPE_CHECKING:
    from bem.runtime.otel import Tracing
    from bem.runtime.runtime import Runtime

SLOWEST = 5  # traces shown per service
LOCAL = "/traces/local"


async def slowest(runtime: Runtime) -> dict[str, Any]:
    tracing = runtime.tracing
    if tracing is None:
        return {"enabled": False, "services": {},
                "message": "tracing is off in the dashboard's process: set "
                           "OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_TRACES_EXPORTER) to turn it on"}
    others = await _other_processes(runtime)
    fetched = await asyncio.gather(*(_get(runtime, url + LOCAL) for url in others))
    roots = tracing.buffer.roots(SLOWEST) + [r for f in fetched for r in f.get("roots", ())]
    chosen = _slowest_per_service(roots)
    ids = ",".join(sorted({r["trace_id"] for rs in chosen.values() for r in rs}))
    spans = _spans_of(tracing, ids)
    if ids:
        more = await asyncio.gather(*(_get(runtime, f"{url}{LOCAL}?trace_ids={ids}")
                                      for url in others))
        spans += [s for m in more for s in m.get("spans", ())]
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in {s["span_id"]: s for s in spans}.values():
        by_trace.setdefault(span["trace_id"], []).append(span)
    return {"enabled": True, **tracing.info(), "processes": 1 + len(others),
            "services": {svc: [waterfall(r, by_trace.get(r["trace_id"], [r])) for r in rs]
                         for svc, rs in sorted(chosen.items())}}


def _spans_of(tracing: Tracing, ids: str) -> list[dict[str, Any]]:
    return tracing.buffer.of_traces(ids.split(",")) if ids else []


def _slowest_per_service(roots: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for root in sorted(roots, key=lambda r: r["end_ns"] - r["start_ns"], reverse=True):
        found = out.setdefault(str(root["service"]), [])
        if len(found) < SLOWEST:
            found.append(root)
    return out


def waterfall(root: dict[str, Any], spans: list[dict[str, Any]]) -> dict[str, Any]:
    """One trace as rows: depth-first from the root, children in start order."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    ids = {s["span_id"] for s in spans}
    for span in spans:
        parent = span["parent_id"] if span["parent_id"] in ids else None
        if span["span_id"] != root["span_id"]:
            children.setdefault(parent or root["span_id"], []).append(span)
    start = min(s["start_ns"] for s in spans)
    rows: list[dict[str, Any]] = []

    def visit(span: dict[str, Any], depth: int) -> None:
        rows.append({"name": span["name"], "service": span["service"], "kind": span["kind"],
                     "depth": depth, "error": span["error"], "cluster": span["cluster"],
                     "pid": span["pid"],
                     "offset_ms": round((span["start_ns"] - start) / 1e6, 3),
                     "duration_ms": round((span["end_ns"] - span["start_ns"]) / 1e6, 3),
                     "attributes": span["attributes"]})
        for child in sorted(children.get(span["span_id"], ()), key=lambda s: s["start_ns"]):
            visit(child, depth + 1)

    visit(root, 0)
    return {"trace_id": root["trace_id"], "name": root["name"],
            "duration_ms": rows[0]["duration_ms"],
            "started_at": round(root["start_ns"] / 1e9, 3), "spans": rows}


async def _other_processes(runtime: Runtime) -> list[str]:
    """A URL of every other live process (health's discovery; answers there are cached)."""
    report = await Gateway.of(runtime).collector.collect()
    urls = []
    for cluster in report["clusters"].values():
        for replica in cluster["replicas"]:
            if replica.get("instance") not in (None, runtime.instance_id) \
                    and "error" not in replica:
                urls.append(replica["url"])
    return urls


async def _get(runtime: Runtime, url: str) -> dict[str, Any]:
    """A process's answer, {} if it has none (tracing off there: 404, or unreachable)."""
    keys = sorted(runtime.settings.api_key_set)  # other gateway ports guard their routes
    try:
        async with runtime.client.http.get(
                url, headers={"X-API-Key": keys[0]} if keys else None,
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT)) as r:
            if r.status != 200:
                return {}
            return orjson.loads(await r.read())  # type: ignore[no-any-return]
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
        return {}
