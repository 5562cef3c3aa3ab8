"""What meshops owns on a host: the files it wrote and the directories it created.

A path in mesh.yaml (`outputs.dir`, `proxy.config`) can name a directory meshops did
not create, such as /etc/ssl. There meshops writes and removes only its own files, each
atomically, and leaves every other entry, and the directory's owner and mode, as they
were. The record (`/var/lib/meshops/owned.json`) says which files are its own:

- a file is claimed before it is first written (so a run killed in between still
  knows it), and dropped after it is removed;
- a directory meshops creates is recorded, and removed only when it is empty;
- a file that exists but is not recorded is someone else's, and is never replaced:
  unless it lies under /etc/meshops (meshops' own directory), holds exactly what
  meshops would write, or is a proxy config meshops rendered (its header says so);
- a directory is swapped as a whole (a key never beside another certificate) only
  when every entry in it is meshops' own; otherwise its files are written one by one.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from meshops.errors import MeshError
from meshops.providers.files import (
    NEXT_MARK,
    TEMP_MARK,
    clear_leftovers,
    read_bytes,
    write_atomic,
    write_together,
)

RECORD = "owned.json"
OWN_DIR = "/etc/meshops"
# the first comment of every proxy config meshops renders
PROXY_MARKER = b"# meshops: mTLS sidecar for identity "
REFUSAL_HINT = (
    "choose a path of its own in mesh.yaml (e.g. a directory meshops creates), or move "
    "that entry away if it is meant to be replaced"
)


class Owned:
    """The ownership record of one host (paths are kept relative to `--root`)."""

    def __init__(self, lib_dir: Path, root: Path):
        self.record = Path(lib_dir) / RECORD
        self.root = Path(root)
        self.files: set[str] = set()
        self.dirs: set[str] = set()
        try:
            data = json.loads(self.record.read_text())
        except (FileNotFoundError, ValueError):
            data = {}
        if isinstance(data, dict):
            self.files = {p for p in data.get("files", []) if isinstance(p, str)}
            self.dirs = {p for p in data.get("dirs", []) if isinstance(p, str)}

    # -- naming ------------------------------------------------------------------------

    def key(self, path: Path) -> str:
        """`path` as the host sees it (`/etc/ssl/cert.pem`), whatever `--root` is."""
        try:
            relative = Path(path).relative_to(self.root)
        except ValueError:
            return str(path)
        return "/" + str(relative) if str(relative) != "." else "/"

    def path(self, key: str) -> Path:
        return self.root / key.lstrip("/")

    def owns(self, path: Path) -> bool:
        return self.key(path) in self.files

    def _save(self) -> None:
        body = {"files": sorted(self.files), "dirs": sorted(self.dirs), "version": 1}
        write_atomic(self.record, (json.dumps(body, indent=1) + "\n").encode(), mode=0o644)

    # -- claiming ------------------------------------------------------------------------

    def adoptable(self, path: Path, data: bytes | None = None) -> bool:
        """Whether an existing file that is not recorded may be taken over."""
        key = self.key(path)
        if key == OWN_DIR or key.startswith(OWN_DIR + "/"):
            return True
        current = read_bytes(path)
        if current is None or (data is not None and current == data):
            return True
        return PROXY_MARKER in current[:4096]

    def refusal(self, path: Path, data: bytes | None = None) -> str | None:
        """Why writing `path` (with `data`, when known) would be refused, or None."""
        if self.key(path) in self.files or not os.path.lexists(path):
            return None
        if not os.path.isfile(path):
            return (
                f"{path} exists and is not a regular file; meshops writes only its own "
                "files and leaves it alone"
            )
        if not self.adoptable(path, data):
            return f"{path} already exists and meshops did not write it; refusing to replace it"
        return None

    def claim(self, paths: Mapping[Path, bytes | None]) -> None:
        """Record `paths` as meshops' own before they are written (each with the bytes
        about to be written, or None); refuse, naming it, a file that is someone else's."""
        new: list[str] = []
        for path, data in paths.items():
            key = self.key(path)
            if key in self.files:
                continue
            refusal = self.refusal(path, data)
            if refusal is not None:
                raise MeshError(refusal, hint=REFUSAL_HINT)
            new.append(key)
        created = self._missing_dirs(paths)
        if new or created:
            self.files.update(new)
            self.dirs.update(self.key(d) for d in created)
            self._save()
        for directory in sorted(created, key=lambda d: len(d.parts)):
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, 0o755)

    def _missing_dirs(self, paths: Iterable[Path]) -> list[Path]:
        missing: set[Path] = set()
        for path in paths:
            directory = Path(path).parent
            while not os.path.lexists(directory) and directory != directory.parent:
                missing.add(directory)
                directory = directory.parent
        return sorted(missing)

    def adopt(self, paths: Iterable[Path]) -> None:
        """Record files that already hold what meshops would write (no write needed)."""
        new = {self.key(p) for p in paths if os.path.isfile(p)} - self.files
        if new:
            self.files.update(new)
            self._save()

    # -- writing -------------------------------------------------------------------------

    def write(self, path: Path, data: bytes, *, mode: int, group: int | None = None) -> None:
        """Write one file of meshops' own, atomically; refuse someone else's."""
        self.claim({path: data})
        write_atomic(path, data, mode=mode, group=group)

    def write_files(
        self,
        directory: Path,
        files: Mapping[str, tuple[bytes, int]],
        *,
        groups: Mapping[str, int | None] | None = None,
    ) -> None:
        """Write several files of one directory (some given to a group): swapped in
        together when everything in the directory is meshops' own, else one by one, in
        the order given."""
        directory = Path(directory)
        groups = dict(groups or {})
        self.claim({directory / name: data for name, (data, _) in files.items()})
        if self._exclusive(directory):
            write_together(directory, dict(files), groups=groups)
            return
        for name, (data, mode) in files.items():
            write_atomic(directory / name, data, mode=mode, group=groups.get(name))

    def _exclusive(self, directory: Path) -> bool:
        """Every entry of `directory` is a file meshops wrote (or one of its temps), and
        the directory carries nothing a rebuild would lose (extended attributes)."""
        try:
            entries = list(os.scandir(directory))
            if os.listxattr(directory):
                return False
        except OSError:
            return False
        for entry in entries:
            if TEMP_MARK in entry.name or entry.name.endswith(NEXT_MARK):
                continue
            if entry.is_symlink() or not entry.is_file() or not self.owns(Path(entry.path)):
                return False
        return True

    def clear_temps(self) -> None:
        """Remove what killed runs left beside meshops' files (their temp files and
        staged directories, ours by name): a directory shared with others is not
        rewritten often enough to sweep them on the next write."""
        for directory in sorted({self.path(key).parent for key in self.files}):
            clear_leftovers(directory)

    # -- removing ------------------------------------------------------------------------

    def stale(self, desired: Iterable[Path]) -> list[Path]:
        """Recorded files that nothing wants any more."""
        wanted = {self.key(p) for p in desired}
        return [self.path(key) for key in sorted(self.files - wanted)]

    def remove(self, paths: Iterable[Path]) -> None:
        """Remove files meshops wrote, then the directories it created that are left
        empty; never anything else."""
        paths = [p for p in paths if self.owns(p)]
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                if os.path.islink(path) or not os.path.isfile(path):
                    continue  # replaced by something else since: not ours any more
                os.unlink(path)
        self.files.difference_update(self.key(p) for p in paths)
        for directory in sorted({p.parent for p in paths}, key=lambda d: -len(d.parts)):
            clear_leftovers(directory)  # what a killed write there left (ours by name)
            self._prune(directory)
        self._save()

    def _prune(self, directory: Path) -> None:
        """Remove `directory` and its parents while they are empty and meshops created
        them (recorded, or inside /etc/meshops: a host set up before the record)."""
        while self.key(directory) in self.dirs or self.key(directory).startswith(OWN_DIR + "/"):
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                return  # not empty: something else lives there
            self.dirs.discard(self.key(directory))
            directory = directory.parent
