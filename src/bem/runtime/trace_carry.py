"""What crosses a process boundary with a trace: the event field that keeps an accepted
event's trace context, and the pool task that carries its context to the worker.

Pool workers import this module (a `TracedFn` is unpickled there): it imports nothing of
OpenTelemetry, nor of the rest of the runtime.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

TRACEPARENT = "traceparent"


class TracedFn:
    """A pool task with its trace context, pickled to the worker.

    The worker does not export spans itself: it measures the task (wall clock, its pid) and
    returns that with the result; the parent records the span, as the child of the context
    it sent (runtime/spans.py). Workers then need no SDK, exporter thread or collector
    connection each, and a worker killed at its time limit loses no span: the parent still
    records its `pool.task`, with the error.
    """

    def __init__(self, fn: Callable[..., Any], traceparent: str) -> None:
        self.fn = fn
        self.traceparent = traceparent  # of the parent's pool.task span
        # What the pool's messages (a time-out, a crash) call the task: the function's name.
        self.__qualname__ = getattr(fn, "__qualname__", repr(fn))

    def __call__(self, *args: Any) -> tuple[Any, int, int, int]:
        start = time.time_ns()
        value = self.fn(*args)
        return value, start, time.time_ns(), os.getpid()
