"""Where a graph's nodes are drawn (its layout), kept beside the immutable graph.

A graph's id is the hash of its content, so a stored graph never changes. Node positions are
not part of it: moving a node must not make a new graph (every client holding the id would
lose it, and the analyses cached under it). A layout is a separate, mutable record keyed by
the graph id, or by `sample` for the sample project (which is not stored; content ids are
hex, so the key cannot collide). With Redis it is the hash `bem:layout:<key>` (node ->
"[x, y]"), shared by every replica and, like stored graphs, without TTL (data: `bem backup`
saves it); HSET merges concurrent moves of different nodes. Without Redis it lives in this
process: at most one layout per stored graph and the sample, each bounded by its graph.
"""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis

from bem import redis_keys
from bem.runtime.redis_link import RedisLink

KEY_PREFIX = redis_keys.LAYOUTS
SAMPLE_KEY = "sample"

Point = tuple[float, float]


def layout_key(graph_id: str | None) -> str:
    return graph_id or SAMPLE_KEY


class LayoutStore:
    def __init__(self, redis: RedisLink) -> None:
        self.redis = redis
        self._local: dict[str, dict[str, Point]] = {}  # embedded mode: the store itself

    async def get(self, key: str) -> dict[str, Point]:
        if not self.redis.configured:
            return dict(self._local.get(key, {}))
        raw = await self.redis.required(lambda r: r.hgetall(KEY_PREFIX + key))
        return _points(raw)

    async def merge(self, key: str, positions: dict[str, Point]) -> dict[str, Point]:
        """Set these nodes' positions (the others keep theirs); the whole layout after."""
        if not self.redis.configured:
            self._local.setdefault(key, {}).update(positions)
            return dict(self._local[key])
        mapping = {node: orjson.dumps(list(xy)) for node, xy in positions.items()}

        async def write(r: aioredis.Redis) -> dict[bytes, bytes]:
            async with r.pipeline(transaction=True) as pipe:
                pipe.hset(KEY_PREFIX + key, mapping=mapping)
                pipe.hgetall(KEY_PREFIX + key)
                _, layout = await pipe.execute()
            return layout  # type: ignore[no-any-return]

        raw = await self.redis.required(write)
        return _points(raw)


def _points(raw: dict[bytes, bytes]) -> dict[str, Point]:
    out: dict[str, Point] = {}
    for node, xy in raw.items():
        x, y = orjson.loads(xy)
        out[node.decode()] = (x, y)
    return out
