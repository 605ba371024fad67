"""The process's log lines: text (the default) or JSON (LOG_FORMAT=json), with the trace and
span ids of the current span when tracing is on, so a log line leads to its trace."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_TEXT = "%(asctime)s %(levelname)-7s [{name}] %(name)s: %(message)s"


class TraceIds(logging.Filter):
    """Sets `trace_id` and `span_id` on each record ('' outside a span or when off)."""

    def __init__(self, tracing: bool) -> None:
        super().__init__()
        self.tracing = tracing

    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = record.span_id = ""
        if self.tracing:
            from opentelemetry import trace  # loaded already whenever tracing is on

            ctx = trace.get_current_span().get_span_context()
            if ctx.is_valid:
                record.trace_id, record.span_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace_id = getattr(record, "trace_id", "")
        return f"{line} trace_id={trace_id} span_id={record.span_id}" if trace_id else line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, process (`bem serve` target), logger, message,
    trace and span ids when there are any, the exception when there is one."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "process": self.name, "logger": record.name,
            "message": record.getMessage()}
        if getattr(record, "trace_id", ""):
            entry["trace_id"], entry["span_id"] = record.trace_id, record.span_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str, name: str, fmt: str = "text", tracing: bool = False) -> None:
    """Root logging of a `bem` process: one stderr handler in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TraceIds(tracing))
    handler.setFormatter(JsonFormatter(name) if fmt == "json"
                         else TextFormatter(_TEXT.format(name=name)))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # uvicorn's own loggers would print one "Started server process" line per service.
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, logging.root.level))
