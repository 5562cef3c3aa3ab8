"""What every cache meshops keeps on disk is keyed by besides its input: the code.

A cache holds what some meshops code made of its input (a validated mesh, a parsed
state.yaml). Code that reads or validates differently must not take a result the old
code made, so each key includes `code_stamp()`: the Python version, meshops' version and
the size and modification time of every module of the installed package (an upgrade,
a reinstall or an edit changes it). Reading caches goes through
`providers.files.read_private`: a file someone else could have written is no cache.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path


@functools.cache
def code_stamp() -> str:
    """sha256 (hex) of the running meshops code: the same for the same installed files."""
    import meshops

    package = Path(meshops.__file__).resolve().parent
    lines = [f"python {sys.version_info[:3]} meshops {meshops.__version__}"]
    for path, size, mtime in sorted(_modules(str(package))):
        lines.append(f"{os.path.relpath(path, package)} {size} {mtime}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _modules(directory: str) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            if entry.name != "__pycache__":
                out += _modules(entry.path)
        elif entry.name.endswith(".py"):
            info = entry.stat(follow_symlinks=False)
            out.append((entry.path, info.st_size, info.st_mtime_ns))
    return out
