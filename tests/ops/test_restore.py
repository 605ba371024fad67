"""`bem restore` is all or nothing: whatever is wrong with an archive, or with where it goes,
is found before the first key or file is written, and a failing write leaves none behind.

Against a real redis-server; the target always holds something first, so "nothing written"
is "everything as it was", not "empty".
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import orjson
import pytest
import redis as redis_py

from bem.cli import main
from bem.ops.archive import MANIFEST, REDIS_MEMBER
from bem.ops.redis_data import KeyDump
from tests.ops.test_backup import add, make_data_dir, populate, snapshot, tree
from tests.support import RedisServer

ORIGINAL = b"as it was before the restore"


@pytest.fixture
def before(client: redis_py.Redis, server: RedisServer, tmp_path: Path) -> tuple[Path, Path]:
    """A full backup (keys and data files), and targets that hold other values now."""
    populate(client)
    data = make_data_dir(tmp_path)
    archive = tmp_path / "full.tar.gz"
    assert main(["backup", "-o", str(archive), "--redis-url", server.url,
                 "--data-dir", str(data)]) == 0
    client.flushall()
    client.set(b"bem:graph:0123abcd", ORIGINAL)  # a key the archive holds too
    (data / "config.yaml").write_bytes(ORIGINAL)
    return archive, data


def state(client: redis_py.Redis, data: Path) -> tuple[object, object]:
    return snapshot(client), tree(data)


def members(archive: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(archive, "r:gz") as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else None)  # type: ignore[union-attr]
                for m in tar.getmembers()]


def rewrite(archive: Path, target: Path, change: object) -> None:
    """Copy `archive` member by member; `change(info, data)` returns the members to write."""
    with tarfile.open(target, "w:gz") as out:
        for info, data in members(archive):
            for new_info, new_data in change(info, data):  # type: ignore[operator]
                out.addfile(new_info, None if new_data is None else io.BytesIO(new_data))


def restore(archive: Path, server: RedisServer, data: Path) -> int:
    return main(["restore", str(archive), "--redis-url", server.url, "--data-dir", str(data)])


# --- found while reading: nothing written ------------------------------------------------
def test_a_corrupt_key_record_at_the_end_writes_nothing(
        before: tuple[Path, Path], client: redis_py.Redis, server: RedisServer,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive, data = before
    was = state(client, data)

    payload = client.dump(b"bem:graph:0123abcd")
    more = b"".join(KeyDump(f"bem:graph:{i}".encode(), "string", 0, payload).to_line()
                    for i in range(1500))  # more than one batch of writes before the cut

    def corrupt_last_line(info: tarfile.TarInfo, body: bytes | None):  # type: ignore[no-untyped-def]
        if info.name == REDIS_MEMBER:
            assert body is not None
            body = body + more + b'{"key": "not base64!", "type": 1}\n'
            info.size = len(body)
        yield info, body

    broken = tmp_path / "broken.tar.gz"
    rewrite(archive, broken, corrupt_last_line)
    assert restore(broken, server, data) == 1
    assert "corrupt key record in the archive" in capsys.readouterr().err
    assert state(client, data) == was
    assert not list(data.glob(".bem-restore-*"))  # no staging directory left behind


@pytest.mark.parametrize("bad, why", [
    (("link", "../../etc/passwd"), "outside the data directory"),
    (("link", "/etc/passwd"), "outside the data directory"),
    (("fifo", ""), "only directories, files and links"),
    (("file", "latest/inside-a-link"), "is not a directory"),
    (("file", "config.yaml"), "in the archive twice"),
])
def test_an_unsafe_data_member_after_everything_else_writes_nothing(
        before: tuple[Path, Path], client: redis_py.Redis, server: RedisServer,
        tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: tuple[str, str],
        why: str) -> None:
    archive, data = before
    was = state(client, data)
    kind, value = bad

    def append_bad(info: tarfile.TarInfo, body: bytes | None):  # type: ignore[no-untyped-def]
        yield info, body
        if info.name != "data/uploads/nested/model.bin":  # the archive's last member
            return
        extra = tarfile.TarInfo("data/evil")
        if kind == "link":
            extra.type, extra.linkname = tarfile.SYMTYPE, value
        elif kind == "fifo":
            extra.type = tarfile.FIFOTYPE
        else:
            extra = tarfile.TarInfo(f"data/{value}")
            extra.size = 4
            yield extra, b"evil"
            return
        yield extra, None

    broken = tmp_path / "broken.tar.gz"
    rewrite(archive, broken, append_bad)
    assert members(broken)[-1][0].name.startswith("data/")
    assert restore(broken, server, data) == 1
    err = capsys.readouterr().err
    assert "refusing archive member" in err and why in err, err
    assert state(client, data) == was
    assert not list(data.glob(".bem-restore-*"))


def test_a_truncated_archive_writes_nothing(before: tuple[Path, Path], client: redis_py.Redis,
                                            server: RedisServer,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    archive, data = before
    # Incompressible data files, so the cut falls after the keys and inside the files.
    (data / "uploads" / "random.bin").write_bytes(os.urandom(200_000))
    assert main(["backup", "-o", str(archive), "--redis-url", server.url,
                 "--data-dir", str(data)]) == 0
    was = state(client, data)
    whole = archive.read_bytes()
    archive.write_bytes(whole[: len(whole) * 3 // 4])
    assert restore(archive, server, data) == 1
    assert "not a readable backup archive" in capsys.readouterr().err
    assert state(client, data) == was


def test_a_file_in_the_way_is_refused_before_writing(
        before: tuple[Path, Path], client: redis_py.Redis, server: RedisServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    archive, data = before
    (data / "empty").rmdir()
    (data / "empty").write_bytes(b"a file where the archive has a directory")
    was = state(client, data)
    assert restore(archive, server, data) == 1
    assert "cannot restore directory empty" in capsys.readouterr().err
    assert state(client, data) == was


# --- found while writing: the keys written so far are taken back --------------------------
def test_a_payload_redis_refuses_leaves_every_key_as_it_was(
        client: redis_py.Redis, server: RedisServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    client.set(b"bem:graph:ok", b"value in the archive")
    good = KeyDump(b"bem:graph:ok", "string", 0, client.dump(b"bem:graph:ok"))
    broken = KeyDump(b"bem:graph:bad", "string", 0, good.payload[:-1] + b"\x00")  # checksum
    # the good key first, more than one RESTORE batch of them, the refused one last
    dumps = [good] + [KeyDump(f"bem:graph:{i}".encode(), "string", 0, good.payload)
                      for i in range(1500)] + [broken]
    archive = tmp_path / "b.tar.gz"
    manifest = {"format": "bem-backup", "version": 1, "data": None,
                "redis": {"keys": len(dumps), "types": {"string": len(dumps)}}}
    with tarfile.open(archive, "w:gz") as tar:
        add(tar, MANIFEST, orjson.dumps(manifest))
        add(tar, REDIS_MEMBER, b"".join(d.to_line() for d in dumps))
    client.set(b"bem:graph:ok", ORIGINAL)
    assert main(["restore", str(archive), "--redis-url", server.url]) == 1
    assert "Redis refused key b'bem:graph:bad'" in capsys.readouterr().err
    assert client.get(b"bem:graph:ok") == ORIGINAL
    assert sorted(client.keys()) == [b"bem:graph:ok"]  # no restored or staged key left


def test_restored_keys_keep_no_expiry_and_a_ttl(client: redis_py.Redis, server: RedisServer,
                                                tmp_path: Path) -> None:
    """Keys are staged with an expiry and renamed into place: the real ones get back exactly
    what they had."""
    client.set(b"bem:graph:forever", b"1")
    client.set(b"bem:cache:soon", b"2", px=600_000)
    archive = tmp_path / "b.tar.gz"
    assert main(["backup", "-o", str(archive), "--redis-url", server.url]) == 0
    client.flushall()
    assert main(["restore", str(archive), "--redis-url", server.url]) == 0
    assert client.pttl(b"bem:graph:forever") == -1
    assert 0 < client.pttl(b"bem:cache:soon") <= 600_000
    assert sorted(client.keys()) == [b"bem:cache:soon", b"bem:graph:forever"]


# --- no tarfile feature newer than Debian bookworm's Python 3.11.2 --------------------------
def test_restore_works_without_the_tarfile_of_python_3_11_4(
        client: redis_py.Redis, server: RedisServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Extraction filters, FilterError and TarInfo.replace arrived in 3.11.4; TarFile's own
    extract would apply no filter before it. Without any of them, a full round trip."""
    populate(client)
    data = make_data_dir(tmp_path)
    files = tree(data)
    keys = snapshot(client)
    archive = tmp_path / "b.tar.gz"
    assert main(["backup", "-o", str(archive), "--redis-url", server.url,
                 "--data-dir", str(data)]) == 0
    for name in ("FilterError", "data_filter", "tar_filter", "fully_trusted_filter"):
        monkeypatch.delattr(tarfile, name, raising=False)
    monkeypatch.delattr(tarfile.TarInfo, "replace", raising=False)

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("restore must not extract with tarfile")

    monkeypatch.setattr(tarfile.TarFile, "extract", forbidden)
    monkeypatch.setattr(tarfile.TarFile, "extractall", forbidden)
    client.flushall()
    restored = tmp_path / "restored"
    assert main(["restore", str(archive), "--redis-url", server.url,
                 "--data-dir", str(restored)]) == 0
    assert tree(restored) == files
    assert snapshot(client) == {k: v for k, v in keys.items()
                                if not k.startswith(b"bem:registry:")}
