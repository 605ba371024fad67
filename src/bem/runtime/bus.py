"""The pulse bus: publish/subscribe of JSON messages by topic.

With Redis, a message is PUBLISHed on channel `bem:bus:<topic>` and every process (this one
included) receives it through its single pattern subscription, so local and remote
subscribers see the same stream once. Without Redis, messages fan out inside the process.

Pub/sub is at-most-once by nature; what must not be lost (events) lives in the durable event
log, and the bus only announces results. Each subscriber has a bounded queue: a subscriber
that stops reading loses its oldest messages (counted in `dropped`), never stalls the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from bem import redis_keys
from bem.runtime.redis_link import OUTAGE_ERRORS, RedisLink, raise_if_cancelled

log = logging.getLogger("bem.bus")

CHANNEL_PREFIX = redis_keys.BUS
QUEUE_SIZE = 1000


class Subscription:
    def __init__(self, topic: str, maxsize: int) -> None:
        self.topic = topic
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, message: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(message)

    async def get(self) -> dict[str, Any]:
        return await self.queue.get()

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self.queue.get()


class PulseBus:
    def __init__(self, redis: RedisLink, *, listen: bool = True) -> None:
        """`listen`: subscribe to Redis from the start (a process hosting a consumer of the
        bus). Otherwise the subscription starts with the first local subscriber: a process
        that only publishes never decodes every message of the platform."""
        self.redis = redis
        self.listen = listen
        self._subs: dict[str, set[Subscription]] = {}
        self._listener: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def start(self) -> None:
        if self.listen:
            self._start_listener()

    def _start_listener(self) -> None:
        if self.redis.configured and self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        """Publish to every subscriber of `topic` in every process sharing the Redis."""
        if self.redis.configured:
            data = orjson.dumps(message)
            await self.redis.required(lambda r: r.publish(CHANNEL_PREFIX + topic, data))
        else:
            self._deliver(topic, message)

    @contextlib.contextmanager
    def subscribe(self, topic: str, maxsize: int = QUEUE_SIZE) -> Any:
        sub = Subscription(topic, maxsize)
        self._subs.setdefault(topic, set()).add(sub)
        self._start_listener()
        try:
            yield sub
        finally:
            self._subs[topic].discard(sub)

    def subscriber_count(self, topic: str) -> int:
        return len(self._subs.get(topic, ()))

    def _deliver(self, topic: str, message: dict[str, Any]) -> None:
        for sub in list(self._subs.get(topic, ())):
            sub.offer(message)

    async def _listen(self) -> None:
        """One pattern subscription per process, re-established after a Redis outage."""
        client = self.redis.subscriber()
        try:
            while True:
                await self._listen_once(client)
        finally:
            await client.aclose()

    async def _listen_once(self, client: Any) -> None:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(CHANNEL_PREFIX + "*")
            self.listening.set()
            async for msg in pubsub.listen():
                raise_if_cancelled()
                if msg.get("type") != "pmessage":
                    continue
                topic = msg["channel"].decode()[len(CHANNEL_PREFIX):]
                self._deliver(topic, orjson.loads(msg["data"]))
        except OUTAGE_ERRORS as exc:
            raise_if_cancelled()
            self.listening.clear()
            log.warning("pulse bus lost Redis (%s); resubscribing", exc)
            await asyncio.sleep(0.5)
        finally:
            with contextlib.suppress(*OUTAGE_ERRORS):
                await pubsub.aclose()
