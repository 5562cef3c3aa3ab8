"""A host's cache of validated meshes (resources/host/mesh_cache.py): the same mesh as
validation gives, only for the same bytes, nothing written before the first apply,
and nothing but mesh model classes ever built from the file (planted and hostile
caches: test_cache_files.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import identity, make_mesh, to_yaml

from meshops.errors import ValidationFailed
from meshops.model import Loaded, load_file
from meshops.resources.host.mesh_cache import CACHE_FILE, keep, load_validated


def _mesh_file(tmp_path: Path, **kw: object) -> Path:
    path = tmp_path / "mesh.yaml"
    data = make_mesh(nodes=3, identities={"api": identity(["node-1"])}, **kw)  # type: ignore[arg-type]
    path.write_text(to_yaml(data))
    return path


def applied(path: Path, lib: Path) -> Loaded:
    """mesh.yaml as a host apply loads it and, once it recorded its run, keeps it."""
    loaded = load_validated(path, "mesh.yaml", lib)
    keep(lib, loaded)
    return loaded


def test_a_cached_mesh_is_the_mesh_validation_gives(tmp_path: Path) -> None:
    path, lib = _mesh_file(tmp_path), tmp_path / "lib"
    lib.mkdir()
    first = load_validated(path, "mesh.yaml", lib)
    assert not (lib / CACHE_FILE).exists()  # a plan writes nothing
    keep(lib, first)
    assert (lib / CACHE_FILE).stat().st_mode & 0o777 == 0o600
    again = load_validated(path, "mesh.yaml", lib)
    assert again.parsed is None  # from the cache: not parsed
    assert again.mesh == first.mesh == load_file(path, run_tests=False).mesh
    assert again.document.locate(("nodes", "node-2")) == first.document.locate(("nodes", "node-2"))


def test_other_bytes_are_validated_again(tmp_path: Path) -> None:
    path, lib = _mesh_file(tmp_path), tmp_path / "lib"
    lib.mkdir()
    applied(path, lib)
    path.write_text(path.read_text().replace("node-3", "node-9"))
    assert "node-9" in applied(path, lib).mesh.nodes
    path.write_text(path.read_text().replace("version: 1", "version: 7"))
    with pytest.raises(ValidationFailed):
        load_validated(path, "mesh.yaml", lib)


def test_a_host_that_never_applied_gets_no_cache(tmp_path: Path) -> None:
    applied(_mesh_file(tmp_path), tmp_path / "lib")
    assert not (tmp_path / "lib").exists()
