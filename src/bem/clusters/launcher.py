"""`bem up`: run a whole topology on one machine as supervised child processes.

Each child is `python -m bem serve <target>` in its own session, so a Ctrl-C in the terminal
reaches only the launcher, which then stops the children in order (SIGTERM, wait for their
drain, SIGKILL what is left). A child that exits unexpectedly is restarted with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time

import aiohttp
import orjson

from bem.clusters import TOPOLOGIES, members
from bem.ops.redis_data import redact
from bem.settings import Settings

READY_TIMEOUT = 90.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the parent dies, even by SIGKILL, so a killed
    launcher never leaves cluster processes behind (Linux; a no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

MAX_RESTARTS = 5


class Child:
    def __init__(self, target: str) -> None:
        self.target = target
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Launcher:
    def __init__(self, settings: Settings, topology: str, *, restart: bool = True,
                 out: object = None) -> None:
        self.settings = settings
        self.topology = topology
        self.restart = restart
        self.children = [Child(t) for t in TOPOLOGIES[topology]]
        self._stop = asyncio.Event()
        self._out = out or sys.stdout
        self.env = dict(os.environ)
        # A laptop run listens on loopback unless the operator chose an interface.
        self.env.setdefault("BIND_HOST", "127.0.0.1")

    def say(self, line: str) -> None:
        print(line, file=self._out, flush=True)  # type: ignore[call-overload]

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        mode = f"Redis at {redact(self.settings.redis_url)}" if self.settings.redis_url else \
            "embedded mode (no Redis: L1 cache, static peers, in-process event log)"
        self.say(f"bem up: topology {self.topology}, {len(self.children)} process(es), {mode}")
        start = time.monotonic()
        try:
            for child in self.children:
                await self._spawn(child)
            if not await self._wait_healthy(start):
                return 1
            self.say(f"bem up: all {self._port_count()} ports healthy in "
                     f"{time.monotonic() - start:.1f}s; Ctrl-C stops everything")
            return await self._supervise()
        finally:
            await self._stop_children()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _port_count(self) -> int:
        return sum(len(members(c.target)) for c in self.children)

    async def _spawn(self, child: Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bem", "serve", child.target, env=self.env,
            start_new_session=True, preexec_fn=die_with_parent)
        self.say(f"  started {child.target:<16} pid {child.process.pid}")

    async def _wait_healthy(self, start: float) -> bool:
        pending = {svc: self.settings.port_of(svc)
                   for child in self.children for svc in members(child.target)}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as http:
            while pending:
                if self._stop.is_set():
                    return False
                for child in self.children:
                    if not child.running:
                        self.say(f"bem up: {child.target} exited with code "
                                 f"{child.process.returncode if child.process else '?'} "
                                 f"during start-up; stopping")
                        return False
                if time.monotonic() - start > READY_TIMEOUT:
                    self.say(f"bem up: not healthy after {READY_TIMEOUT:.0f}s: "
                             f"{', '.join(sorted(pending))}")
                    return False
                for svc, port in list(pending.items()):
                    status = await _status(http, port)
                    if status in ("pass", "warn"):
                        del pending[svc]
                        self.say(f"  healthy {svc:<16} :{port:<5} {status:<4} "
                                 f"({time.monotonic() - start:.1f}s)")
                await asyncio.sleep(0.1)
        return True

    async def _supervise(self) -> int:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=0.5)
            for child in self.children:
                if child.running or self._stop.is_set():
                    continue
                code = child.process.returncode if child.process else None
                if not self.restart or child.restarts >= MAX_RESTARTS:
                    self.say(f"bem up: {child.target} exited with code {code}; "
                             f"giving up after {child.restarts} restart(s)")
                    return 1
                child.restarts += 1
                delay = min(10.0, 0.5 * 2 ** child.restarts)
                self.say(f"bem up: {child.target} exited with code {code}; restart "
                         f"{child.restarts}/{MAX_RESTARTS} in {delay:.1f}s")
                await asyncio.sleep(delay)
                await self._spawn(child)
        self.say("bem up: stopping")
        return 0

    async def _stop_children(self) -> None:
        running = [c for c in self.children if c.running]
        for child in running:
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = self.settings.grace_period + 5.0
        for child in running:
            assert child.process is not None
            try:
                await asyncio.wait_for(child.process.wait(), timeout=deadline)
            except TimeoutError:
                self.say(f"bem up: {child.target} did not stop in {deadline:.0f}s; killing")
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()
            self.say(f"  stopped {child.target:<16} exit code {child.process.returncode}")


async def _status(http: aiohttp.ClientSession, port: int) -> str | None:
    try:
        async with http.get(f"http://127.0.0.1:{port}/health") as response:
            return str(orjson.loads(await response.read()).get("status"))
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, AttributeError):
        return None
