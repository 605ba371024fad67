"""REQUEST_TIMEOUT on the hot paths: asyncio.timeout's behaviour at a fraction of its cost.

`asyncio.timeout` arms a loop timer for every use, about 3 us on uvloop (1.8 us of it the
timer handle), paid by every in-process peer call, every request the gateway routes and every
attempt on a replica. Here a limit is an entry in a set, and one sweep every RESOLUTION,
scheduled only while limits are open, cancels the tasks whose deadline has passed; the limit
turns that cancellation into TimeoutError as asyncio.timeout does, and a cancellation of
anyone else's goes on as it is. A limit fires up to RESOLUTION late: it bounds waits of
REQUEST_TIMEOUT's size (seconds), not short ones.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

RESOLUTION = 0.05  # seconds between sweeps while limits are open


class Deadlines:
    """The open limits of one process (the service client's; the gateway's router uses it)."""

    def __init__(self) -> None:
        self._open: set[Limit] = set()
        self._sweep: asyncio.TimerHandle | None = None

    def limit(self, seconds: float) -> Limit:
        """`async with deadlines.limit(s):` raises TimeoutError once `s` seconds have passed."""
        return Limit(self, seconds)

    def _add(self, limit: Limit) -> None:
        self._open.add(limit)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(RESOLUTION, self._run)

    def _run(self) -> None:
        self._sweep = None
        now = time.monotonic()
        for limit in [limit for limit in self._open if limit.deadline <= now]:
            limit.expire()
        if self._open:
            self._sweep = asyncio.get_running_loop().call_later(RESOLUTION, self._run)


class Limit:
    __slots__ = ("_cancelling", "_deadlines", "_task", "deadline", "expired")

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self.deadline = time.monotonic() + seconds
        self.expired = False

    async def __aenter__(self) -> Limit:
        task = asyncio.current_task()
        assert task is not None, "a time limit needs a task"
        self._task = task
        self._cancelling = task.cancelling()
        self._deadlines._add(self)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._deadlines._open.discard(self)
        # As asyncio.timeout: the cancellation is this limit's when no one else asked for one.
        if self.expired and self._task.uncancel() <= self._cancelling \
                and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def expire(self) -> None:
        """Called by the sweep: the task is inside the `async with`, waiting."""
        self._deadlines._open.discard(self)
        self.expired = True
        self._task.cancel()
