"""The OpenTelemetry SDK of one process: tracer providers, export, the recent-span buffer.

Imported only when tracing is on (runtime/tracing.py). One TracerProvider per member
service, so that every span names the service that did the work (`service.name`, unless
OTEL_SERVICE_NAME gives the whole process one name) and a trace looks the same whether its
services share a process or not; all providers of a process share one sampler setting, one
BatchSpanProcessor and one exporter. Resource attributes: service.namespace `bem`, the
cluster (`bem.cluster`), the instance id, host and pid, plus OTEL_RESOURCE_ATTRIBUTES.

Export: the BatchSpanProcessor queues finished spans and a thread of its own encodes and
posts them (OTLP/HTTP protobuf), so the event loop only appends to a deque. A collector that
is down or slow costs dropped spans, nothing else; they are counted in
`bem_trace_spans_dropped_total{reason=queue_full|export_failed}`. The other OTEL_BSP_* and
OTEL_EXPORTER_OTLP_* variables (headers, timeout, compression, queue size) are the SDK's own.

Every finished span is also kept in a bounded in-process buffer (`SpanBuffer`), which the
dashboard reads to draw the slowest recent traces (services/dashboard/traces.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import sampling as samplers
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bem.runtime.metrics import SHARED
from bem.runtime.trace_carry import TRACEPARENT

if TYPE_CHECKING:
    from bem.settings import Settings

log = logging.getLogger("bem.tracing")

BUFFER_SPANS = 4096  # finished spans kept for the dashboard (about 1 MB)
SHUTDOWN_SECONDS = 5.0  # longest wait at shutdown for the last spans to leave
PROPAGATOR = TraceContextTextMapPropagator()


def traces_endpoint(settings: Settings) -> str | None:
    """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, else OTEL_EXPORTER_OTLP_ENDPOINT plus
    /v1/traces (the specification's rule), else None (the SDK's default, localhost:4318)."""
    if settings.otel_exporter_otlp_traces_endpoint:
        return settings.otel_exporter_otlp_traces_endpoint
    if settings.otel_exporter_otlp_endpoint:
        return settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    return None


def sampler(settings: Settings) -> samplers.Sampler:
    ratio = 1.0 if settings.otel_traces_sampler_arg is None else settings.otel_traces_sampler_arg
    return {
        "always_on": lambda: samplers.ALWAYS_ON,
        "always_off": lambda: samplers.ALWAYS_OFF,
        "traceidratio": lambda: samplers.TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: samplers.ParentBased(samplers.ALWAYS_ON),
        "parentbased_always_off": lambda: samplers.ParentBased(samplers.ALWAYS_OFF),
        "parentbased_traceidratio": lambda: samplers.ParentBased(
            samplers.TraceIdRatioBased(ratio)),
    }[settings.otel_traces_sampler]()


class CountingExporter(SpanExporter):
    """The real exporter, with what it could not deliver counted (it runs in the batch
    processor's thread, never on the event loop)."""

    def __init__(self, inner: SpanExporter, dropped: Any, exported: Any) -> None:
        self.inner = inner
        self.dropped = dropped
        self.exported = exported

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # an exporter bug must not lose more than this batch
            log.warning("span export failed: %s", exc)
            result = SpanExportResult.FAILURE
        (self.exported if result is SpanExportResult.SUCCESS else self.dropped).inc(len(spans))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _QueueDrops:
    """The batch processor's own drop report (a full queue), counted in our metric.

    The SDK reports drops to an internal metrics object (`ProcessorMetricsT`); this one
    stands in for it. If a later SDK moves that hook, drops are still logged by the SDK.
    """

    def __init__(self, counter: Any, cluster: str) -> None:
        self.counter = counter
        self.cluster = cluster

    def register_queue_size(self, _get: Any) -> None:
        return None

    def drop_items(self, count: int, error_type: str = "queue_full") -> None:
        self.counter.labels(SHARED, self.cluster, error_type).inc(count)

    def finish_items(self, count: int) -> None:
        return None


class SpanBuffer(SpanProcessor):
    """The last `capacity` finished spans of the process, as plain dicts for the dashboard."""

    def __init__(self, capacity: int = BUFFER_SPANS) -> None:
        self.spans: deque[dict[str, Any]] = deque(maxlen=capacity)

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        parent = span.parent
        resource = span.resource.attributes
        self.spans.append({
            "trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}",
            "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
            "remote_parent": bool(parent is not None and parent.is_remote),
            "name": span.name, "kind": span.kind.name.lower(),
            "service": span.attributes.get("bem.service") or resource.get("service.name"),
            "cluster": resource.get("bem.cluster"), "pid": resource.get("process.pid"),
            "start_ns": span.start_time, "end_ns": span.end_time,
            "error": span.status.status_code is StatusCode.ERROR,
            "attributes": {k: v for k, v in span.attributes.items()
                           if isinstance(v, str | int | float | bool)}})

    def roots(self, per_service: int) -> list[dict[str, Any]]:
        """The slowest traces that began in this process, `per_service` per service: their
        root spans (no parent at all)."""
        by_service: dict[str, list[dict[str, Any]]] = {}
        for span in list(self.spans):
            if span["parent_id"] is None:
                by_service.setdefault(str(span["service"]), []).append(span)
        out = []
        for spans in by_service.values():
            spans.sort(key=lambda s: s["end_ns"] - s["start_ns"], reverse=True)
            out += spans[:per_service]
        return out

    def of_traces(self, trace_ids: Iterable[str]) -> list[dict[str, Any]]:
        wanted = set(trace_ids)
        return [s for s in list(self.spans) if s["trace_id"] in wanted]


class Tracing:
    """The tracers of one process (see the module docstring); `runtime.tracing` when on."""

    def __init__(self, settings: Settings, runtime: Any) -> None:
        """`runtime`: the process's Runtime (typed Any: runtime/tracing.py says why)."""
        self.cluster = runtime.cluster
        self.services = runtime.placement.services
        self.service_name = settings.otel_service_name
        self.dropped = runtime.metrics.trace_spans_dropped
        exported = runtime.metrics.trace_spans_exported
        self.exporter_name = settings.otel_traces_exporter or "otlp"
        if self.exporter_name == "console":
            inner: SpanExporter = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            inner = OTLPSpanExporter(endpoint=traces_endpoint(settings))
        self.endpoint = traces_endpoint(settings) or "http://localhost:4318/v1/traces"
        exporter = CountingExporter(inner, self.dropped.labels(SHARED, self.cluster,
                                                               "export_failed"),
                                    exported.labels(SHARED, self.cluster))
        self.batch = BatchSpanProcessor(exporter)
        drops = _QueueDrops(self.dropped, self.cluster)
        inner_processor = getattr(self.batch, "_batch_processor", None)
        if inner_processor is not None and hasattr(inner_processor, "_metrics"):
            inner_processor._metrics = drops
        self.buffer = SpanBuffer()
        self.sampler = sampler(settings)
        # Under a parent-based sampler a span whose parent is not sampled is not either: no
        # need to ask the SDK for one (~20 us each); the parent's non-recording span stands in.
        self.parent_based = settings.otel_traces_sampler.startswith("parentbased_")
        self._resource = {"service.namespace": "bem", "service.version": runtime.version,
                          "service.instance.id": runtime.instance_id,
                          "bem.cluster": runtime.cluster, "host.name": socket.gethostname(),
                          "process.pid": os.getpid()}
        self._tracers: dict[str, Tracer] = {}
        self._providers: list[TracerProvider] = []

    def tracer(self, service: str) -> Tracer:
        """The tracer whose spans are `service`'s (one provider, one resource, per service)."""
        tracer = self._tracers.get(service)
        if tracer is None:
            resource = Resource.create({**self._resource,
                                        "service.name": self.service_name or service})
            provider = TracerProvider(sampler=self.sampler, resource=resource,
                                      shutdown_on_exit=False)
            provider.add_span_processor(self.batch)
            provider.add_span_processor(self.buffer)
            self._providers.append(provider)
            tracer = self._tracers[service] = provider.get_tracer("bem")
        return tracer

    def carrier(self) -> dict[str, str]:
        """The current trace context as W3C headers (`traceparent`); {} outside any span."""
        out: dict[str, str] = {}
        PROPAGATOR.inject(out)
        return {TRACEPARENT: out[TRACEPARENT]} if TRACEPARENT in out else {}

    def headers(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """Request headers with the current trace context in place of any they carried."""
        found = self.carrier()
        if not found:
            return headers
        kept = [(k, v) for k, v in headers if k.lower() not in (b"traceparent", b"tracestate")]
        return [*kept, (b"traceparent", found[TRACEPARENT].encode())]

    @staticmethod
    def extract(carrier: dict[str, str]) -> otel_context.Context:
        return PROPAGATOR.extract(carrier)

    def start(self, service: str, name: str, *, kind: SpanKind = SpanKind.INTERNAL,
              attributes: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """A current span of `service` (a context manager), with `bem.service` set."""
        if self.parent_based and kwargs.get("context") is None:
            current = trace.get_current_span()
            ctx = current.get_span_context()
            if ctx.is_valid and not ctx.trace_flags.sampled:
                return contextlib.nullcontext(current)
        attrs = {"bem.service": service, **(attributes or {})}
        return self.tracer(service).start_as_current_span(name, kind=kind, attributes=attrs,
                                                          **kwargs)

    def info(self) -> dict[str, Any]:
        return {"enabled": True, "exporter": self.exporter_name, "endpoint": self.endpoint,
                "sampler": type(self.sampler).__name__}

    async def close(self) -> None:
        """Send what is queued, waiting SHUTDOWN_SECONDS at most (off the event loop)."""
        try:
            await asyncio.wait_for(asyncio.to_thread(self.batch.shutdown), SHUTDOWN_SECONDS)
        except TimeoutError:
            log.warning("tracing: spans still queued after %.0f s at shutdown were dropped",
                        SHUTDOWN_SECONDS)
