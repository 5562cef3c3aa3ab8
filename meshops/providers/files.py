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
        raise MeshError(
            f"cannot create directory {directory}: {_reason(exc)}",
            hint=_HINTS.get(exc.errno or 0),
        ) from None
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
        raise MeshError(
            f"cannot write {path}: {_reason(exc)}",
            hint=_HINTS.get(exc.errno or 0),
        ) from None
    if fsync:
        _fsync_dir(directory)


_HINTS = {
    errno.ENOSPC: "free some space there; the files meshops manages were left as they "
    "were, and the next run continues from here",
    errno.EDQUOT: "raise the quota or free some space; the next run continues from here",
    errno.EROFS: "the file system is read-only; remount it read-write",
}


def _reason(exc: OSError) -> str:
    """The operating system's own words ("No space left on device")."""
    return exc.strerror or (errno.errorcode.get(exc.errno or 0) or str(exc))


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


def inside_root(path: Path, root: Path) -> Path:
    """`path` itself, when writing there stays inside `root`; else a MeshError.

    The rule for `--root`: a path meshops manages must, with every symlink on the way
    resolved (and `..` applied after them, as the kernel does), land inside the root.
    A symlink that leads out (`<root>/etc/meshops/tls/api -> /srv/tls`, `<root>/etc ->
    /etc`, a final `<root>/etc/hosts -> /etc/hosts`) is refused, named in the error;
    one that stays inside is followed (and a symlinked final file is replaced by the
    atomic rename, which writes inside the root too). With the root `/` every path is
    inside, so nothing is checked.
    """
    path, root = Path(path), Path(root)
    real_root = os.path.realpath(root)
    if real_root == "/":
        return path
    if _within(os.path.realpath(path), real_root):
        return path
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = ()
    prefix = root
    for part in parts:
        prefix = prefix / part
        if os.path.islink(prefix) and not _within(os.path.realpath(prefix), real_root):
            raise MeshError(
                f"{prefix} is a symlink to {os.readlink(prefix)}, which leads outside "
                f"--root {root}: refusing to write {path} through it",
                hint="meshops writes only inside --root: replace the symlink with a "
                "directory or file, or point it inside the root",
            )
    raise MeshError(
        f"{path} leads outside --root {root} (resolves to {os.path.realpath(path)})",
        hint="paths in mesh.yaml (proxy.config, outputs.dir) must stay inside the root: "
        "drop the `..` components",
    )


def _within(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip("/") + "/")


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
