"""The verified material a host uses, kept in one file: /var/lib/meshops/trusted.pack.

`establish` (host/trust.py) verifies the state/ files a host reads against the roots
it trusts; the files that verified are what host scope uses, and they are kept as the
last good material for when a later revision is refused. A 1,000-node mesh gives a
host about 2,000 such files (every node CA and its CRL), so they are kept in one pack,
written atomically (temporary file, fsync, rename) once per newly verified revision,
not as one file each:

    meshops trusted state 1
    <sha256 hex> <size> <path under state/>      one line per file, sorted by path
    ...
                                                 an empty line
    <the files' bytes, back to back, in the order listed>

trust.json names the sha256 of the whole pack: a pack whose digest is not the recorded
one (a crash between the two writes, an edit) is never taken as verified without
being verified again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meshops.providers.files import read_beneath, write_atomic

PACK_FILE = "trusted.pack"
_MAGIC = b"meshops trusted state 1\n"


@dataclass(frozen=True)
class Pack:
    """Verified state/ files (path under state/ -> bytes) with their sha256s."""

    files: Mapping[str, bytes]
    digests: Mapping[str, str]  # path -> sha256 hex of its bytes

    @classmethod
    def of(cls, files: Mapping[str, bytes]) -> Pack:
        return cls(dict(files), {p: hashlib.sha256(d).hexdigest() for p, d in files.items()})

    def render(self) -> bytes:
        paths = sorted(self.files)
        table = "".join(f"{self.digests[p]} {len(self.files[p])} {p}\n" for p in paths)
        return b"".join([_MAGIC, table.encode(), b"\n", *(self.files[p] for p in paths)])

    @classmethod
    def parse(cls, data: bytes) -> Pack | None:
        """The pack in `data`, or None when it is not one meshops wrote whole."""
        if not data.startswith(_MAGIC):
            return None
        end = data.find(b"\n\n", len(_MAGIC) - 1)
        if end < 0:
            return None
        try:
            lines = data[len(_MAGIC) : end + 1].decode("ascii").splitlines()
        except UnicodeDecodeError:
            return None
        files: dict[str, bytes] = {}
        digests: dict[str, str] = {}
        offset = end + 2
        for line in lines:
            digest, _, rest = line.partition(" ")
            size, _, path = rest.partition(" ")
            if len(digest) != 64 or not size.isdigit() or not path or path in files:
                return None
            files[path] = data[offset : offset + int(size)]
            digests[path] = digest
            offset += int(size)
        if offset != len(data):
            return None
        return cls(files, digests)


def pack_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def read_pack(lib_dir: Path) -> tuple[str, Pack] | None:
    """The sha256 of the pack under `lib_dir` and the pack, or None (absent, damaged)."""
    data = read_beneath(lib_dir, [PACK_FILE]).get(PACK_FILE)
    if not isinstance(data, bytes):
        return None
    pack = Pack.parse(data)
    return None if pack is None else (pack_digest(data), pack)


def write_pack(lib_dir: Path, pack: Pack) -> str:
    """Replace the pack (0600: it holds this node's sealed keys); its digest."""
    data = pack.render()
    write_atomic(lib_dir / PACK_FILE, data, mode=0o600)
    return pack_digest(data)
