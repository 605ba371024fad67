"""The old platform's clients, as data: what each one sends and what it reads back.

The contract of the migration is the code of the old clients (the public repository
Cideation/Endpoint). Every request one of them makes is recorded here as a `Case` naming the
file it came from, with the exact body it sends and the parts of the answer it reads
(`Read`): a path into the JSON answer that must exist, optionally with the type or the value
the client relies on. `bem compat check` replays every case against a running deployment;
the tests replay them against real `bem serve` processes.

A `Case` is one exchange: an HTTP request (`Http`), or a WebSocket conversation
(`WebSocket`) made of steps: `Send` a message, `Receive` the next message that matches, or an
`Http` request made meanwhile (a mutation that makes a pulse the socket then receives).

Paths: `results.calculations.structural`, `data.graph.nodes[0].id`, and `[*]` for "every
element" (the list must not be empty): `data.graph.nodes[*].id`. The empty path is the
whole answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

_MISSING: Any = object()
_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+|\*)\]")
JSON_TYPES: dict[type, str] = {dict: "object", list: "array", str: "string", bool: "boolean",
                               int: "integer", float: "number", type(None): "null"}


@dataclass(frozen=True)
class Read:
    """A part of the answer an old client reads: `path` must exist; `is_` (a JSON type:
    dict, list, str, bool, int, float; a tuple for any of several) and `equals` are what the
    client relies on. A float type accepts integers too (JSON has one number type).
    `absent`: the path must not exist (a GraphQL client that fails on any `errors`)."""

    path: str
    is_: type | tuple[type, ...] | None = None
    equals: Any = _MISSING
    absent: bool = False

    def check(self, answer: Any) -> str | None:
        """None when the answer satisfies this read, else why not (one line)."""
        try:
            values = list(resolve(answer, self.path))
        except LookupError as exc:
            return None if self.absent else f"{self.path or 'answer'}: {exc}"
        if self.absent:
            return f"{self.path}: present, the old client expects none " \
                   f"({_short(values[0][1] if len(values) == 1 else values)})"
        for where, value in values:
            if self.is_ is not None and not _is_type(value, self.is_):
                return f"{where}: expected {_type_names(self.is_)}, got {_json_type(value)} " \
                       f"{_short(value)}"
            if self.equals is not _MISSING and value != self.equals:
                return f"{where}: expected {self.equals!r}, got {_short(value)}"
        return None


@dataclass(frozen=True)
class Http:
    """One HTTP request to a service's own port, and what the client reads from the answer."""

    service: str  # whose port: dag_alpha, sfde, graphql, dashboard, ...
    method: str
    path: str
    body: Any = None  # sent as JSON; None = no body
    headers: Mapping[str, str] = field(default_factory=dict)
    status: int = 200
    reads: tuple[Read, ...] = ()

    def describe(self) -> str:
        return f"{self.service} {self.method} {self.path}"


@dataclass(frozen=True)
class Send:
    """A WebSocket message: a str is sent as it is (raw, possibly invalid JSON), anything
    else as JSON text."""

    message: Any


@dataclass(frozen=True)
class Receive:
    """Wait for the next message satisfying every `match` read (others are skipped: pushes,
    heartbeats), then check `reads` on it. Fails after `timeout` seconds."""

    reads: tuple[Read, ...] = ()
    match: tuple[Read, ...] = ()
    timeout: float = 10.0


@dataclass(frozen=True)
class WebSocket:
    service: str  # whose port: ecm_ws or graphql
    path: str
    steps: tuple[Send | Receive | Http, ...]
    subprotocols: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.service} WS {self.path}"


@dataclass(frozen=True)
class Case:
    source: str  # the old client file, e.g. "neon/container_client.py"
    name: str  # what the request is, in that file's terms
    exchange: Http | WebSocket

    @property
    def services(self) -> set[str]:
        """Every port the case talks to."""
        ex = self.exchange
        if isinstance(ex, Http):
            return {ex.service}
        return {ex.service} | {s.service for s in ex.steps if isinstance(s, Http)}


def resolve(answer: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every (concrete path, value) a path selects; LookupError names the missing part."""
    found: list[tuple[str, Any]] = [("", answer)]
    for name, index in _TOKEN.findall(path):
        step: list[tuple[str, Any]] = []
        for where, value in found:
            if name:
                if not isinstance(value, dict) or name not in value:
                    raise LookupError(f"no field {name!r} in {where or 'the answer'} "
                                      f"({_short(value)})")
                step.append((f"{where}.{name}" if where else name, value[name]))
            elif not isinstance(value, list):
                raise LookupError(f"{where or 'the answer'} is not an array ({_short(value)})")
            elif index == "*":
                if not value:
                    raise LookupError(f"{where or 'the answer'} is an empty array")
                step.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
            elif int(index) >= len(value):
                raise LookupError(f"{where}[{index}] does not exist ({len(value)} elements)")
            else:
                step.append((f"{where}[{index}]", value[int(index)]))
        found = step
    yield from found


def _is_type(value: Any, expected: type | tuple[type, ...]) -> bool:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool):  # a bool is an int to Python, never to a JSON client
        return bool in kinds
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def _json_type(value: Any) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def _type_names(expected: type | tuple[type, ...]) -> str:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(JSON_TYPES.get(k, k.__name__) for k in kinds)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
