"""Slow and abusive clients: uvicorn's HTTP protocol with a header deadline and a per-address
connection cap.

uvicorn closes a connection idle *between* requests (its keep-alive timeout), but one that
trickles a request's headers a byte at a time (slowloris) is never idle and stays open for
ever; enough of them exhaust the process. Here:

- every connection must send a request's complete headers within HEADER_TIMEOUT: counted
  from the connection's start for its first request, from the request's first byte after
  that. Past it the client gets a 408 and the connection is closed (every port);
- a client address may hold at most MAX_CLIENT_CONNECTIONS open connections to the gateway
  ports of a process (WebSockets included); one more is answered 429 and closed at once.

The body is not timed here: MAX_BODY_SIZE bounds it and the application reads it.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_ADDRESSES = 10_000  # tracked addresses beyond which closed connections are swept out


def _answer(status: int, reason: bytes, code: str, message: str) -> bytes:
    body = orjson.dumps({"error": code, "message": message})
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(body), body))


class ConnectionLimiter:
    """Open connections per client address, at most `cap` each; shared by the gateway ports
    of one process.

    A connection upgraded to a WebSocket leaves uvicorn's HTTP protocol without a word, so
    connections are kept as their transports and the closed ones are pruned when the count
    matters: when an address reaches the cap, and when many addresses are tracked.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: dict[str, set[asyncio.BaseTransport]] = {}

    def admit(self, address: str, transport: asyncio.BaseTransport) -> bool:
        if len(self._open) > MAX_ADDRESSES:
            self._sweep()
        conns = self._open.setdefault(address, set())
        if len(conns) >= self.cap:
            conns -= {t for t in conns if t.is_closing()}
            if len(conns) >= self.cap:
                return False
        conns.add(transport)
        return True

    def release(self, address: str, transport: asyncio.BaseTransport) -> None:
        conns = self._open.get(address)
        if conns is not None:
            conns.discard(transport)
            if not conns:
                del self._open[address]

    def _sweep(self) -> None:
        for address in list(self._open):
            self._open[address] = {t for t in self._open[address] if not t.is_closing()}
            if not self._open[address]:
                del self._open[address]


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header deadline and the connection cap."""

    def __init__(self, *args: Any, header_timeout: float,
                 limiter: ConnectionLimiter | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.limiter = limiter
        self._address: str | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.limiter is not None:
            address = self.client[0] if self.client else "?"
            if not self.limiter.admit(address, transport):
                transport.write(_answer(
                    429, b"Too Many Requests", "rate_limited",
                    f"too many open connections from {address} (MAX_CLIENT_CONNECTIONS="
                    f"{self.limiter.cap})"))
                transport.close()
                return
            self._address = address
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.limiter is not None and self._address is not None:
            self.limiter.release(self._address, self.transport)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes the transport over: the limiter keeps counting it (as
        # an open transport) until it closes, without this protocol.
        self._address = None
        super().handle_websocket_upgrade()

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.write(_answer(
                408, b"Request Timeout", "request_timeout",
                f"request headers not received within {self.header_timeout:g} s "
                f"(HEADER_TIMEOUT)"))
            self.transport.close()


def protocol_factory(header_timeout: float, limiter: ConnectionLimiter | None) -> Any:
    """What uvicorn.Config takes as `http`: builds a GuardedHttpProtocol per connection."""
    return functools.partial(GuardedHttpProtocol, header_timeout=header_timeout,
                             limiter=limiter)
