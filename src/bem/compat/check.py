"""`bem compat check [URL]`: replay the old clients' recorded requests against a deployment.

One line per case (PASS or FAIL, the old file it came from, what was sent, why it failed),
then `N/M compatible`; exit 0 only when every case passed. Cases run one after another: a
WebSocket case may wait for the pulse that its own mutation makes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
import orjson

from bem.clusters import CLUSTER_OF
from bem.compat.catalogue import Case, Http, Receive, Send, WebSocket
from bem.runtime.registry import static_url
from bem.settings import Settings

EXIT_INCOMPATIBLE = 1


class Incompatible(Exception):
    """The answer is not what the old client reads; the message says where."""


@dataclass(frozen=True)
class Outcome:
    case: Case
    failure: str | None
    elapsed_ms: float

    def line(self) -> str:
        c = self.case
        head = f"{'PASS' if self.failure is None else 'FAIL'}  {c.source}: " \
               f"{c.exchange.describe()} - {c.name}"
        return f"{head}  ({self.elapsed_ms:.0f} ms)" if self.failure is None \
            else f"{head}\n      {self.failure}"


def service_urls(settings: Settings, base: str | None, services: set[str]) -> dict[str, str]:
    """scheme://host:port of each service: `base`'s host on each service's own port, or
    the settings' static addresses (BACKEND_<CLUSTER>_URL / BACKEND_HOST, <SERVICE>_PORT)."""
    if base is None:
        return {s: static_url(settings, s, CLUSTER_OF[s]) for s in services}
    parts = urlsplit(base if "://" in base else f"http://{base}")
    if parts.port is not None or parts.path not in ("", "/") or not parts.hostname:
        raise ValueError(f"give scheme://host only (got {base!r}): every service is "
                         f"reached on its own port, <SERVICE>_PORT")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return {s: f"{parts.scheme}://{host}:{settings.port_of(s)}" for s in services}


async def replay(case: Case, urls: Mapping[str, str], http: aiohttp.ClientSession
                 ) -> Outcome:
    start = time.perf_counter()
    try:
        if isinstance(case.exchange, Http):
            await _http(case.exchange, urls, http)
        else:
            await _websocket(case.exchange, urls, http)
        failure = None
    except Incompatible as exc:
        failure = str(exc)
    except (aiohttp.ClientError, OSError) as exc:
        failure = f"cannot reach it: {exc!r}"
    except TimeoutError:
        failure = "no answer in time"
    return Outcome(case, failure, (time.perf_counter() - start) * 1000)


async def _http(call: Http, urls: Mapping[str, str], http: aiohttp.ClientSession) -> Any:
    data = None if call.body is None else orjson.dumps(call.body)
    headers = {"content-type": "application/json", **call.headers} if data else call.headers
    async with http.request(call.method, urls[call.service] + call.path, data=data,
                            headers=headers) as response:
        raw = await response.read()
    if response.status != call.status:
        raise Incompatible(f"HTTP {response.status}, the old client expects {call.status}: "
                           f"{raw[:300].decode(errors='replace')}")
    if not call.reads:
        return None
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Incompatible(f"the answer is not JSON: {raw[:200]!r}") from None
    _check(call.reads, answer)
    return answer


async def _websocket(ws_case: WebSocket, urls: Mapping[str, str],
                     http: aiohttp.ClientSession) -> None:
    url = urls[ws_case.service].replace("http", "ws", 1) + ws_case.path
    async with http.ws_connect(url, protocols=ws_case.subprotocols, heartbeat=None) as ws:
        for step in ws_case.steps:
            if isinstance(step, Send):
                text = step.message if isinstance(step.message, str) \
                    else orjson.dumps(step.message).decode()
                await ws.send_str(text)
            elif isinstance(step, Receive):
                _check(step.reads, await _receive(ws, step))
            else:
                await _http(step, urls, http)


async def _receive(ws: aiohttp.ClientWebSocketResponse, step: Receive) -> Any:
    deadline = time.monotonic() + step.timeout
    skipped = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Incompatible(f"no matching message within {step.timeout:g} s "
                               f"({skipped} others skipped)")
        try:
            message = await ws.receive(timeout=left)
        except TimeoutError:
            continue
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
            raise Incompatible(f"the server closed the connection ({message.data}, "
                               f"{message.extra})")
        try:
            value = orjson.loads(message.data)
        except (orjson.JSONDecodeError, TypeError):
            value = message.data
        if all(read.check(value) is None for read in step.match):
            return value
        skipped += 1


def _check(reads: Sequence[Any], answer: Any) -> None:
    problems = [p for p in (read.check(answer) for read in reads) if p is not None]
    if problems:
        raise Incompatible("; ".join(problems[:3]) +
                           (f"; and {len(problems) - 3} more" if len(problems) > 3 else ""))


async def run_check(cases: Sequence[Case], urls: Mapping[str, str], *, timeout: float,
                    out: TextIO = sys.stdout) -> list[Outcome]:
    outcomes = []
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as http:
        for case in cases:
            outcome = await replay(case, urls, http)
            print(outcome.line(), file=out, flush=True)
            outcomes.append(outcome)
    passed = sum(o.failure is None for o in outcomes)
    print(f"{passed}/{len(outcomes)} compatible", file=out, flush=True)
    return outcomes


async def compat_check(settings: Settings, base: str | None, *, only: str | None = None,
                       timeout: float = 30.0) -> int:
    from bem.compat.cases import all_cases

    cases = [c for c in all_cases() if only is None or only in c.source or only in c.name]
    if not cases:
        print("bem compat check: no recorded request" +
              (f" matches {only!r}" if only else "s"), file=sys.stderr)
        return EXIT_INCOMPATIBLE
    try:
        urls = service_urls(settings, base, set().union(*(c.services for c in cases)))
    except ValueError as exc:
        print(f"bem compat check: {exc}", file=sys.stderr)
        return 2
    outcomes = await run_check(cases, urls, timeout=timeout)
    return 0 if all(o.failure is None for o in outcomes) else EXIT_INCOMPATIBLE


def list_cases(out: TextIO = sys.stdout) -> int:
    from bem.compat.cases import all_cases

    for case in all_cases():
        print(f"{case.source}: {case.exchange.describe()} - {case.name}", file=out)
    return 0

