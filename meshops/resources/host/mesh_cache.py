"""The validated mesh a host last loaded, kept in /var/lib/meshops/mesh.cache.

Parsing mesh.yaml with positions and validating it (the schema, the semantic checks)
is about a sixth of a no-op host plan on a 1,000-node mesh, and mesh.yaml changes far
less often than hosts plan. A host run therefore keeps the validated model, keyed by
the sha256 of mesh.yaml's bytes and by the meshops code that validated it; a run whose
mesh.yaml has the same bytes takes the model from the cache. The positions (for
messages that point into mesh.yaml) are parsed again only if something asks for them.

The cache is a pickle, read by an unpickler that can name nothing but the classes of
meshops' mesh model and of `ipaddress`: a damaged or planted file cannot make meshops
run code. A file that is not root's own, or that a group or others may write, is not
read at all. Anything that does not load is ignored, and mesh.yaml is validated again.
The key also covers meshops' code (`providers.cache.code_stamp`) and pydantic's
version: an upgrade never takes a mesh the old code validated.
The cache is written (0600, like the rest of /var/lib/meshops only by root) when an
apply records its run, where /var/lib/meshops exists: a plan, and an apply that is
refused or fails before its record, write nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshops.errors import MeshError
from meshops.providers.files import read_bytes, read_private, write_atomic

if TYPE_CHECKING:
    from meshops.model import Loaded

CACHE_FILE = "mesh.cache"
_MAGIC = b"meshops validated mesh 1 "
_MODEL_MODULES = frozenset(
    {"meshops.model.mesh", "meshops.model.types", "meshops.model.durations", "meshops.model.port"}
)
_IP_TYPES = frozenset({"IPv4Address", "IPv6Address", "IPv4Network", "IPv6Network"})


def load_validated(path: Path, display: str, lib_dir: Path) -> Loaded:
    """mesh.yaml at `path`, validated (no policy tests), from the cache when its bytes
    are the ones cached; else validated (`keep` caches it once an apply used it)."""
    data = read_bytes(path) if path.is_file() else None
    if data is None:
        from meshops.model import load_file

        return load_file(path, display, run_tests=False)  # its error
    return validated(data, display, lib_dir)


def validated(data: bytes, display: str, lib_dir: Path) -> Loaded:
    """mesh.yaml's bytes `data`, validated: `load_validated` once they are read."""
    from meshops.model import Loaded, load_text

    cached = _read(lib_dir, _key(data))
    if cached is not None:
        return Loaded.unparsed(cached, data, display)
    loaded = load_text(data, display, run_tests=False)
    loaded.source = (data, display)  # for `keep`
    return loaded


def keep(lib_dir: Path, loaded: Loaded) -> None:
    """Cache the mesh an apply used (where lib_dir exists): a plan, or an apply that
    is refused or fails before its record, writes nothing on the host."""
    if loaded.source is None or loaded.parsed is None or not lib_dir.is_dir():
        return  # nothing to keep, or taken from the cache (and never parsed since)
    key = _key(loaded.source[0])
    _write(lib_dir, key, loaded.mesh)


def _key(data: bytes) -> bytes:
    """sha256 of mesh.yaml's bytes and of what validated them (meshops' code and the
    pydantic that built the models)."""
    import pydantic

    from meshops.providers.cache import code_stamp

    digest = hashlib.sha256(data)
    digest.update(f"\n{code_stamp()} pydantic {pydantic.VERSION}".encode())
    return digest.hexdigest().encode()


def _read(lib_dir: Path, key: bytes) -> Any:
    from meshops.model.mesh import Mesh

    data = read_private(lib_dir / CACHE_FILE)
    head = _MAGIC + key + b"\n"
    if data is None or not data.startswith(head):
        return None
    try:
        mesh = _ModelUnpickler(io.BytesIO(data[len(head) :])).load()
    except Exception:  # a damaged cache is no cache
        return None
    return mesh if isinstance(mesh, Mesh) else None


def _write(lib_dir: Path, key: bytes, mesh: Any) -> None:
    body = _MAGIC + key + b"\n" + pickle.dumps(mesh, protocol=pickle.HIGHEST_PROTOCOL)
    with contextlib.suppress(MeshError):  # a cache only: the next run validates again
        write_atomic(lib_dir / CACHE_FILE, body, mode=0o600, fsync=False, make_dirs=False)


class _ModelUnpickler(pickle.Unpickler):
    """Builds only classes of meshops' mesh model and `ipaddress` values."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _MODEL_MODULES or (module == "ipaddress" and name in _IP_TYPES):
            found = super().find_class(module, name)
            if isinstance(found, type) and found.__module__ == module:
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not part of the mesh model")
