"""Fault-injection support: steady load that classifies every answer, and scenario reports.

A scenario runs `Load` (a few concurrent HTTP clients cycling through a list of requests)
against real cluster processes, injects its fault, and ends with a `Tally`: requests sent,
succeeded, refused (a documented 503 with Retry-After, the answer a client is told to
retry) and failed, overall and per phase (`before`, the fault, `after`). Every scenario
prints one summary line and writes its tally into test-output/faults.json, the figures the
README's reliability section quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

from bem.data import sample_project
from tests.support import REPO, ClusterProcess

REPORT = REPO / "test-output" / "faults.json"
KEPT_FAILURES = 20  # failure messages kept per scenario (all are counted)


@dataclass(frozen=True)
class Request:
    """One request of a load mix; `refusable`: a 503 with Retry-After is an expected
    refusal (the client is told to come back), not a failure."""

    name: str
    method: str
    path: str
    body: Any = None  # or a function of n, the request's number among those of its name
    refusable: bool = False
    cycle: int | None = None  # a working set of this many bodies: body(n % cycle)

    @property
    def distinct(self) -> int | None:
        """How many different bodies it sends: None when each one is new."""
        return self.cycle if callable(self.body) else 1

    def body_for(self, n: int) -> Any:
        if not callable(self.body):
            return self.body
        return self.body(n if self.cycle is None else n % self.cycle)


@dataclass
class Tally:
    scenario: str
    phase: str = "before"
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (phase, outcome)
    kinds: Counter[tuple[str, str]] = field(default_factory=Counter)  # (request, outcome)
    failures: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def count(self, request: str, outcome: str, failure: str | None = None) -> None:
        self.counts[(self.phase, outcome)] += 1
        self.kinds[(request, outcome)] += 1
        if failure is not None and len(self.failures) < KEPT_FAILURES:
            self.failures.append(f"[{self.phase}] {request}: {failure}")

    def total(self, outcome: str | None = None, phase: str | None = None) -> int:
        return sum(n for (p, o), n in self.counts.items()
                   if (outcome is None or o == outcome) and (phase is None or p == phase))

    def of(self, request: str, outcome: str) -> int:
        return self.kinds[(request, outcome)]

    def summary(self) -> dict[str, Any]:
        phases = sorted({p for p, _ in self.counts}, key=list(dict.fromkeys(
            p for p, _ in self.counts)).index)
        return {"requests_sent": self.total(), "succeeded": self.total("ok"),
                "refused_503": self.total("refused"), "failed": self.total("failed"),
                "duration_s": round(time.monotonic() - self.started, 1),
                "by_phase": {p: {o: self.total(o, p) for o in ("ok", "refused", "failed")}
                             for p in phases},
                **self.notes, "failure_examples": self.failures}

    def report(self) -> None:
        """Print the one-line summary and merge this scenario into test-output/faults.json."""
        s = self.summary()
        extra = "".join(f", {k} {v}" for k, v in self.notes.items()
                        if isinstance(v, int | float | str))
        print(f"\nfault scenario {self.scenario}: sent {s['requests_sent']}, succeeded "
              f"{s['succeeded']}, refused {s['refused_503']}, failed {s['failed']} in "
              f"{s['duration_s']} s{extra}")
        REPORT.parent.mkdir(exist_ok=True)
        try:
            data = json.loads(REPORT.read_text())
        except (OSError, ValueError):
            data = {}
        data[self.scenario] = s
        REPORT.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def classify(request: Request, answer: httpx.Response) -> tuple[str, str | None]:
    """('ok' | 'refused' | 'failed', why it failed)."""
    if answer.status_code < 400:
        if request.path.endswith("/graphql") and answer.json().get("errors"):
            return "failed", f"GraphQL errors {answer.text[:300]}"
        return "ok", None
    if request.refusable and answer.status_code == 503 and answer.headers.get("retry-after"):
        return "refused", None
    return "failed", f"{answer.status_code} {answer.text[:300]}"


Observer = Callable[[Request, Any, httpx.Response], None]  # request, body sent, answer


class Load:
    """`concurrency` clients cycling through `mix` until stopped or `max_requests` sent."""

    def __init__(self, base: str, mix: list[Request], tally: Tally, *, concurrency: int = 6,
                 max_requests: int = 20_000, observe: Observer | None = None,
                 timeout: float = 30.0) -> None:
        self.base = base
        self.mix = mix
        self.tally = tally
        self.concurrency = concurrency
        self.max_requests = max_requests
        self.observe = observe
        self.timeout = timeout
        self._stop = asyncio.Event()
        self._sent = 0
        # Numbered per request name: the n-th request of a kind gets body(n), so a kind that
        # rotates over a working set has covered all of it after `cycle` requests.
        self._numbers: dict[str, itertools.count[int]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Load:
        limits = httpx.Limits(max_connections=self.concurrency)
        self.http = httpx.AsyncClient(base_url=self.base, timeout=self.timeout, limits=limits)
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self.concurrency)]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self.http.aclose()

    async def _client(self, offset: int) -> None:
        i = offset
        while not self._stop.is_set() and self._sent < self.max_requests:
            request = self.mix[i % len(self.mix)]
            i += 1
            self._sent += 1
            await self.send(request)

    async def send(self, request: Request) -> httpx.Response | None:
        body = request.body_for(next(self._numbers.setdefault(request.name,
                                                                 itertools.count())))
        try:
            answer = await self.http.request(request.method, request.path, json=body)
        except httpx.HTTPError as exc:
            self.tally.count(request.name, "failed", repr(exc))
            return None
        outcome, why = classify(request, answer)
        self.tally.count(request.name, outcome, why)
        if self.observe is not None:
            self.observe(request, body, answer)
        return answer


async def until_sent(tally: Tally, n: int, limit: float = 60.0) -> None:
    """Wait until the load has sent `n` more requests (bounded): progress, not a clock."""
    target = tally.total() + n
    deadline = time.monotonic() + limit
    while tally.total() < target and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def sample_variant(i: int, prefix: str = "fault") -> dict[str, Any]:
    """The sample project under its own name: its own content id, so no cache answers it."""
    graph = sample_project()
    graph["name"] = f"{prefix} {i}"
    return graph


def wide_graph(seed: int, n: int = 150, m: int = 600) -> dict[str, Any]:
    """A random graph whose betweenness takes tens of milliseconds: pool work."""
    import random

    rng = random.Random(seed)
    nodes = [{"id": f"n{i}"} for i in range(n)]
    edges = [{"source": f"n{rng.randrange(n)}", "target": f"n{rng.randrange(n)}",
              "weight": round(rng.random(), 3)} for _ in range(m)]
    return {"name": f"wide {seed}", "nodes": nodes, "edges": edges}


def pool_workers(cluster: ClusterProcess) -> list[psutil.Process]:
    """The cluster's pool workers: the children of its forkserver (its grandchildren)."""
    assert cluster.process is not None
    workers = []
    for child in psutil.Process(cluster.process.pid).children():
        with contextlib.suppress(psutil.Error):
            if "forkserver" in " ".join(child.cmdline()):
                workers += child.children()
    return workers


def wait_until(check: Callable[[], bool], limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit:g} s: {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def phase(tally: Tally, name: str) -> Iterator[None]:
    """Count what happens inside under `name`; the load's later answers count as `after`."""
    tally.phase = name
    try:
        yield
    finally:
        tally.phase = "after"
