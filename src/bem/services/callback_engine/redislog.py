"""The durable event log: a Redis stream read through a consumer group.

Keys (none carries a TTL, so a `volatile-*` eviction policy never touches them, except the
consumers' heartbeats, which must expire):

    bem:events:stream              the stream; an entry lives until its event is finished
    bem:events:keys                hash idempotency key -> event id
    bem:events:records             hash event id -> final record (JSON)
    bem:events:finished            sorted set event id by finish time (ms), for retention
    bem:events:failures            hash '<id>:n' -> attempts, '<id>:error' -> last error
    bem:events:counters            hash accepted, duplicates, processed, failed
    bem:events:consumer:<name>     heartbeat of a live consumer (PX CONSUMER_TTL_MS)

Exactly once in effect: appending (idempotency check + XADD) is one Lua script, and so is
finishing (HSETNX the record; only if it was absent PUBLISH the pulses and count it; XACK and
XDEL the entry in every case). Scripts run atomically, so a consumer killed at any instant
leaves either nothing done (the entry is still pending and is reprocessed) or everything
done (a redelivery only acknowledges). A consumer whose heartbeat has expired is dead: a
live one claims its pending entries (XCLAIM) and then deletes it.

Retention: records and idempotency keys of events finished more than CALLBACK_RETENTION
seconds ago are pruned by the upkeep (a key resent after that is a new event), so the log's
memory is bounded by traffic over the retention window, not by all traffic ever.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from redis.exceptions import OutOfMemoryError, ResponseError

from bem import redis_keys
from bem.errors import InsufficientStorage
from bem.runtime.bus import CHANNEL_PREFIX
from bem.runtime.redis_link import RedisLink
from bem.services.callback_engine.eventlog import PULSE_TOPIC, Entry, Finished, state_of

log = logging.getLogger("bem.callback_engine")

PREFIX = redis_keys.EVENTS
STREAM = PREFIX + "stream"
KEYS = PREFIX + "keys"
RECORDS = PREFIX + "records"
FAILURES = PREFIX + "failures"
COUNTERS = PREFIX + "counters"
FINISHED = PREFIX + "finished"
HEARTBEAT = PREFIX + "consumer:"
GROUP = "callback_engine"
CONSUMER_TTL_MS = 5000  # a consumer silent this long is dead (its heartbeat beats every 1 s)
CLAIM_COUNT = 1000  # entries claimed from a dead consumer per upkeep round
PRUNE_COUNT, PRUNE_ROUNDS = 1000, 10  # records pruned per script call, calls per upkeep

# KEYS: stream, keys, counters. ARGV: idempotency key, event JSON, ... Returns id, dup, ...
APPEND = """
local out = {}
for i = 1, #ARGV, 2 do
  local id = redis.call('HGET', KEYS[2], ARGV[i])
  if id then
    redis.call('HINCRBY', KEYS[3], 'duplicates', 1)
    out[#out + 1] = id
    out[#out + 1] = 1
  else
    id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i], id)
    redis.call('HINCRBY', KEYS[3], 'accepted', 1)
    out[#out + 1] = id
    out[#out + 1] = 0
  end
end
return out
"""

# KEYS: stream, records, failures, counters, finished. ARGV: group, channel, then per event:
# id, status, record JSON, n, pulse 1..n. Returns 1 (finished now) or 0 (already) per event.
FINISH = """
local t = redis.call('TIME')
local now = string.format('%.0f', t[1] * 1000 + math.floor(t[2] / 1000))
local created = {}
local i = 3
while i <= #ARGV do
  local id, status, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 3])
  if redis.call('HSETNX', KEYS[2], id, ARGV[i + 2]) == 1 then
    for j = 1, n do
      redis.call('PUBLISH', ARGV[2], ARGV[i + 3 + j])
    end
    redis.call('HINCRBY', KEYS[4], status, 1)
    redis.call('ZADD', KEYS[5], now, id)
    created[#created + 1] = 1
  else
    created[#created + 1] = 0
  end
  redis.call('HDEL', KEYS[3], id .. ':n', id .. ':error')
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
  i = i + 4 + n
end
return created
"""

# KEYS: finished, records, keys. ARGV: retention ms, count. Forgets the oldest finished
# events (record, and idempotency key unless it was reused); returns how many.
PRUNE = """
local t = redis.call('TIME')
local cutoff = string.format('%.0f', t[1] * 1000 + math.floor(t[2] / 1000) - tonumber(ARGV[1]))
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  local record = redis.call('HGET', KEYS[2], id)
  if record then
    local key = cjson.decode(record)['idempotency_key']
    if key and redis.call('HGET', KEYS[3], key) == id then
      redis.call('HDEL', KEYS[3], key)
    end
    redis.call('HDEL', KEYS[2], id)
  end
  redis.call('ZREM', KEYS[1], id)
end
return #ids
"""

# KEYS: stream. ARGV: group, consumer. Deletes the consumer only if nothing is pending for it
# (checked and done atomically, so no entry delivered meanwhile can be lost with it).
FORGET = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisLog:
    backend = "redis"
    durable = True

    def __init__(self, redis: RedisLink, consumer: str, retention: float) -> None:
        assert redis.client is not None
        self.redis = redis
        self.consumer = consumer
        self.retention_ms = int(retention * 1000)
        self.channel = CHANNEL_PREFIX + PULSE_TOPIC  # what bus.publish("pulses", ...) uses
        self._append = redis.client.register_script(APPEND)
        self._finish = redis.client.register_script(FINISH)
        self._forget = redis.client.register_script(FORGET)
        self._prune = redis.client.register_script(PRUNE)
        self.aof_enabled: bool | None = None  # unknown until Redis answers INFO

    async def start(self) -> None:
        await self.redis.optional(lambda _r: self._create_group(), None)

    async def _create_group(self) -> None:
        assert self.redis.client is not None
        try:  # from id 0: any entry in the stream is unfinished, whenever it was added
            await self.redis.client.xgroup_create(STREAM, GROUP, "0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def append(self, events: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        args: list[bytes | str] = []
        for event in events:
            args += [event["idempotency_key"], orjson.dumps(event)]
        try:
            flat = await self.redis.required(
                lambda r: self._append(keys=[STREAM, KEYS, COUNTERS], args=args, client=r))
        except OutOfMemoryError:
            raise InsufficientStorage(  # the log's keys have no TTL: nothing can be evicted
                "events: Redis is at its maxmemory and cannot take more events; retry when "
                "the backlog has been processed or give Redis more memory", field="events",
                headers={"Retry-After": "5"}) from None
        return [(_s(flat[i]), bool(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def read(self, count: int, *, own: bool, block: float = 0.0) -> list[Entry]:
        streams = {STREAM: "0" if own else ">"}
        wait = None if own or block <= 0 else int(block * 1000)
        try:
            reply = await self.redis.required(
                lambda r: r.xreadgroup(GROUP, self.consumer, streams, count=count, block=wait))
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("consumer group missing (Redis lost its data?); recreating it")
            await self._create_group()
            return []
        entries, gone = [], []
        for _stream, items in reply or ():
            for entry_id, fields in items:
                if fields:
                    entries.append(Entry(_s(entry_id), orjson.loads(fields[b"e"])))
                else:  # pending but deleted from the stream: finished elsewhere
                    gone.append(entry_id)
        if gone:
            await self.redis.required(lambda r: r.xack(STREAM, GROUP, *gone))
        return entries

    async def finish(self, done: list[Finished]) -> list[bool]:
        if not done:
            return []
        args: list[bytes | str] = [GROUP, self.channel]
        for f in done:
            args += [f.entry.event_id, f.status, orjson.dumps(f.record), str(len(f.pulses))]
            args += [orjson.dumps(p) for p in f.pulses]
        created = await self.redis.required(
            lambda r: self._finish(keys=[STREAM, RECORDS, FAILURES, COUNTERS, FINISHED],
                                   args=args, client=r))
        return [bool(c) for c in created]

    async def note_failure(self, entry: Entry, error: str) -> int:
        eid = entry.event_id

        async def count(r: Any) -> int:
            async with r.pipeline(transaction=True) as pipe:
                pipe.hincrby(FAILURES, f"{eid}:n", 1)
                pipe.hset(FAILURES, f"{eid}:error", error)
                attempts, _ = await pipe.execute()
            return int(attempts)

        return await self.redis.required(count)

    async def attempts(self, event_ids: list[str]) -> dict[str, int]:
        fields = [f"{i}:n" for i in event_ids]
        counts = await self.redis.required(lambda r: r.hmget(FAILURES, fields))
        return {i: int(n) for i, n in zip(event_ids, counts, strict=True) if n is not None}

    async def get(self, event_id: str) -> dict[str, Any] | None:
        async def read(r: Any) -> list[Any]:
            async with r.pipeline(transaction=True) as pipe:  # one consistent snapshot
                pipe.hget(RECORDS, event_id)
                pipe.xrange(STREAM, event_id, event_id)
                pipe.hmget(FAILURES, f"{event_id}:n", f"{event_id}:error")
                return await pipe.execute()  # type: ignore[no-any-return]

        record, entries, (attempts, error) = await self.redis.required(read)
        if record is not None:
            return orjson.loads(record)  # type: ignore[no-any-return]
        if not entries:
            return None
        return state_of(event_id, orjson.loads(entries[0][1][b"e"]), int(attempts or 0),
                        _s(error) if error is not None else None)

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        ids = await self.redis.required(lambda r: r.zrevrange(FINISHED, 0, limit - 1))
        if not ids:
            return []
        records = await self.redis.required(lambda r: r.hmget(RECORDS, ids))
        # A record pruned (retention) between the two reads is simply no longer recent.
        return [orjson.loads(rec) for rec in records if rec is not None]

    async def stats(self) -> dict[str, Any]:
        async def read(r: Any) -> list[Any]:
            async with r.pipeline(transaction=True) as pipe:
                pipe.xlen(STREAM)
                pipe.xpending(STREAM, GROUP)
                pipe.hgetall(COUNTERS)
                pipe.xrange(STREAM, "-", "+", count=1)
                pipe.time()
                return await pipe.execute()  # type: ignore[no-any-return]

        try:
            depth, pending, counters, oldest, (sec, usec) = await self.redis.required(read)
        except ResponseError as exc:  # the group is gone with Redis's data: nothing pending
            if "NOGROUP" not in str(exc):
                raise
            await self._create_group()
            return await self.stats()
        counts = {_s(k): int(v) for k, v in counters.items()}
        now = sec + usec / 1e6
        age = now - int(_s(oldest[0][0]).split("-")[0]) / 1000 if oldest else 0.0
        # Finished entries are deleted, so the stream holds exactly the unfinished events:
        # those read (pending) and those not read yet (lag).
        return {"backend": self.backend, "durable": self.durable, "depth": depth,
                "lag": max(0, depth - pending["pending"]), "pending": pending["pending"],
                "lag_seconds": round(max(0.0, age), 3),
                **{k: counts.get(k, 0) for k in ("accepted", "duplicates", "processed",
                                                  "failed")}}

    async def maintain(self) -> int:
        """Heartbeat, persistence check, retention, and reclaim of dead consumers' events."""
        return await self.redis.optional(self._maintain, 0)

    async def _maintain(self, r: Any) -> int:
        await r.set(HEARTBEAT + self.consumer, b"1", px=CONSUMER_TTL_MS)
        info = await r.info("persistence")
        self.aof_enabled = bool(info.get("aof_enabled"))
        for _ in range(PRUNE_ROUNDS):
            pruned = await self._prune(keys=[FINISHED, RECORDS, KEYS],
                                       args=[self.retention_ms, PRUNE_COUNT], client=r)
            if pruned < PRUNE_COUNT:
                break
        try:
            consumers = await r.xinfo_consumers(STREAM, GROUP)
        except ResponseError:  # no group yet (Redis was down at start or lost its data)
            await self._create_group()
            return 0
        claimed = 0
        for c in consumers:
            name = _s(c["name"])
            if name == self.consumer or await r.exists(HEARTBEAT + name):
                continue
            if c["pending"]:
                claimed += await self._claim(r, name)
            if await self._forget(keys=[STREAM], args=[GROUP, name], client=r) == 1:
                log.info("forgot dead consumer %s", name)
        return claimed

    async def _claim(self, r: Any, dead: str) -> int:
        pending = await r.xpending_range(STREAM, GROUP, "-", "+", CLAIM_COUNT, dead)
        ids = [p["message_id"] for p in pending]
        if not ids:
            return 0
        moved = await r.xclaim(STREAM, GROUP, self.consumer, 0, ids, justid=True)
        log.warning("claimed %d pending events of dead consumer %s", len(moved), dead)
        return len(moved)

    def health(self) -> dict[str, Any]:
        if self.aof_enabled is False:
            return {"status": "warn", "observedValue": "redis stream, appendonly=no",
                    "output": "events survive a service crash but not a Redis restart: "
                              "enable appendonly in Redis"}
        return {"status": "pass", "observedValue": "redis stream (durable)",
                "output": f"{STREAM}, consumer group {GROUP}, consumer {self.consumer}"}
