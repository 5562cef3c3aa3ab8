"""What a host last read of its checkout's state/: each file's lstat and sha256.

Checking a revision's state/ means hashing every file a host reads, about 2,000 for a
1,000-node mesh, on every run. A file whose lstat (device, inode, size, mtime and
ctime, to the nanosecond) is the one recorded when it was last read still holds what
was read then, as git's index assumes for a working tree: ctime cannot be set by a
user, and a file changed less than RACY_NS before it was read is not recorded (it could
change again within one timestamp tick). Such a file is not read again: its bytes are
taken from the verified material by the recorded sha256, and checked like any other.
Every other file is read, without following symlinks, as always.

/var/lib/meshops/checkout.json, a cache (losing it costs one full read):

    {"format_version": 1, "checkout": "/srv/mesh/state",
     "files": {"ca/root.crt": [dev, inode, size, mtime_ns, ctime_ns, "<sha256 hex>"], ...}}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from meshops.errors import MeshError
from meshops.providers.files import (
    kind_of,
    lstat_beneath,
    read_beneath,
    read_private,
    write_atomic,
)
from meshops.trust.verify import NotRegular, StateEntry

SEEN_FILE = "checkout.json"
RACY_NS = 2_000_000_000  # a file changed this recently may change again unseen

Stamp = tuple[int, int, int, int, int]  # device, inode, size, mtime_ns, ctime_ns


def stamp(info: os.stat_result) -> Stamp:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


@dataclass
class Seen:
    """The recorded lstat and sha256 of each state/ file of one checkout."""

    checkout: str
    files: dict[str, tuple[Stamp, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, lib_dir: Path, state_dir: Path) -> Seen:
        fresh = cls(str(state_dir))
        raw = read_private(lib_dir / SEEN_FILE)
        try:
            data = json.loads(raw) if raw is not None else None
        except ValueError:
            return fresh
        if not isinstance(data, dict) or data.get("format_version") != 1:
            return fresh
        if data.get("checkout") != str(state_dir) or not isinstance(data.get("files"), dict):
            return fresh
        files: dict[str, tuple[Stamp, str]] = {}
        try:
            for path, (dev, ino, size, mtime, ctime, digest) in data["files"].items():
                files[path] = ((int(dev), int(ino), int(size), int(mtime), int(ctime)), str(digest))
        except (TypeError, ValueError):
            return fresh
        return cls(str(state_dir), files)

    def to_json(self) -> bytes:
        files = {p: [*s, d] for p, (s, d) in sorted(self.files.items())}
        body = {"format_version": 1, "checkout": self.checkout, "files": files}
        return json.dumps(body, separators=(",", ":")).encode()

    def save(self, lib_dir: Path) -> None:
        """Write checkout.json when it changed (a cache: no fsync)."""
        data = self.to_json()
        with contextlib.suppress(OSError):
            if read_private(lib_dir / SEEN_FILE) == data:
                return
        with contextlib.suppress(MeshError):  # a cache only: the next run reads again
            write_atomic(lib_dir / SEEN_FILE, data, mode=0o600, fsync=False)


class CheckoutReader:
    """Reads state/ files of a checkout for verification (a `trust.Reader`): a file
    whose lstat is the recorded one comes from `known` (sha256 -> verified bytes), any
    other is read with O_NOFOLLOW on every component. Remembers what it saw."""

    def __init__(self, state_dir: Path, seen: Seen, known: Mapping[str, bytes]) -> None:
        self.state_dir = state_dir
        self.seen = seen
        self.known = known
        self.saw: dict[str, tuple[Stamp, str] | None] = {}  # None: not to be recorded

    def __call__(self, paths: list[str], sizes: Mapping[str, int]) -> dict[str, StateEntry]:
        out: dict[str, StateEntry] = {}
        unread = []
        for path, info in lstat_beneath(self.state_dir, paths).items():
            if isinstance(info, str) or not stat.S_ISREG(info.st_mode):
                out[path] = NotRegular(info if isinstance(info, str) else _kind(info))
                continue
            recorded = self.seen.files.get(path)
            data = None
            if recorded is not None and recorded[0] == stamp(info):
                data = self.known.get(recorded[1])
            if data is None:
                unread.append(path)
            else:
                out[path] = data
                self.saw[path] = recorded
        out.update(self._read(unread, sizes))
        return out

    def _read(self, paths: list[str], sizes: Mapping[str, int]) -> dict[str, StateEntry]:
        if not paths:
            return {}
        stats: dict[str, os.stat_result] = {}
        got = read_beneath(self.state_dir, paths, sizes=sizes, stats=stats)
        settled = time.time_ns() - RACY_NS
        out: dict[str, StateEntry] = {}
        for path, data in got.items():
            if not isinstance(data, bytes):
                out[path] = NotRegular(data)
                continue
            out[path] = data
            info = stats[path]
            whole = len(data) == info.st_size
            quiet = max(info.st_mtime_ns, info.st_ctime_ns) < settled
            digest = hashlib.sha256(data).hexdigest()
            self.saw[path] = (stamp(info), digest) if whole and quiet else None
        return out

    def remember(self, paths: Iterable[str]) -> None:
        """Record what this run saw of `paths` (and nothing else) for the next run."""
        self.seen.files = {p: s for p in paths if (s := self.saw.get(p)) is not None}


def _kind(info: os.stat_result) -> str:
    return "a directory" if stat.S_ISDIR(info.st_mode) else kind_of(info)
