"""The supervisor: every member service of a cluster in one asyncio loop, each on its port.

Start-up, in order: shared resources (Redis, bus; the pool's processes start later, when
work first needs them) -> bind every port -> start one uvicorn server per service (each app
runs its own lifespan) -> register the replicas -> ready. A port that cannot be bound stops
everything already started and exits non-zero with one line naming the service and port.

Signals belong to the supervisor alone: uvicorn's per-server signal capture is disabled
(otherwise each of N servers would install, then chain, its own handler). The handler only
sets a flag. Shutdown, in order and bounded: deregister (peers and the gateway stop choosing
this replica), stop accepting and drain in-flight requests within GRACE_PERIOD, then stop the
pool, bus, HTTP client and Redis link. In `bem serve` a watchdog thread bounds the whole: a shutdown
still running STOP_MARGIN seconds after the grace period dumps every thread's and task's stack
to the log and exits 1, so an orchestrator never waits on a stuck process.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Generator, Sequence

import uvicorn

from bem.runtime.app import create_app
from bem.runtime.connections import ConnectionLimiter, protocol_factory
from bem.runtime.placement import Placement
from bem.runtime.runtime import Runtime
from bem.runtime.service import ServiceSpec
from bem.settings import Settings

log = logging.getLogger("bem.supervisor")

EXIT_OK = 0
# Longer than the service client's idle time (CLIENT_KEEP_ALIVE) so that the client, not
# the server, closes idle connections: no request is sent on a connection being closed.
KEEP_ALIVE_SECONDS = 30
EXIT_STARTUP_FAILURE = 3
EXIT_STOP_OVERDUE = 1
# Beyond the grace period: uvicorn's drain (bounded by the grace period), cancelling what is
# left, then the pool (3 s for workers to leave, then SIGKILL), bus, client and Redis link.
STOP_MARGIN = 15.0


class StartupError(Exception):
    """Start-up could not complete; the message is one line for the operator."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the supervisor owns SIGINT/SIGTERM


def bind(service: str, host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted
    # sockets whose proto says TCP, and with Nagle on, a response written in two parts
    # waits ~40 ms for the client's delayed ACK (uvloop does not check; asyncio does).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # listening now: a second process cannot bind the port meanwhile
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise StartupError(f"cannot bind {service} on {host}:{port}: {reason}") from None
    sock.setblocking(False)
    return sock


def advertised_host(setting: str) -> str:
    """The address peers use for this process; 'auto' picks the primary interface's IP."""
    if setting != "auto":
        return setting
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent for a UDP connect
            return str(probe.getsockname()[0])
        except OSError:
            return socket.gethostbyname(socket.gethostname())


class Supervisor:
    """Runs the given services in this process until asked to stop."""

    def __init__(self, settings: Settings, cluster: str, specs: Sequence[ServiceSpec],
                 placement: Placement) -> None:
        self.settings = settings
        self.cluster = cluster
        self.runtime = Runtime(settings, cluster, specs, placement)
        self.servers: dict[str, _Server] = {}
        self.sockets: dict[str, socket.socket] = {}
        self.ports: dict[str, int] = {}
        self.started = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def request_stop(self) -> None:
        """Signal-safe: only sets a flag (a second request forces the exit)."""
        if self._stop.is_set():
            for server in self.servers.values():
                server.force_exit = True
        self._stop.set()

    async def run(self, *, install_signals: bool = True) -> int:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.request_stop)
        # The watchdog exits the process: only when the supervisor owns it (`bem serve`),
        # never when embedded in another program (tests, benchmarks).
        bounded = install_signals
        try:
            await self._start()
        except BaseException:
            await self._stop_all(bounded)
            raise
        try:
            await self._serve_until_stopped()
        finally:
            await self._stop_all(bounded)
            if install_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
        return EXIT_OK

    async def _start(self) -> None:
        rt = self.runtime
        await rt.start()
        advertise = advertised_host(self.settings.advertise_host)
        # One cap per process over its gateway ports; backends serve a few peer addresses.
        limiter = ConnectionLimiter(self.settings.max_client_connections)
        for name, ctx in rt.contexts.items():
            gateway = name in rt.placement.gateway
            host = self.settings.host_for(name, gateway)
            sock = bind(name, host, self.settings.port_of(name))
            self.sockets[name] = sock
            self.ports[name] = sock.getsockname()[1]
            rt.addresses[name] = f"http://{advertise}:{self.ports[name]}"
            config = uvicorn.Config(
                create_app(ctx), log_config=None, access_log=False, lifespan="on",
                http=protocol_factory(self.settings.header_timeout,
                                      limiter if gateway else None),
                timeout_graceful_shutdown=self.settings.grace_period, server_header=False,
                ws_max_size=self.settings.max_ws_message_size,
                timeout_keep_alive=KEEP_ALIVE_SECONDS,
                ws_ping_interval=20.0, ws_ping_timeout=20.0)
            self.servers[name] = _Server(config)
        for name, server in self.servers.items():
            self._tasks[name] = asyncio.create_task(server.serve(sockets=[self.sockets[name]]),
                                                    name=f"serve-{name}")
        await self._wait_started()
        await rt.registry.register(rt.addresses, rt.pid)
        # Start-up made most of what this process will ever hold (modules, apps, schemas).
        # Each full collection walked all of it again: 80-570 ms with the loop stopped, on
        # a 2-core machine whose pool was busy (measured). Frozen, the collector skips it.
        gc.collect()
        gc.freeze()
        rt.ready = True
        rt.warm()
        self.started.set()
        log.info("cluster %s ready: %s", self.cluster,
                 ", ".join(f"{n}:{p}" for n, p in self.ports.items()))

    async def _wait_started(self) -> None:
        while not all(s.started for s in self.servers.values()):
            for name, task in self._tasks.items():
                if task.done():
                    exc = task.exception() if not task.cancelled() else None
                    raise StartupError(f"{name} failed to start: {exc!r}")
            await asyncio.sleep(0.01)

    async def _serve_until_stopped(self) -> None:
        stop = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([stop, *self._tasks.values()],
                                     return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        for name, task in self._tasks.items():
            if task in done and not self._stop.is_set():
                log.error("service %s stopped unexpectedly: %r", name,
                          task.exception() if not task.cancelled() else "cancelled")

    async def _stop_all(self, bounded: bool) -> None:
        if not bounded:
            await self._stop_in_order()
            return
        watchdog = threading.Timer(self.settings.grace_period + STOP_MARGIN, self._stop_overdue,
                                   args=(asyncio.get_running_loop(),))
        watchdog.daemon = True
        watchdog.start()
        try:
            await self._stop_in_order()
        finally:
            watchdog.cancel()

    def _stop_overdue(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watchdog thread: the shutdown outlived its bound; say where it is stuck, exit."""
        log.critical("cluster %s: shutdown still running %.0fs after the grace period; "
                     "exiting with %d (stacks follow)", self.cluster, STOP_MARGIN,
                     EXIT_STOP_OVERDUE)
        faulthandler.dump_traceback(all_threads=True)
        with contextlib.suppress(Exception):  # the loop's tasks, read from another thread
            for task in list(asyncio.all_tasks(loop)):
                task.print_stack(file=sys.stderr)
        sys.stderr.flush()
        os._exit(EXIT_STOP_OVERDUE)

    async def _stop_in_order(self) -> None:
        rt = self.runtime
        began = time.monotonic()
        log.info("cluster %s stopping: draining in-flight requests (grace %.0fs)",
                 self.cluster, self.settings.grace_period)
        rt.stopping = True
        rt.ready = False
        await rt.registry.deregister()
        for server in self.servers.values():
            server.should_exit = True
        if self._tasks:
            grace = self.settings.grace_period + 5.0
            _, pending = await asyncio.wait(self._tasks.values(), timeout=grace)
            for task in pending:
                task.cancel()
            results = await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            for name, result in zip(self._tasks, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(
                        result, asyncio.CancelledError | SystemExit):
                    log.error("service %s ended with %r", name, result)
        for sock in self.sockets.values():  # never-served sockets after a failed start
            sock.close()
        drained = time.monotonic()
        await rt.close()
        log.info("cluster %s stopped in %.2fs (drain %.2fs, resources %.2fs)", self.cluster,
                 time.monotonic() - began, drained - began, time.monotonic() - drained)
