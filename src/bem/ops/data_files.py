"""The data directory's side of a restore: every member checked and staged, then moved in.

tarfile's extraction filters (`filter="data"`, `FilterError`, `TarInfo.replace`) came with
Python 3.11.4, and Debian bookworm ships 3.11.2, so members are checked here by the same
rules and written by this module: relative paths that stay inside the data directory,
only directories, regular files and links (a symbolic link's target and a hard link's
source inside it too), no directory reached through a link, permission bits at most 0o755
(no setuid, setgid, sticky, group or other write), the owner left to whoever restores.

Everything is first written into a staging directory inside the data directory (so that
moving a file into place is a rename on the same file system), and checked against what
the data directory already holds - a file where the archive has a directory, or the
reverse, is refused - before anything in the data directory changes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bem.ops.redis_data import BackupError

STAGING_PREFIX = ".bem-restore-"
COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    relative: PurePosixPath
    kind: str  # "dir", "file" or "link" (symbolic); hard links are staged as files
    mode: int
    mtime: float


class StagedFiles:
    """The data members of one archive, staged under `root` until `commit()`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries: list[Entry] = []
        self.files = 0
        self.bytes = 0
        self._created_root = False
        self._kinds: dict[PurePosixPath, str] = {}
        self.stage = self._make_stage()

    def _make_stage(self) -> Path:
        try:
            if not self.root.exists():
                self.root.mkdir(parents=True)
                self._created_root = True
            return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root))
        except OSError as exc:
            raise BackupError(f"cannot write the data directory {self.root}: "
                              f"{exc.strerror or exc}") from None

    def discard(self) -> None:
        """Remove the staging directory (and the data directory, if made for this restore
        and still holding nothing else)."""
        shutil.rmtree(self.stage, ignore_errors=True)
        if self._created_root:
            with contextlib.suppress(OSError):  # not empty: someone else wrote there
                self.root.rmdir()

    # --- reading the archive: check and stage one member ---------------------------------
    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo, relative: str) -> None:
        path = self._checked_path(member.name, relative)
        try:
            self._stage(tar, member, path)
        except OSError as exc:
            raise BackupError(f"cannot stage {member.name!r} in {self.stage}: "
                              f"{exc.strerror or exc}") from None

    def _stage(self, tar: tarfile.TarFile, member: tarfile.TarInfo,
               path: PurePosixPath) -> None:
        staged = self.stage / path
        staged.parent.mkdir(parents=True, exist_ok=True)  # an archive may omit a directory
        mode = member.mode & 0o755
        if member.isdir():
            staged.mkdir(exist_ok=True)
            self._record(path, "dir", mode | 0o700, member.mtime)
        elif member.isreg():
            self._stage_file(tar, member, staged)
            self._record(path, "file", mode | 0o600, member.mtime)
            self.files += 1
            self.bytes += member.size
        elif member.issym():
            self._check_symlink(member, path)
            os.symlink(member.linkname, staged)
            self._record(path, "link", 0, member.mtime)
        elif member.islnk():
            os.link(self.stage / self._hard_link_source(member), staged)
            self._record(path, "file", mode | 0o600, member.mtime)
            self.files += 1
        else:
            raise _refused(member.name, "only directories, files and links are data")

    def _checked_path(self, name: str, relative: str) -> PurePosixPath:
        path = PurePosixPath(relative)
        if not relative or path.is_absolute() or ".." in path.parts:
            raise _refused(name, "its path leaves the data directory")
        if path in self._kinds:
            raise _refused(name, "it is in the archive twice")
        for parent in path.parents:
            if parent != PurePosixPath(".") and self._kinds.get(parent, "dir") != "dir":
                raise _refused(name, f"its directory {parent} is not a directory")
        return path

    def _stage_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, staged: Path) -> None:
        source = tar.extractfile(member)
        assert source is not None  # a regular file
        with source, open(staged, "xb") as out:
            shutil.copyfileobj(source, out, COPY_CHUNK)

    def _check_symlink(self, member: tarfile.TarInfo, path: PurePosixPath) -> None:
        target = member.linkname
        resolved = os.path.normpath(os.path.join(str(path.parent), target))
        if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
            raise _refused(member.name, f"its link target {target!r} is outside the data "
                                        f"directory")

    def _hard_link_source(self, member: tarfile.TarInfo) -> PurePosixPath:
        source = PurePosixPath(member.linkname.removeprefix("data/"))
        if self._kinds.get(source) != "file" or not member.linkname.startswith("data/"):
            raise _refused(member.name, f"it links to {member.linkname!r}, not a file restored "
                                        f"before it")
        return source

    def _record(self, path: PurePosixPath, kind: str, mode: int, mtime: float) -> None:
        self._kinds[path] = kind
        self.entries.append(Entry(path, kind, mode, mtime))

    # --- before writing: what is in the way ------------------------------------------------
    def check_targets(self) -> None:
        """Refuse (before anything moves) what the data directory's contents would break."""
        root = os.path.realpath(self.root)
        for entry in self.entries:
            dest = self.root / entry.relative
            parent = os.path.realpath(dest.parent)
            if parent != root and not parent.startswith(root + os.sep):
                raise BackupError(f"cannot restore {entry.relative}: {dest.parent} leads out "
                                  f"of the data directory (a link in {self.root})")
            if entry.kind == "dir" and os.path.lexists(dest) and not _is_dir(dest):
                raise BackupError(f"cannot restore directory {entry.relative}: {dest} exists "
                                  f"and is not a directory")
            if entry.kind != "dir" and _is_dir(dest):
                raise BackupError(f"cannot restore {entry.relative}: {dest} is a directory")

    # --- writing ---------------------------------------------------------------------------
    def commit(self) -> None:
        """Move every staged entry into place (renames within one file system)."""
        try:
            for entry in self.entries:
                self._place(entry)
            for entry in reversed(self.entries):  # after their contents changed them
                if entry.kind == "dir":
                    os.utime(self.root / entry.relative, (entry.mtime, entry.mtime))
        except OSError as exc:
            raise BackupError(f"writing the data directory {self.root} failed: "
                              f"{exc.strerror or exc}") from None
        finally:
            shutil.rmtree(self.stage, ignore_errors=True)
        self._created_root = False  # it is the restored data directory now

    def _place(self, entry: Entry) -> None:
        dest = self.root / entry.relative
        if entry.kind == "dir":
            dest.mkdir(exist_ok=True)
            os.chmod(dest, entry.mode)
            return
        staged = self.stage / entry.relative
        dest.parent.mkdir(parents=True, exist_ok=True)  # an archive may omit a directory
        if entry.kind == "file":
            os.chmod(staged, entry.mode)
        os.utime(staged, (entry.mtime, entry.mtime), follow_symlinks=False)
        os.replace(staged, dest)


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _refused(name: str, why: str) -> BackupError:
    return BackupError(f"refusing archive member {name!r}: {why}")
