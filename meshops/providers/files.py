"""The one door for writing files: atomic, durable, with the final mode set before
the new file becomes visible. Secrets are never in a world-readable temp file."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from meshops.errors import MeshError


def write_atomic(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o644,
    fsync: bool = True,
    group: int | None = None,
    make_dirs: bool = True,
    sweep: bool = True,
) -> None:
    """Replace `path` with `data`: temp file in the same directory, fsync, rename.

    The temp file is created 0600, given to `group` (a gid, when set) and chmod-ed to
    `mode` before the rename, so a reader sees either the old file or the complete new
    one, never a partial or a briefly world-readable secret. `fsync=False` leaves
    durability to the caller (a group commit syncs the file system once);
    `make_dirs=False` when the caller knows the directory exists; `sweep=False` when
    the caller removes the temp files of killed writers itself.
    """
    path = Path(path)
    directory = path.parent
    try:
        if make_dirs:
            directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MeshError(
            f"cannot create directory {directory}: {_reason(exc)}",
            hint=_HINTS.get(exc.errno or 0),
        ) from None
    tmp = directory / f".{path.name}{TEMP_MARK}{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            _give(fd, group)
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
    if sweep:
        _sweep_temps(directory, path.name)


def _sweep_temps(directory: Path, name: str) -> None:
    """Remove temp files of `name` that a killed writer left behind."""
    prefix = f".{name}{TEMP_MARK}"
    try:
        entries = [e.name for e in os.scandir(directory) if e.name.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        pid = entry[len(prefix) :]
        if pid.isdigit() and not process_alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(directory / entry)


_HINTS = {
    errno.ENOSPC: "free some space there; the files meshops manages were left as they "
    "were, and the next run continues from here",
    errno.EDQUOT: "raise the quota or free some space; the next run continues from here",
    errno.EROFS: "the file system is read-only; remount it read-write",
    errno.EPERM: "the file may be immutable (chattr -i), or it is to be given to a group "
    "(tls.group in mesh.yaml), which needs root or membership in that group",
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


def _give(fd: int, group: int | None) -> None:
    """Hand an open file to `group` (None or the group it already has: nothing to do)."""
    if group is not None and os.fstat(fd).st_gid != group:
        os.fchown(fd, -1, group)


def write_together(
    directory: Path,
    files: dict[str, tuple[bytes, int]],
    *,
    groups: dict[str, int | None] | None = None,
) -> None:
    """Replace several files of `directory` in one step: a reader (or a run killed
    half-way) sees all of them old or all of them new, never a new key beside an old
    certificate. `groups` gives some of them to a group (a gid); files carried over
    keep theirs.

    The new directory is built beside the old one (`.<name>.meshops-next`, 0700 while
    it fills), with every other file of the old directory carried over, then swapped
    in with one `renameat2(RENAME_EXCHANGE)`, with the old directory's owner, group and
    mode; the old contents are removed after. Where the file system cannot exchange,
    the owner cannot be kept, or the directory does not exist yet, the files are
    written one by one, in the order given.

    Only for a directory whose every entry is meshops' own (see `providers.owned`):
    nothing but regular files is carried over.
    """
    import shutil

    directory = Path(directory)
    groups = groups or {}
    if not directory.is_dir() or directory.is_symlink():
        for name, (data, mode) in files.items():
            write_atomic(directory / name, data, mode=mode, group=groups.get(name))
        return
    staged = next_dir(directory)
    shutil.rmtree(staged, ignore_errors=True)
    name = ""
    try:
        original = os.stat(directory)
        os.mkdir(staged, 0o700)  # nobody else may read what fills it
        for entry in os.scandir(directory):
            if entry.name in files or TEMP_MARK in entry.name or not entry.is_file():
                continue
            name = entry.name
            data = Path(entry.path).read_bytes()
            old = entry.stat()
            _write_new(staged / name, data, stat.S_IMODE(old.st_mode), old.st_gid)
        for name, (data, mode) in files.items():
            _write_new(staged / name, data, mode, groups.get(name))
        name = ""
        # the swapped-in directory is the same directory to everyone else: same owner,
        # group and mode (a proxy's group may read it)
        if (original.st_uid, original.st_gid) != (os.getuid(), os.getgid()):
            os.chown(staged, original.st_uid, original.st_gid)
        os.chmod(staged, stat.S_IMODE(original.st_mode))
        _fsync_tree(staged)
    except PermissionError:  # cannot give it the same owner: write the files in place
        shutil.rmtree(staged, ignore_errors=True)
        for name, (data, mode) in files.items():
            write_atomic(directory / name, data, mode=mode, group=groups.get(name))
        return
    except OSError as exc:
        shutil.rmtree(staged, ignore_errors=True)
        hint = _HINTS.get(exc.errno or 0)
        raise MeshError(f"cannot write {directory / name}: {_reason(exc)}", hint=hint) from None
    if not _exchange(staged, directory):
        shutil.rmtree(staged, ignore_errors=True)
        for name, (data, mode) in files.items():
            write_atomic(directory / name, data, mode=mode, group=groups.get(name))
        return
    _fsync_dir(directory.parent)
    shutil.rmtree(staged, ignore_errors=True)  # the old contents


TEMP_MARK = ".meshops-tmp-"
NEXT_MARK = ".meshops-next"


def next_dir(directory: Path) -> Path:
    """Where `write_together` stages the new contents of `directory`."""
    return directory.parent / f".{directory.name}{NEXT_MARK}"


def leftovers(directory: Path) -> list[Path]:
    """What an interrupted run left of its writes in `directory`: temp files of dead
    processes and a staged `write_together` directory."""
    found = []
    staged = next_dir(Path(directory))
    if os.path.lexists(staged):
        found.append(staged)
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return found
    for entry in entries:
        name, _, pid = entry.name.rpartition(TEMP_MARK)
        if name and pid.isdigit() and not process_alive(int(pid)):
            found.append(Path(entry.path))
    return sorted(found)


def clear_leftovers(directory: Path) -> None:
    import shutil

    for path in leftovers(directory):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def process_alive(pid: int) -> bool:
    """Whether process `pid` still runs (this one included)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where the
    system or file system cannot."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise MeshError(f"cannot swap {a} into {b}: {os.strerror(err)}", hint=_HINTS.get(err))


def _write_new(path: Path, data: bytes, mode: int, group: int | None = None) -> None:
    """A new file in a private staging directory (fsynced later, with the directory)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        _give(fd, group)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _fsync_tree(directory: Path) -> None:
    for entry in os.scandir(directory):
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(directory)


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


def ensure_dir(path: Path, *, mode: int, group: int | None = None) -> bool:
    """Create `path` (and its parents) with `mode`, given to `group`; an existing one is
    left as it is (a service manager may own it). True when it was created."""
    path = Path(path)
    if path.is_dir():
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, 0o700)
        if group is not None:
            os.chown(path, -1, group)
        os.chmod(path, mode)
    except FileExistsError:
        return False
    except OSError as exc:
        raise MeshError(
            f"cannot create directory {path}: {_reason(exc)}", hint=_HINTS.get(exc.errno or 0)
        ) from None
    return True


def read_bytes(path: Path) -> bytes | None:
    """The file's content, or None when it does not exist."""
    try:
        with open(path, "rb") as f:  # not Path(path).read_bytes(): no path re-parsing
            return f.read()
    except FileNotFoundError:
        return None


def read_private(path: Path) -> bytes | None:
    """A cache file's content, or None when it is absent or anyone but the user meshops
    runs as (root on a host) could have written it: another owner, a group or others
    with write permission, not a regular file, or a symlink (not followed).

    Caches decide what meshops believes without checking it again (a validated mesh,
    a parsed state.yaml, the live firewall), so one that someone else could plant is no
    cache: the caller reads and validates from scratch.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return None
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        return f.read()


MAX_READ = 64 * 1024 * 1024  # no file meshops reads back from a repository is near this


def read_beneath(
    base: Path,
    paths: Iterable[str],
    *,
    sizes: Mapping[str, int] | None = None,
    max_size: int = MAX_READ,
    stats: dict[str, os.stat_result] | None = None,
) -> dict[str, bytes | str]:
    """Read `paths` (relative, POSIX) under `base` without following a symlink anywhere
    on the way: every component is opened with O_NOFOLLOW relative to its parent.

    Returns path -> bytes for a regular file, or path -> a phrase for anything else
    ("a symlink", "a directory", "reached through a symlink (state/ca)"); a path that
    does not exist is left out. A file is read up to its expected size (`sizes`) plus
    one byte, else `max_size`: a swollen file then fails its hash check instead of
    filling memory. `base` itself is trusted (the checkout named in host.yaml).
    `stats`, when given, receives each regular file's fstat, taken before the read.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    out: dict[str, bytes | str] = {}
    with _Directories(base) as dirs:
        for path, name, where in _entered(dirs, paths, out):
            try:
                fd = os.open(name, flags | os.O_NONBLOCK, dir_fd=where)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.EMLINK):
                    out[path] = "a symlink"
                    continue
                raise MeshError(f"cannot read {base / path}: {_reason(exc)}") from None
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    out[path] = "a directory" if stat.S_ISDIR(info.st_mode) else "a special file"
                    continue
                if stats is not None:
                    stats[path] = info
                limit = (sizes or {}).get(path, max_size - 1) + 1
                chunks, left = [], limit
                while left > 0:
                    chunk = os.read(fd, min(left, 1 << 20))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    left -= len(chunk)
                out[path] = b"".join(chunks)
            finally:
                os.close(fd)
    return out


def _entered(
    dirs: _Directories, paths: Iterable[str], out: MutableMapping[str, Any]
) -> Iterator[tuple[str, str, int]]:
    """Each of `paths` as (path, file name, its directory's fd), the directory entered
    without following a symlink; a path reached through one gets its phrase in `out`
    instead (and one under a missing directory nothing)."""
    for path in paths:
        parent, _, name = path.rpartition("/")
        where = dirs.enter(parent)
        if isinstance(where, str):
            if where:
                out[path] = where
            continue
        yield path, name, where


def lstat_beneath(base: Path, paths: Iterable[str]) -> dict[str, os.stat_result | str]:
    """The lstat of each of `paths` (relative, POSIX) under `base`, every directory on
    the way entered as `read_beneath` enters it (O_NOFOLLOW): path -> its lstat, or
    the phrase `read_beneath` gives for a path reached through a symlink; a path that
    does not exist is left out. Cheaper than reading: for telling whether files
    changed since they were last read."""
    out: dict[str, os.stat_result | str] = {}
    with _Directories(base) as dirs:
        for path, name, where in _entered(dirs, paths, out):
            try:
                out[path] = os.stat(name, dir_fd=where, follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise MeshError(f"cannot read {base / path}: {_reason(exc)}") from None
    return out


class _Directories:
    """Directories under a trusted `base`, each opened once, component by component,
    without following a symlink; closed on exit."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.dirs: dict[str, int | str] = {}  # relative path -> fd, or why not entered

    def __enter__(self) -> _Directories:
        try:
            self.dirs[""] = os.open(self.base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.dirs[""] = ""
        return self

    def __exit__(self, *exc: object) -> None:
        for opened in self.dirs.values():
            if isinstance(opened, int):
                os.close(opened)

    def enter(self, directory: str) -> int | str:
        return _enter(directory, self.dirs)


def _enter(directory: str, dirs: dict[str, int | str]) -> int | str:
    """The fd of `directory` (relative), opened component by component without
    following symlinks; else why not ("" when it does not exist)."""
    if directory in dirs:
        return dirs[directory]
    parent, _, name = directory.rpartition("/")
    above = _enter(parent, dirs)
    if isinstance(above, str):
        dirs[directory] = above
        return above
    try:
        result: int | str = os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=above
        )
    except FileNotFoundError:
        result = ""
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise MeshError(f"cannot open directory {directory}: {_reason(exc)}") from None
        result = f"reached through a symlink or file ({directory})"
    dirs[directory] = result
    return result


def stat_beneath(base: Path) -> dict[str, os.stat_result]:
    """Every entry under `base` but directories, with its lstat (relative path ->
    result), found without following any symlink."""
    out: dict[str, os.stat_result] = {}
    try:
        top = os.scandir(base)
    except FileNotFoundError:
        return out
    stack = [("", top)]
    while stack:
        prefix, listing = stack.pop()
        with listing:
            for entry in listing:
                rel = f"{prefix}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    stack.append((rel + "/", os.scandir(entry.path)))
                else:
                    out[rel] = entry.stat(follow_symlinks=False)
    return out


def kind_of(info: os.stat_result) -> str:
    """ "file" for a regular file, else the phrase `read_beneath` uses."""
    if stat.S_ISREG(info.st_mode):
        return "file"
    return "a symlink" if stat.S_ISLNK(info.st_mode) else "a special file"


def list_beneath(base: Path) -> dict[str, str]:
    """Every entry under `base`, without following symlinks: relative path -> "file",
    or the phrase `read_beneath` uses for anything that is not a regular file."""
    return {rel: kind_of(info) for rel, info in stat_beneath(base).items()}


def sync_filesystem(path: Path) -> None:
    """Make everything written to the file system holding `path` durable: syncfs(2) on
    it (one call for a whole apply's files, instead of two fsyncs per file), or sync(2)
    where there is no syncfs."""
    import ctypes

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise MeshError(f"cannot open {path} to sync it: {_reason(exc)}") from None
    try:
        syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


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
