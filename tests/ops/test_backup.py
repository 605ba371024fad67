"""`bem backup` -> FLUSHALL -> `bem restore` against a real redis-server.

Every key is compared by type and value read back with the type's own commands (DUMP bytes
are not comparable: a hash-table set serialises in iteration order). Streams are compared
entry by entry, with their consumer groups, consumers and pending entries, the way the
callback engine sees them.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as redis_py

from bem.cli import main
from bem.ops.archive import MANIFEST, REDIS_MEMBER
from bem.ops.redis_data import KeyDump
from tests.support import RedisServer, free_port

STREAM = b"bem:events:stream"  # the callback engine's layout (its redislog module)
CACHE_TTL_MS = 3_600_000


def populate(r: redis_py.Redis) -> None:
    """One key of every type the platform writes, binary names and values included."""
    r.set(b"bem:cache:analyze:\x00\xff", b"\x81\x00binary result", px=CACHE_TTL_MS)
    r.set(b"bem:graph:0123abcd", orjson.dumps({"nodes": [{"id": "V01"}], "edges": []}))
    r.hset(b"bem:events:keys", mapping={b"idem-1": b"1-0", b"idem-2": b"2-0"})
    r.sadd(b"bem:tags", b"e1", b"e2", b"e3")
    r.zadd(b"bem:scores", {b"V01": 0.25, b"V07": 3.5})
    r.rpush(b"bem:queue", b"a", b"b", b"c")
    for i in range(5):
        r.xadd(STREAM, {b"event_id": f"e{i}".encode(), b"pulse": b"bid"})
    r.xgroup_create(STREAM, b"callback_engine", id="0")
    r.xreadgroup(b"callback_engine", b"worker-1", {STREAM: b">"}, count=3)  # 3 pending
    r.xack(STREAM, b"callback_engine", r.xrange(STREAM, count=1)[0][0])  # 1 acked, 2 pending
    r.xgroup_create(STREAM, b"audit", id="$")
    for i in range(3):
        r.set(f"bem:registry:sfde:host-{i}".encode(), b"{}", px=6000)


def value_of(r: redis_py.Redis, key: bytes, key_type: bytes) -> Any:
    if key_type == b"string":
        return r.get(key)
    if key_type == b"hash":
        return r.hgetall(key)
    if key_type == b"set":
        return r.smembers(key)
    if key_type == b"zset":
        return r.zrange(key, 0, -1, withscores=True)
    if key_type == b"list":
        return r.lrange(key, 0, -1)
    assert key_type == b"stream", key_type
    groups = []
    for group in r.xinfo_groups(key):
        name = group["name"]
        consumers = sorted((c["name"], c["pending"]) for c in r.xinfo_consumers(key, name))
        pending = [(p["message_id"], p["consumer"], p["times_delivered"])
                   for p in r.xpending_range(key, name, min="-", max="+", count=100)]
        groups.append((name, group["last-delivered-id"], group["pending"], consumers, pending))
    return r.xrange(key), sorted(groups)


def snapshot(r: redis_py.Redis) -> dict[bytes, tuple[bytes, Any, bool]]:
    """key -> (type, value, has a TTL)."""
    out = {}
    for key in r.scan_iter():
        key_type = r.type(key)
        out[key] = (key_type, value_of(r, key, key_type), r.pttl(key) > 0)
    return out


def bem(*args: str, stdin: bytes | None = None, **env: str) -> subprocess.CompletedProcess[bytes]:
    """The real CLI in a child process (no REDIS_URL / DATA_DIR leaking in)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATA_DIR")}
    return subprocess.run([sys.executable, "-m", "bem", *args], input=stdin,
                          capture_output=True, env={**clean, **env}, timeout=60, check=False)


def make_data_dir(root: Path) -> Path:
    data = root / "data"
    (data / "uploads" / "nested").mkdir(parents=True)
    (data / "empty").mkdir()
    (data / "config.yaml").write_text("functor_types: []\n")
    (data / "uploads" / "nested" / "model.bin").write_bytes(bytes(range(256)) * 40)
    (data / "latest").symlink_to("uploads/nested/model.bin")  # relative: stays inside
    return data


def tree(root: Path) -> dict[str, Any]:
    return {p.relative_to(root).as_posix(): (str(p.readlink()) if p.is_symlink() else
                                             p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


# --- round trips ---------------------------------------------------------------------------
def test_round_trip_restores_every_key_but_the_registry(client: redis_py.Redis,
                                                        server: RedisServer,
                                                        tmp_path: Path) -> None:
    populate(client)
    before = snapshot(client)
    data = make_data_dir(tmp_path)
    files_before = tree(data)
    archive = tmp_path / "backup.tar.gz"

    done = bem("backup", "-o", str(archive), "--data-dir", str(data), REDIS_URL=server.url)
    assert done.returncode == 0, done.stderr.decode()
    assert b"bem backup: wrote" in done.stderr and b"stream 1" in done.stderr
    assert done.stdout == b""

    client.flushall()
    for path in sorted(data.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()

    done = bem("restore", str(archive), "--redis-url", server.url, DATA_DIR=str(data))
    assert done.returncode == 0, done.stderr.decode()
    assert b"bem restore: done: 7 keys" in done.stderr

    after = snapshot(client)
    expected = {k: v for k, v in before.items() if not k.startswith(b"bem:registry:")}
    assert len(expected) == 7 and len(before) == 10
    assert after == expected  # same keys, types, values and TTL presence
    assert before[STREAM][1][1][1][2] == 2  # "callback_engine" has 2 pending
    assert 0 < client.pttl(b"bem:cache:analyze:\x00\xff") <= CACHE_TTL_MS
    assert client.pttl(b"bem:graph:0123abcd") == -1
    assert tree(data) == files_before


def test_archive_streams_through_stdout_and_stdin(client: redis_py.Redis,
                                                  server: RedisServer) -> None:
    populate(client)
    before = snapshot(client)
    out = bem("backup", "-o", "-", REDIS_URL=server.url)
    assert out.returncode == 0, out.stderr.decode()
    with tarfile.open(fileobj=io.BytesIO(out.stdout), mode="r:gz") as tar:
        assert tar.getnames() == [MANIFEST, REDIS_MEMBER]
        manifest = orjson.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    assert manifest["redis"]["keys"] == 7 and manifest["redis"]["types"]["stream"] == 1
    assert manifest["data"] is None

    client.flushall()
    done = bem("restore", "-", stdin=out.stdout, REDIS_URL=server.url)
    assert done.returncode == 0, done.stderr.decode()
    assert snapshot(client) == {k: v for k, v in before.items()
                                if not k.startswith(b"bem:registry:")}


def test_restore_replaces_existing_keys_and_keeps_others(client: redis_py.Redis,
                                                         server: RedisServer,
                                                         tmp_path: Path) -> None:
    client.set(b"bem:graph:g", b"original")
    archive = str(tmp_path / "b.tar.gz")
    assert main(["backup", "-o", archive, "--redis-url", server.url]) == 0
    client.set(b"bem:graph:g", b"changed later")
    client.set(b"bem:graph:new", b"written after the backup")
    assert main(["restore", archive, "--redis-url", server.url]) == 0
    assert client.get(b"bem:graph:g") == b"original"
    assert client.get(b"bem:graph:new") == b"written after the backup"


# --- failure paths -------------------------------------------------------------------------
def test_unreachable_redis_is_a_clear_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    archive = tmp_path / "b.tar.gz"
    assert main(["backup", "-o", str(archive), "--redis-url", url]) == 1
    err = capsys.readouterr().err
    assert "bem backup: cannot reach Redis at redis://:***@127.0.0.1" in err
    assert "secret" not in err
    assert list(tmp_path.iterdir()) == []  # no partial archive left behind


def test_nothing_to_back_up(monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("DATA_DIR", raising=False)
    assert main(["backup", "-o", "x.tar.gz"]) == 1
    assert "nothing to back up: set REDIS_URL" in capsys.readouterr().err


def test_missing_data_dir_and_output_dir(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backup", "-o", str(tmp_path / "b.tgz"), "--data-dir",
                 str(tmp_path / "absent")]) == 1
    assert f"data directory {tmp_path / 'absent'} does not exist" in capsys.readouterr().err
    assert main(["backup", "-o", str(tmp_path / "no" / "b.tgz"), "--data-dir",
                 str(tmp_path)]) == 1
    assert f"directory {tmp_path / 'no'} does not exist" in capsys.readouterr().err


def test_restore_rejects_what_is_not_a_backup(tmp_path: Path, server: RedisServer,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all")
    assert main(["restore", str(junk), "--redis-url", server.url]) == 1
    assert "not a readable backup archive" in capsys.readouterr().err

    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        add(tar, "README", b"hello")
    assert main(["restore", str(other), "--redis-url", server.url]) == 1
    assert "not a bem backup (no manifest.json first)" in capsys.readouterr().err

    assert main(["restore", str(tmp_path / "absent.tar.gz"), "--redis-url", server.url]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_restore_refuses_before_writing_when_a_target_is_missing(
        client: redis_py.Redis, server: RedisServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("DATA_DIR", raising=False)
    populate(client)
    data = make_data_dir(tmp_path)
    archive = str(tmp_path / "b.tar.gz")
    assert main(["backup", "-o", archive, "--redis-url", server.url, "--data-dir", str(data)]) == 0
    client.flushall()
    assert main(["restore", archive, "--redis-url", server.url]) == 1
    assert "holds 2 data files but no data directory" in capsys.readouterr().err
    assert client.dbsize() == 0  # refused before any key was written
    assert main(["restore", archive, "--data-dir", str(tmp_path / "restored")]) == 1
    assert "Redis keys but no Redis is set" in capsys.readouterr().err


def test_truncated_archive_is_reported(client: redis_py.Redis, server: RedisServer,
                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Enough incompressible keys that the cut falls inside redis.jsonl.
    client.mset({f"bem:graph:{i}".encode(): os.urandom(64) for i in range(3000)})
    archive = tmp_path / "b.tar.gz"
    assert main(["backup", "-o", str(archive), "--redis-url", server.url]) == 0
    whole = archive.read_bytes()
    archive.write_bytes(whole[: len(whole) // 2])
    assert main(["restore", str(archive), "--redis-url", server.url]) == 1
    err = capsys.readouterr().err
    assert "not a readable backup archive" in err, err


def test_fewer_keys_than_the_manifest_lists(client: redis_py.Redis, server: RedisServer,
                                            tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    client.set(b"bem:graph:ok", b"value")
    archive = tmp_path / "b.tar.gz"
    write_archive(archive, [KeyDump(b"bem:graph:ok", "string", 0, client.dump(b"bem:graph:ok"))],
                  listed=2)
    assert main(["restore", str(archive), "--redis-url", server.url]) == 1
    assert "lists 2 keys but the archive held 1; the archive is incomplete" in \
        capsys.readouterr().err


def test_a_payload_redis_refuses_names_the_key(client: redis_py.Redis, server: RedisServer,
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    client.set(b"bem:graph:ok", b"value")
    good = KeyDump(b"bem:graph:ok", "string", 0, client.dump(b"bem:graph:ok"))
    broken = KeyDump(b"bem:graph:bad", "string", 0, good.payload[:-1] + b"\x00")  # checksum
    archive = tmp_path / "b.tar.gz"
    write_archive(archive, [good, broken])
    assert main(["restore", str(archive), "--redis-url", server.url]) == 1
    err = capsys.readouterr().err
    assert "Redis refused key b'bem:graph:bad' (string)" in err
    assert "older than the one the backup was taken from" in err


def test_data_members_cannot_escape_the_data_dir(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "b.tar.gz"
    manifest = {"format": "bem-backup", "version": 1, "redis": None,
                "data": {"files": 1, "bytes": 4}}
    with tarfile.open(archive, "w:gz") as tar:
        add(tar, MANIFEST, orjson.dumps(manifest))
        add(tar, "data/../../escaped.txt", b"evil")
    target = tmp_path / "restored"
    assert main(["restore", str(archive), "--data-dir", str(target)]) == 1
    assert "refusing archive member 'data/../../escaped.txt'" in capsys.readouterr().err
    assert not (tmp_path / "escaped.txt").exists()


def test_unsupported_format_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "b.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add(tar, MANIFEST, orjson.dumps({"format": "bem-backup", "version": 99}))
    assert main(["restore", str(archive), "--data-dir", str(tmp_path)]) == 1
    assert "format version 99 is not supported" in capsys.readouterr().err


# --- helpers -------------------------------------------------------------------------------
def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_archive(path: Path, dumps: list[KeyDump], listed: int | None = None) -> None:
    manifest = {"format": "bem-backup", "version": 1, "data": None,
                "redis": {"keys": len(dumps) if listed is None else listed, "types": {}}}
    with tarfile.open(path, "w:gz") as tar:
        add(tar, MANIFEST, orjson.dumps(manifest))
        add(tar, REDIS_MEMBER, b"".join(d.to_line() for d in dumps))
