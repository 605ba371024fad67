"""Copy Redis keys whatever their type: SCAN, then TYPE + PTTL + DUMP; RESTORE ... REPLACE.

DUMP serialises a key in Redis's own RDB encoding, so strings, hashes, lists, sets, sorted
sets and streams (with their consumer groups and pending entries) come back exactly as they
were, and nothing here needs to know which service wrote which key. The payload carries an
RDB version: a Redis older than the one that made the backup refuses it
(https://redis.io/docs/latest/commands/dump/).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis
from redis.exceptions import RedisError, ResponseError

from bem import redis_keys

# A restore writes each key under this prefix first, then renames it into place; a restore
# that dies in between leaves its staged keys to expire after STAGING_TTL_MS at most.
STAGING_PREFIX = redis_keys.RESTORING.encode()
STAGING_TTL_MS = 3_600_000
EXCLUDED_PREFIXES = tuple(p.encode() for p in redis_keys.NOT_BACKED_UP)
BATCH = 1000  # keys per SCAN page and per MULTI of TYPE/PTTL/DUMP or pipeline of RESTOREs

Progress = Callable[[str], None]


class BackupError(Exception):
    """A backup or restore could not complete; the message is one line for the operator."""


@dataclass(frozen=True)
class KeyDump:
    key: bytes
    type: str
    pttl: int  # milliseconds left at backup time; 0 = no expiry
    payload: bytes

    def to_line(self) -> bytes:
        return orjson.dumps({"key": base64.b64encode(self.key).decode(), "type": self.type,
                             "pttl": self.pttl,
                             "dump": base64.b64encode(self.payload).decode()}) + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> KeyDump:
        try:
            raw = orjson.loads(line)
            return cls(base64.b64decode(raw["key"]), str(raw["type"]), int(raw["pttl"]),
                       base64.b64decode(raw["dump"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"corrupt key record in the archive: {exc}") from None


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def connect(url: str) -> redis.Redis:
    """A client for the backup, checked with PING so a wrong URL fails before any work."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=60,
                                      decode_responses=False)
        client.ping()
    except (RedisError, OSError, ValueError) as exc:
        raise BackupError(f"cannot reach Redis at {redact(url)}: {exc}") from None
    return client


def is_excluded(key: bytes) -> bool:
    return key.startswith(EXCLUDED_PREFIXES)


def dump_keys(client: redis.Redis) -> Iterator[KeyDump]:
    """Every key but the excluded ones, in SCAN order (keys written meanwhile may be missed:
    stop the writers first for a point-in-time copy)."""
    batch: list[bytes] = []
    try:
        for key in client.scan_iter(count=BATCH):
            if is_excluded(key):
                continue
            batch.append(key)
            if len(batch) >= BATCH:
                yield from _dump_batch(client, batch)
                batch = []
        if batch:
            yield from _dump_batch(client, batch)
    except RedisError as exc:
        raise BackupError(f"reading Redis failed: {exc}") from None


# TYPE, PTTL and DUMP of a batch of keys in one script: atomic (a key cannot expire between
# its PTTL and its DUMP) and one round trip instead of three commands a key - client-side
# command handling, not Redis, is what limits a backup.
_DUMP_SCRIPT = """
local out = {}
for _, key in ipairs(KEYS) do
  out[#out + 1] = redis.call('TYPE', key).ok
  out[#out + 1] = redis.call('PTTL', key)
  out[#out + 1] = redis.call('DUMP', key)
end
return out
"""


def _dump_batch(client: redis.Redis, keys: list[bytes]) -> Iterator[KeyDump]:
    results = client.eval(_DUMP_SCRIPT, len(keys), *keys)
    for i, key in enumerate(keys):
        key_type, pttl, payload = results[3 * i:3 * i + 3]
        if not payload:  # deleted or expired since SCAN saw it (DUMP answered nil)
            continue
        yield KeyDump(key, key_type.decode(), max(int(pttl), 0), payload)


def restore_keys(client: redis.Redis, dumps: Iterable[KeyDump],
                 progress: Progress | None = None) -> int:
    """RESTORE every key with its recorded TTL, replacing what is there, all or none.

    Each key is restored under a staging name first, so a payload Redis refuses (a newer
    RDB version, a bad checksum) or a write that fails (out of memory) leaves the real keys
    untouched: the staged ones are deleted and the error raised. Then one MULTI/EXEC renames
    every staged key into place, atomically for every other client. Returns the count.
    """
    prefix = STAGING_PREFIX + secrets.token_hex(8).encode() + b":"
    staged: list[tuple[bytes, KeyDump]] = []
    try:
        batch: list[KeyDump] = []
        for dump in dumps:
            batch.append(dump)
            if len(batch) >= BATCH:
                staged += _stage_batch(client, prefix, batch)
                batch = []
                if progress:
                    progress(f"{len(staged)} keys staged")
        if batch:
            staged += _stage_batch(client, prefix, batch)
        _rename_into_place(client, staged)
    except BaseException:
        _drop_staged(client, [name for name, _dump in staged])
        raise
    return len(staged)


def _stage_batch(client: redis.Redis, prefix: bytes,
                 batch: list[KeyDump]) -> list[tuple[bytes, KeyDump]]:
    pipe = client.pipeline(transaction=False)
    names = [prefix + dump.key for dump in batch]
    for name, dump in zip(names, batch, strict=True):
        pipe.restore(name, dump.pttl or STAGING_TTL_MS, dump.payload, replace=True)
    try:
        results = pipe.execute(raise_on_error=False)
    except RedisError as exc:
        raise BackupError(f"writing Redis failed: {exc}") from None
    done = [(name, dump) for name, dump, result in zip(names, batch, results, strict=True)
            if not isinstance(result, Exception)]
    for dump, result in zip(batch, results, strict=True):
        if isinstance(result, Exception):
            _drop_staged(client, [name for name, _dump in done])
            if isinstance(result, ResponseError):
                raise BackupError(_restore_failure(dump, result))
            raise BackupError(f"writing Redis failed at key {dump.key!r}: {result}")
    return done


def _rename_into_place(client: redis.Redis, staged: list[tuple[bytes, KeyDump]]) -> None:
    pipe = client.pipeline(transaction=True)
    for name, dump in staged:
        pipe.rename(name, dump.key)
        if not dump.pttl:
            pipe.persist(dump.key)  # staged with STAGING_TTL_MS; it had no expiry
    try:
        results = pipe.execute(raise_on_error=False)
    except RedisError as exc:
        raise BackupError(f"writing Redis failed: {exc}") from None
    # A staged key can only be missing if its own (short) TTL ran out meanwhile.
    failed = [r for r in results if isinstance(r, Exception) and "no such key" not in str(r)]
    if failed:
        raise BackupError(f"writing Redis failed: {failed[0]}")


def _drop_staged(client: redis.Redis, names: list[bytes]) -> None:
    for start in range(0, len(names), BATCH):
        try:
            client.delete(*names[start:start + BATCH])
        except RedisError:
            return  # they expire by themselves (STAGING_TTL_MS at most)


def _restore_failure(dump: KeyDump, error: ResponseError) -> str:
    message = f"Redis refused key {dump.key!r} ({dump.type}): {error}"
    if "payload version" in str(error):
        message += ("; the target Redis is older than the one the backup was taken from "
                    "(DUMP payloads only move to the same or a newer Redis)")
    return message
