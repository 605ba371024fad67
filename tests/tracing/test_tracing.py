"""Tracing in one in-loop cluster: off by default and then absent, the spans of the cache,
the pool and GraphQL resolvers, the span buffer the dashboard reads, a collector that is
down, and log lines with trace ids."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest

from bem.runtime.logs import JsonFormatter, TextFormatter, TraceIds
from bem.settings import SettingsError, load_settings
from tests.otlp import Receiver, Span, otlp_receiver
from tests.support import REPO, free_port, make_settings, metric_total, run_cluster, url_of


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as rx:
        yield rx


@pytest.fixture
async def traced(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """A single cluster exporting to the receiver every 100 ms; yields its base URL maker."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    settings = make_settings(otel_exporter_otlp_endpoint=receiver.endpoint, inline_budget_ms=0)
    async with run_cluster("single", settings) as sup:
        yield sup  # type: ignore[misc]


def test_off_by_default_and_nothing_of_the_sdk_is_loaded() -> None:
    code = (
        "import sys\n"
        "from bem.runtime.runtime import Runtime\n"
        "from bem.runtime.app import create_app\n"
        "from bem.clusters import PLACEMENT, members\n"
        "from bem.services import spec\n"
        "from bem.settings import load_settings\n"
        "rt = Runtime(load_settings(), 'single', [spec(n) for n in members('single')], "
        "PLACEMENT)\n"
        "apps = [create_app(ctx) for ctx in rt.contexts.values()]\n"
        "assert rt.tracing is None and type(rt.client).__name__ == 'ServiceClient'\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk.trace', "
        "'opentelemetry.exporter', 'bem.runtime.spans', 'bem.runtime.otel'))]\n"
        "assert not loaded, loaded\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_the_standard_variables_turn_it_on_and_are_validated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert not load_settings().tracing
    assert load_settings(otel_exporter_otlp_endpoint="http://c:4318").tracing
    assert load_settings(otel_exporter_otlp_traces_endpoint="http://c:4318/v1/traces").tracing
    assert load_settings(otel_traces_exporter="console").tracing
    assert not load_settings(otel_traces_exporter="none",
                             otel_exporter_otlp_endpoint="http://c:4318").tracing
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "sometimes")
    with pytest.raises(SettingsError, match="OTEL_TRACES_SAMPLER"):
        load_settings()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "1.5")
    with pytest.raises(SettingsError, match="OTEL_TRACES_SAMPLER_ARG"):
        load_settings()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        load_settings()


async def test_cache_levels_pool_tasks_and_resolvers_have_spans(
        traced: object, receiver: Receiver, sample: dict[str, object]) -> None:
    graph_runtime, graphql = url_of(traced, "graph_runtime"), url_of(traced, "graphql")  # type: ignore[arg-type]
    body = {"graph": sample, "metrics": ["betweenness"]}
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(2):
            assert (await http.post(graph_runtime + "/analyze", json=body)).status_code == 200
        r = await http.post(graphql + "/graphql",
                            json={"query": '{ formula(name: "roi") { name } }'})
        assert r.status_code == 200 and "errors" not in r.json(), r.text

    def levels(spans: list[Span]) -> list[str] | None:
        found = [s.attributes["bem.cache.level"] for s in spans if s.name == "cache.lookup"
                 and s.attributes["bem.cache.operation"] == "graph_runtime.analyze"]
        return found if len(found) >= 2 else None

    assert receiver.wait_for(levels)[-2:] == ["miss", "l1"]
    execute = receiver.wait_for(lambda spans: next(
        (s for s in spans if s.name == "pool.execute"), None))
    task = next(s for s in receiver.trace(execute.trace_id) if s.span_id == execute.parent_id)
    assert task.name == "pool.task" and execute.start_ns >= task.start_ns
    assert execute.end_ns <= task.end_ns and execute.attributes["bem.service"] == "graph_runtime"
    resolver = receiver.wait_for(lambda spans: next(
        (s for s in spans if s.name == "graphql.resolve Query.formula"), None))
    trace = {s.span_id: s for s in receiver.trace(resolver.trace_id)}
    assert trace[resolver.parent_id].name == "POST /graphql"
    assert any(s.name == "sfde.get_formula" and s.parent_id == resolver.span_id
               for s in trace.values()), sorted(s.name for s in trace.values())


async def test_the_span_buffer_answers_roots_and_traces(traced: object,
                                                        sample: dict[str, object]) -> None:
    dag = url_of(traced, "dag_alpha")  # type: ignore[arg-type]
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.post(dag + "/run", json={"graph": sample})).status_code == 200
        roots = (await http.get(dag + "/traces/local")).json()["roots"]
        run = next(r for r in roots if r["name"] == "POST /run")
        spans = (await http.get(dag + "/traces/local",
                                params={"trace_ids": run["trace_id"]})).json()["spans"]
        assert {"POST /run", "graph_runtime.analyze", "POST /analyze"} <= \
            {s["name"] for s in spans}
        bad = await http.get(dag + "/traces/local", params={"trace_ids": "nope"})
        assert bad.status_code == 422 and bad.json()["field"] == "trace_ids"


async def test_a_collector_that_is_down_costs_only_dropped_spans(
        monkeypatch: pytest.MonkeyPatch, sample: dict[str, object]) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")
    settings = make_settings(otel_exporter_otlp_endpoint=f"http://127.0.0.1:{free_port()}")
    async with run_cluster("single", settings) as sup, httpx.AsyncClient(timeout=30) as http:
        for _ in range(3):
            r = await http.post(url_of(sup, "dag_alpha") + "/run", json={"graph": sample})
            assert r.status_code == 200
        deadline = time.monotonic() + 20
        dropped = 0.0
        while dropped == 0 and time.monotonic() < deadline:
            text = (await http.get(url_of(sup, "dag_alpha") + "/metrics")).text
            dropped = metric_total(text, "bem_trace_spans_dropped_total",
                                   reason="export_failed")
            await asyncio.sleep(0.2)
        assert dropped > 0
        assert metric_total(text, "bem_trace_spans_exported_total") == 0


def test_log_lines_carry_trace_and_span_ids() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    text_out, json_out = io.StringIO(), io.StringIO()
    logger = logging.getLogger("bem.test.logs")
    for stream, formatter in ((text_out, TextFormatter("%(message)s")),
                              (json_out, JsonFormatter("single"))):
        handler = logging.StreamHandler(stream)
        handler.addFilter(TraceIds(tracing=True))
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    with tracer.start_as_current_span("work") as span:
        logger.info("inside %s", "a span")
    logger.info("outside")
    ids = span.get_span_context()
    trace_id, span_id = f"{ids.trace_id:032x}", f"{ids.span_id:016x}"
    assert text_out.getvalue().splitlines() == [
        f"inside a span trace_id={trace_id} span_id={span_id}", "outside"]
    inside, outside = (orjson.loads(line) for line in json_out.getvalue().splitlines())
    assert inside["message"] == "inside a span" and inside["process"] == "single"
    assert (inside["trace_id"], inside["span_id"]) == (trace_id, span_id)
    assert "trace_id" not in outside and outside["level"] == "info"
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)


async def test_a_trace_its_caller_did_not_sample_is_not_recorded_anywhere(
        traced: object, sample: dict[str, object]) -> None:
    dag = url_of(traced, "dag_alpha")  # type: ignore[arg-type]
    unsampled = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-00"
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(dag + "/run", json={"graph": sample},
                            headers={"traceparent": unsampled})
        assert r.status_code == 200
        spans = (await http.get(dag + "/traces/local",
                                params={"trace_ids": "ab" * 16})).json()["spans"]
    assert spans == []
