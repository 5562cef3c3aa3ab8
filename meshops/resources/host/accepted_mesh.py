"""The mesh.yaml of the last revision a host accepted (its state/ verified).

A revision whose state/ a host refuses is not trusted as a whole: its mesh.yaml (new
hooks, paths, policies) is held back with its state/. An apply that ran on verified
state/ keeps the mesh.yaml it used in /var/lib/meshops/accepted-mesh.yaml (0600); a
run that refuses the checkout plans and applies from that one, beside the last good
state/ (pull mode never checks such a revision out in the first place).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from meshops.errors import MeshError
from meshops.providers.files import read_bytes, read_private, write_atomic

if TYPE_CHECKING:
    from meshops.model import Loaded

ACCEPTED_FILE = "accepted-mesh.yaml"
DISPLAY = "mesh.yaml (of the last accepted revision)"


@dataclass(frozen=True)
class Accepted:
    data: bytes

    def load(self) -> Loaded:
        """The accepted mesh.yaml, validated as any other (no policy tests on a host)."""
        from meshops.model import load_text

        return load_text(self.data, DISPLAY, run_tests=False)


def checkout_mesh(loaded: Loaded, path: Path) -> bytes | None:
    """The bytes `loaded` was validated from: kept by the loader, else read from `path`."""
    if loaded.source is not None:
        return loaded.source[0]
    return read_bytes(path) if path.is_file() else None


def read_accepted(lib_dir: Path) -> Accepted | None:
    """The kept mesh.yaml, when there is one that only root could have written."""
    data = read_private(lib_dir / ACCEPTED_FILE)
    return Accepted(data) if data is not None else None


def keep_accepted(lib_dir: Path, data: bytes) -> None:
    """Keep `data` as the accepted mesh.yaml (where lib_dir exists; unchanged: no write)."""
    if not lib_dir.is_dir() or read_private(lib_dir / ACCEPTED_FILE) == data:
        return
    with contextlib.suppress(MeshError):  # a full disk costs the fallback, not the apply
        write_atomic(lib_dir / ACCEPTED_FILE, data, mode=0o600, fsync=False, make_dirs=False)
