"""The shared resources of one cluster process.

Built cheaply (constructors only store and wire objects); `start()` does the risky work
(Redis, the pool's processes, the bus subscription) and `close()` releases it in reverse
order, collecting errors instead of stopping at the first.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI

from bem import __version__
from bem.runtime.bus import PulseBus
from bem.runtime.cache import Cache
from bem.runtime.client import ServiceClient
from bem.runtime.metrics import SHARED, Metrics, sample_loop_lag
from bem.runtime.placement import Placement
from bem.runtime.pool import ComputePool
from bem.runtime.redis_link import RedisLink
from bem.runtime.registry import Registry
from bem.runtime.service import ServiceSpec, request_context
from bem.runtime.tracing import build as build_tracing
from bem.runtime.tracing import traced_client
from bem.settings import Settings

log = logging.getLogger("bem.runtime")

R = TypeVar("R")


class Runtime:
    """Settings, metrics, Redis link, cache, pool, registry, client and bus of a process."""

    def __init__(self, settings: Settings, cluster: str, specs: Sequence[ServiceSpec],
                 placement: Placement) -> None:
        """`specs`: the services this process serves; `placement`: where every service runs
        (both handed in by `bem serve`: the runtime imports neither)."""
        self.settings = settings
        self.cluster = cluster
        self.placement = placement
        self.version = __version__
        self.pid = os.getpid()
        self.instance_id = f"{socket.gethostname()}-{self.pid}-{secrets.token_hex(3)}"
        self.metrics = Metrics(cluster)
        self.tracing = build_tracing(settings, self)  # None when tracing is off
        redis_up = self.metrics.redis_up.labels(SHARED, cluster)
        self.redis = RedisLink(settings.redis_url, on_change=lambda up: redis_up.set(int(up)))
        self.cache = Cache(settings.cache_size, self.redis, self.metrics, settings.cache_ttl)
        needs_pool = any(s.uses_pool for s in specs)
        self.pool = ComputePool(
            settings.workers if needs_pool else 0, numpy_threads=settings.numpy_threads,
            task_timeout=settings.task_timeout, metrics=self.metrics,
            preload=[m for s in specs for m in s.compute_modules])
        self.registry = Registry(settings, self.redis, instance_id=self.instance_id,
                                 cluster=cluster, placement=placement)
        self.bus = PulseBus(self.redis, listen=any(s.subscribes for s in specs))
        self.contexts: dict[str, ServiceContext] = {s.name: ServiceContext(s, self)
                                                    for s in specs}
        client = (settings, self.metrics, self.registry, self.contexts)
        self.client = ServiceClient(*client) if self.tracing is None else \
            traced_client(self.tracing, *client)
        self.cache.tracing = self.pool.tracing = self.client.replicas.tracing = self.tracing
        self.addresses: dict[str, str] = {}  # local service -> URL peers reach it at
        self.ready = False
        self.stopping = False
        self._started_at = time.monotonic()
        self._lag_sampler: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None

    @property
    def uptime(self) -> float:
        return time.monotonic() - self._started_at

    async def start(self) -> None:
        """Start the shared resources (the pool's processes start when work needs them)."""
        await self.pool.start()
        self._lag_sampler = asyncio.create_task(sample_loop_lag(self.metrics), name="loop-lag")
        # The services' compute modules (NumPy, SciPy, jsonschema) are not imported here:
        # importing them took ~0.3 s of CPU per compute or logic process before its ports
        # answered. `warm()` imports them once the process is ready.
        await self.redis.start()
        await self.bus.start()

    def warm(self) -> None:
        """Once ready: import the local services' compute modules in a thread.

        An operation imports its modules where it needs them; done on the loop by the first
        request, that import held every port of the process (~0.2 s for NumPy and its
        solver). In a thread the loop keeps its turns (the interpreter hands the GIL over
        every few milliseconds). Until a service's modules are in, its operations wait for
        them (`ServiceContext.warmed`) instead of importing: an import on the loop of a
        module another thread is importing blocks the loop on the module's lock. Modules
        imported since start-up are then frozen for the collector, like start-up's own.
        """
        self._warming = asyncio.create_task(self._import(), name="warm-imports")

    async def _import(self) -> None:
        for ctx in self.contexts.values():
            for module in ctx.spec.compute_modules:
                if module not in sys.modules:
                    try:
                        await asyncio.to_thread(importlib.import_module, module)
                    except Exception:  # the operation's own import raises it to its caller
                        log.exception("importing %s in the background failed", module)
            ctx.warmed.set()
        gc.freeze()

    async def close(self) -> list[BaseException]:
        """Release everything in reverse order of start; returns the errors met."""
        errors: list[BaseException] = []
        for task in (self._lag_sampler, self._warming):
            if task is not None:
                task.cancel()
        for closer in (self.pool.close, self.bus.close, self.client.close, self.redis.close,
                       *([self.tracing.close] if self.tracing else [])):
            try:
                await closer()
            except Exception as exc:
                log.error("error while closing %s: %s", closer.__qualname__, exc)
                errors.append(exc)
        return errors


class ServiceContext:
    """What an operation sees: its service, the process runtime and its own state.

    Here, beside the Runtime that builds it and that it refers to, so that the two modules
    never import each other."""

    def __init__(self, spec: ServiceSpec, runtime: Runtime) -> None:
        self.spec = spec
        self.name = spec.name
        self.runtime = runtime
        self.settings: Settings = runtime.settings
        self.state: dict[str, Any] = {}  # filled by the service's lifespan hook
        self.app: FastAPI | None = None  # set by create_app (ASGI calls without a socket)
        # Set once the service's compute modules are imported (Runtime.warm). The ways into
        # an operation wait for it: over HTTP `request_context` (every operation's Ctx, and
        # the legacy envelope's route), in-process the service client; one attribute test
        # on the hot path.
        self.warmed = asyncio.Event()
        if not spec.compute_modules:
            self.warmed.set()

    async def call(self, operation: Callable[..., Awaitable[R]], body: Any = None, /,
                   **params: Any) -> R:
        """Call a peer's operation (the function itself) wherever it runs: `body` is its
        request model (or a mapping of it, validated as HTTP would: a client's JSON),
        `params` its path and query parameters by name."""
        return await self.runtime.client.call(operation, body, caller=self.name, **params)


# An operation's `ctx: Ctx` parameter: its ServiceContext, in-process or over HTTP.
Ctx = Annotated[ServiceContext, Depends(request_context)]
