"""The one door for writing files: atomic, durable, with the final mode set before
the new file becomes visible. Secrets are never in a world-readable temp file."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from meshops.errors import MeshError


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, fsync: bool = True) -> None:
    """Replace `path` with `data`: temp file in the same directory, fsync, rename.

    The temp file is created 0600 and chmod-ed to `mode` before the rename, so a
    reader sees either the old file or the complete new one, never a partial or a
    briefly world-readable secret.
    """
    path = Path(path)
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MeshError(f"cannot create directory {directory}: {exc.strerror}") from None
    tmp = directory / f".{path.name}.meshops-tmp-{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        reason = "no space left on device" if exc.errno == errno.ENOSPC else exc.strerror
        raise MeshError(f"cannot write {path}: {reason}") from None
    if fsync:
        _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_bytes(path: Path) -> bytes | None:
    """The file's content, or None when it does not exist."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


def remove(path: Path) -> bool:
    """Remove a file if present; True when something was removed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    _fsync_dir(Path(path).parent)
    return True


def prune_empty_dirs(directory: Path, *, stop: Path) -> None:
    """Remove `directory` and its parents up to (not including) `stop` while empty."""
    directory, stop = Path(directory), Path(stop)
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent
