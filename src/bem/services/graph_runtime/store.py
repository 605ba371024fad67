"""Content-addressed graph storage, visible to every replica through Redis.

A graph's id is the hash of its canonical form, so storing the same graph twice is a no-op
and any replica can serve any id. Stored graphs are data, not cache: in Redis they have no
TTL (a `volatile-*` eviction policy never evicts them, and `bem backup` saves them).
Without Redis they live in this process, bounded by MAX_STORED_GRAPHS.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from bem import redis_keys
from bem.errors import InsufficientStorage, NotFound
from bem.runtime.cache import LRUBytes, canonical, exact
from bem.runtime.redis_link import RedisLink

KEY_PREFIX = redis_keys.GRAPHS
_LOCAL_COPIES_BYTES = 64 * 1024 * 1024  # Redis mode: recently used graphs kept in-process


def graph_id_of(canonical_graph: dict[str, Any]) -> str:
    return id_of_data(canonical(canonical_graph))


def id_of_data(data: bytes) -> str:
    """The id of a graph given as its canonical JSON."""
    return hashlib.sha256(data).hexdigest()[:32]


class GraphStore:
    def __init__(self, redis: RedisLink, capacity: int) -> None:
        self.redis = redis
        self.capacity = capacity
        self._local: dict[str, bytes] = {}  # embedded mode: the store itself
        self._recent = LRUBytes(_LOCAL_COPIES_BYTES)  # Redis mode: a read-through copy

    async def put(self, canonical_graph: dict[str, Any]) -> tuple[str, bool]:
        """Store a graph; returns (graph_id, created)."""
        data = canonical(canonical_graph)
        gid = id_of_data(data)
        if self.redis.configured:
            created = await self.redis.required(lambda r: r.set(KEY_PREFIX + gid, data, nx=True))
            self._recent.put(gid, data)
            return gid, bool(created)
        if gid in self._local:
            return gid, False
        if len(self._local) >= self.capacity:
            raise InsufficientStorage(
                f"the embedded graph store holds its limit of {self.capacity} graphs "
                f"(MAX_STORED_GRAPHS); configure REDIS_URL for shared storage")
        self._local[gid] = exact(data)  # kept until the process ends
        return gid, True

    async def get(self, gid: str) -> dict[str, Any]:
        return orjson.loads(await self.get_raw(gid))  # type: ignore[no-any-return]

    async def get_raw(self, gid: str) -> bytes:
        """A stored graph's canonical JSON, as stored (analyses parse it in a pool worker)."""
        data = self._local.get(gid) or self._recent.get(gid)
        if data is None and self.redis.configured:
            data = await self.redis.required(lambda r: r.get(KEY_PREFIX + gid))
            if data is not None:
                self._recent.put(gid, data)
        if data is None:
            raise NotFound(f"graph_id: no stored graph {gid!r}", field="graph_id")
        return data

    def count_local(self) -> int:
        return len(self._local)
