"""A host's cache of validated meshes (resources/host/mesh_cache.py): the same mesh as
validation gives, only for the same bytes, nothing written before the first apply,
and nothing but mesh model classes ever built from the file."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from factories import identity, make_mesh, to_yaml

from meshops.errors import ValidationFailed
from meshops.model import load_file
from meshops.resources.host import mesh_cache
from meshops.resources.host.mesh_cache import CACHE_FILE, load_validated


def _mesh_file(tmp_path: Path, **kw: object) -> Path:
    path = tmp_path / "mesh.yaml"
    data = make_mesh(nodes=3, identities={"api": identity(["node-1"])}, **kw)  # type: ignore[arg-type]
    path.write_text(to_yaml(data))
    return path


def test_a_cached_mesh_is_the_mesh_validation_gives(tmp_path: Path) -> None:
    path, lib = _mesh_file(tmp_path), tmp_path / "lib"
    lib.mkdir()
    first = load_validated(path, "mesh.yaml", lib)
    assert (lib / CACHE_FILE).stat().st_mode & 0o777 == 0o600
    again = load_validated(path, "mesh.yaml", lib)
    assert again.parsed is None  # from the cache: not parsed
    assert again.mesh == first.mesh == load_file(path, run_tests=False).mesh
    assert again.document.locate(("nodes", "node-2")) == first.document.locate(("nodes", "node-2"))


def test_other_bytes_are_validated_again(tmp_path: Path) -> None:
    path, lib = _mesh_file(tmp_path), tmp_path / "lib"
    lib.mkdir()
    load_validated(path, "mesh.yaml", lib)
    path.write_text(path.read_text().replace("node-3", "node-9"))
    assert "node-9" in load_validated(path, "mesh.yaml", lib).mesh.nodes
    path.write_text(path.read_text().replace("version: 1", "version: 7"))
    with pytest.raises(ValidationFailed):
        load_validated(path, "mesh.yaml", lib)


def test_a_host_that_never_applied_gets_no_cache(tmp_path: Path) -> None:
    load_validated(_mesh_file(tmp_path), "mesh.yaml", tmp_path / "lib")
    assert not (tmp_path / "lib").exists()


class _Planted:
    """What an attacker would plant: unpickling it would run a command."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("touch planted-ran",))


def test_a_planted_cache_runs_nothing_and_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, lib = _mesh_file(tmp_path), tmp_path / "lib"
    lib.mkdir()
    monkeypatch.chdir(tmp_path)
    load_validated(path, "mesh.yaml", lib)
    head = (lib / CACHE_FILE).read_bytes().split(b"\n", 1)[0] + b"\n"  # the right key
    (lib / CACHE_FILE).write_bytes(head + pickle.dumps(_Planted()))
    loaded = load_validated(path, "mesh.yaml", lib)
    assert not (tmp_path / "planted-ran").exists()
    assert loaded.parsed is not None and set(loaded.mesh.nodes) == {"node-1", "node-2", "node-3"}


def test_new_validation_code_misses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, lib = _mesh_file(tmp_path), tmp_path / "lib"
    lib.mkdir()
    load_validated(path, "mesh.yaml", lib)
    monkeypatch.setattr(mesh_cache, "_VALIDATOR_PACKAGES", ("model", "policy", "pki"))
    assert load_validated(path, "mesh.yaml", lib).parsed is not None
