"""Caches meshops keeps on disk decide what it believes without checking again (a
validated mesh, a parsed state.yaml, the live firewall, the checkout's record), so
one that someone else could have planted is never read, and one made by other code or
from other input is never reused: each is read again and checked from scratch."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
from factories import identity, make_mesh, to_yaml
from test_mesh_cache import applied

from meshops.providers import cache as code_cache
from meshops.providers.files import read_private
from meshops.resources.host import firewall
from meshops.resources.host.checkout import SEEN_FILE, Seen
from meshops.resources.host.mesh_cache import CACHE_FILE, load_validated
from meshops.resources.repo.state import CACHE_NAME, NodeRecord, StateDoc, StateLayout, state_from

NOBODY = 65534


@pytest.fixture
def lib(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir()
    return lib


def _mesh_file(tmp_path: Path, nodes: int = 3) -> Path:
    path = tmp_path / "mesh.yaml"
    data = make_mesh(nodes=nodes, identities={"api": identity(["node-1"])})  # type: ignore[arg-type]
    path.write_text(to_yaml(data))
    return path


def _foreign(path: Path, how: str) -> None:
    """Make `path` a file someone else could have written."""
    if how == "owner":
        os.chown(path, NOBODY, NOBODY)
    elif how == "group-writable":
        path.chmod(0o620)
    elif how == "world-writable":
        path.chmod(0o602)
    else:  # a symlink to a file that is fine in itself
        real = path.with_name(path.name + ".real")
        path.rename(real)
        path.symlink_to(real.name)


FOREIGN = ["owner", "group-writable", "world-writable", "symlink"]


@pytest.mark.parametrize("how", FOREIGN)
def test_a_cache_someone_else_could_write_is_not_read(tmp_path: Path, how: str) -> None:
    path = tmp_path / "cache"
    path.write_bytes(b"kept")
    path.chmod(0o600)
    assert read_private(path) == b"kept"
    _foreign(path, how)
    assert read_private(path) is None
    assert read_private(tmp_path / "absent") is None
    os.mkfifo(tmp_path / "fifo", 0o600)
    assert read_private(tmp_path / "fifo") is None  # not a file: not even opened blocking


@pytest.mark.parametrize("how", FOREIGN)
def test_a_planted_mesh_cache_is_ignored_and_the_mesh_validated(
    tmp_path: Path, lib: Path, how: str
) -> None:
    """An attacker who can write the cache but is not root plants a well-formed cache
    of another mesh under the right key: meshops validates mesh.yaml instead."""
    path = _mesh_file(tmp_path)
    applied(path, lib)
    (tmp_path / "other").mkdir()
    other = load_validated(_mesh_file(tmp_path / "other", nodes=5), "x", tmp_path / "none")
    cache = lib / CACHE_FILE
    head = cache.read_bytes().split(b"\n", 1)[0] + b"\n"
    cache.write_bytes(head + pickle.dumps(other.mesh))
    assert len(load_validated(path, "mesh.yaml", lib).mesh.nodes) == 5  # root's own: used
    _foreign(cache, how)
    loaded = load_validated(path, "mesh.yaml", lib)
    assert loaded.parsed is not None  # validated from scratch
    assert set(loaded.mesh.nodes) == {"node-1", "node-2", "node-3"}


HOSTILE = {
    "os.system": b"cos\nsystem\n(S'touch planted-ran'\ntR.",
    "posix.system": b"cposix\nsystem\n(S'touch planted-ran'\ntR.",
    "builtins.eval": b'cbuiltins\neval\n(S\'open("planted-ran", "w")\'\ntR.',
    # a name the model module imports but does not define
    "imported into the model": b"cmeshops.model.mesh\nPath\n(S'planted-ran'\ntR.",
    "subprocess": b"csubprocess\nrun\n((S'touch'\nS'planted-ran'\nltR.",
}


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=list(HOSTILE))
def test_a_hostile_pickle_runs_nothing_and_the_mesh_is_validated_from_scratch(
    tmp_path: Path, lib: Path, monkeypatch: pytest.MonkeyPatch, payload: bytes
) -> None:
    path = _mesh_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    applied(path, lib)
    cache = lib / CACHE_FILE
    head = cache.read_bytes().split(b"\n", 1)[0] + b"\n"  # the right key, root's file
    cache.write_bytes(head + payload)
    loaded = load_validated(path, "mesh.yaml", lib)
    assert not (tmp_path / "planted-ran").exists()
    assert loaded.parsed is not None and set(loaded.mesh.nodes) == {"node-1", "node-2", "node-3"}
    applied(path, lib)  # the next apply rewrites it
    assert load_validated(path, "mesh.yaml", lib).parsed is None


def test_other_code_never_takes_a_cached_mesh(
    tmp_path: Path, lib: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _mesh_file(tmp_path)
    applied(path, lib)
    assert load_validated(path, "mesh.yaml", lib).parsed is None
    monkeypatch.setattr(code_cache, "code_stamp", lambda: "an upgraded meshops")
    assert load_validated(path, "mesh.yaml", lib).parsed is not None


def test_the_code_stamp_names_every_module_with_its_size_and_time(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "__pycache__").mkdir()
    for name in ("a.py", "sub/b.py", "__pycache__/c.py", "d.txt"):
        (tmp_path / name).write_text("x")
    listed = {os.path.relpath(p, tmp_path) for p, _, _ in code_cache._modules(str(tmp_path))}
    assert listed == {"a.py", "sub/b.py"}
    before = code_cache._modules(str(tmp_path))
    os.utime(tmp_path / "sub/b.py", ns=(1, 1))
    assert code_cache._modules(str(tmp_path)) != before
    assert code_cache.code_stamp() == code_cache.code_stamp()


def _state_text() -> bytes:
    doc = StateDoc(mesh="m", nodes={"a": NodeRecord(address="10.0.0.1")})
    return doc.dump().encode()


@pytest.mark.parametrize("how", FOREIGN)
def test_a_planted_state_cache_is_ignored(tmp_path: Path, lib: Path, how: str) -> None:
    """The parse cache of state.yaml is keyed by its sha256, which anyone can compute:
    a planted entry would give a host other addresses and keys than the verified file."""
    layout = StateLayout(tmp_path, cache_dir=lib)
    text = _state_text()
    assert state_from(layout, text).nodes["a"].address == "10.0.0.1"
    cache = lib / CACHE_NAME
    kept = json.loads(cache.read_bytes())
    kept["data"]["nodes"]["a"]["address"] = "10.6.6.6"
    cache.write_text(json.dumps(kept))
    assert state_from(layout, text).nodes["a"].address == "10.6.6.6"  # root's own: used
    _foreign(cache, how)
    assert state_from(layout, text).nodes["a"].address == "10.0.0.1"


def test_a_state_cache_from_other_code_is_not_used(
    tmp_path: Path, lib: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = StateLayout(tmp_path, cache_dir=lib)
    text = _state_text()
    state_from(layout, text)
    cache = lib / CACHE_NAME
    kept = json.loads(cache.read_bytes())
    kept["data"]["nodes"]["a"]["address"] = "10.6.6.6"  # as older code might have kept it
    cache.write_text(json.dumps(kept))
    monkeypatch.setattr(code_cache, "code_stamp", lambda: "an upgraded meshops")
    assert state_from(layout, text).nodes["a"].address == "10.0.0.1"


@pytest.mark.parametrize("how", FOREIGN)
def test_a_planted_firewall_view_is_ignored(lib: Path, how: str) -> None:
    """A planted view of the live table would make a plan see the firewall as desired."""
    view = lib / firewall.VIEW_FILE
    view.write_text(json.dumps({"generation": "g", "table": "{}"}))
    view.chmod(0o600)
    assert firewall._kept_view(lib) == {"generation": "g", "table": "{}"}
    _foreign(view, how)
    assert firewall._kept_view(lib) is None


@pytest.mark.parametrize("how", FOREIGN)
def test_a_planted_checkout_record_is_ignored(tmp_path: Path, lib: Path, how: str) -> None:
    state = tmp_path / "state"
    seen = Seen(str(state), {"ca/root.crt": ((1, 2, 3, 4, 5), "ab" * 32)})
    seen.save(lib)
    assert Seen.load(lib, state).files == seen.files
    _foreign(lib / SEEN_FILE, how)
    assert Seen.load(lib, state).files == {}
    seen.save(lib)  # rewritten as root's own, not left foreign because it reads the same
    assert Seen.load(lib, state).files == seen.files
