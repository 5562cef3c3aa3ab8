"""A host's side of signed state (resources/host/trust.py) on a real file tree: pins,
the verified snapshot, refusals that keep the last good material, no symlink followed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trust_helpers import Root, base_files, signed

from meshops.errors import MeshError
from meshops.providers.files import read_beneath
from meshops.resources.host.trust import establish, parse_pins, starting_trust
from meshops.trust.verify import StateRefused, Trust

NOW = "2030-01-15T12:00:00+00:00"


def _write(checkout: Path, entries: dict) -> None:  # type: ignore[type-arg]
    import shutil

    shutil.rmtree(checkout / "state", ignore_errors=True)
    for path, data in entries.items():
        target = checkout / "state" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _establish(tmp_path: Path, **kw: object) -> tuple[Path, object]:
    args: dict[str, object] = dict(
        repo_dir=tmp_path / "checkout", lib_dir=tmp_path / "lib", node="web-1", suffix=".age",
        pins=None, revision="r1", now=NOW, commit=True,
    )  # fmt: skip
    args.update(kw)
    return establish(**args)  # type: ignore[arg-type]


def test_openssl_style_pins_are_accepted_and_junk_is_refused() -> None:
    pin = "sha256:" + "ab" * 32
    openssl_form = "SHA256:" + ":".join(["AB"] * 32)
    assert parse_pins([openssl_form, pin]) == (pin,)
    assert parse_pins(None) is None
    for bad in (["sha1:abcd"], "sha256:" + "ab" * 32, [], ["sha256:" + "zz" * 32]):
        with pytest.raises(MeshError):
            parse_pins(bad)


def test_where_verification_starts() -> None:
    a, b = "sha256:" + "aa" * 32, "sha256:" + "bb" * 32
    record = {"source": "host.yaml", "pinned": [a], "trusted": [b], "manifest_version": 7}
    assert starting_trust((a,), record)[0] == Trust(frozenset({b}), 7)  # followed a rotation
    assert starting_trust((b,), record)[0] == Trust(frozenset({b}), 0)  # re-pinned: afresh
    assert starting_trust(None, record)[0] == Trust(frozenset({b}), 7)
    assert starting_trust(None, {}) == (Trust(None), "first apply", ())


def test_first_apply_pins_the_roots_and_snapshots_what_verified(tmp_path: Path, root: Root) -> None:
    _write(tmp_path / "checkout", signed(base_files(root), root, version=2))
    source, held = _establish(tmp_path)
    assert source == tmp_path / "lib/trusted"
    assert held.source == "first apply" and held.pinned == (root.fingerprint,)  # type: ignore[attr-defined]
    record = json.loads((tmp_path / "lib/trust.json").read_text())
    assert record["trusted"] == [root.fingerprint] and record["manifest_version"] == 2
    snap = tmp_path / "lib/trusted/state"
    assert (snap / "nodes/web-1/ca.key.age").stat().st_mode & 0o777 == 0o600
    assert (snap / "ca/root.crt").read_bytes() == root.pem


def test_a_refused_revision_keeps_the_last_good_snapshot(tmp_path: Path, root: Root) -> None:
    good = signed(base_files(root), root, version=2)
    _write(tmp_path / "checkout", good)
    _establish(tmp_path)
    before = read_beneath(tmp_path / "lib", ["trusted/state/ca/root.crt", "trust.json"])
    bad = dict(good)
    bad["ca/root.crt"] = root.pem + root.pem
    _write(tmp_path / "checkout", bad)
    source, held = _establish(tmp_path, revision="r2")
    assert source == tmp_path / "lib/trusted"
    assert held.refused["file"] == "state/ca/root.crt"  # type: ignore[attr-defined]
    assert held.revision == "r1" and held.version == 2  # type: ignore[attr-defined]
    assert read_beneath(tmp_path / "lib", ["trusted/state/ca/root.crt", "trust.json"]) == before


def test_an_older_signed_version_is_a_rollback(tmp_path: Path, root: Root) -> None:
    _write(tmp_path / "checkout", signed(base_files(root), root, version=5))
    _establish(tmp_path)
    _write(tmp_path / "checkout", signed(base_files(root), root, version=4))
    _, held = _establish(tmp_path)
    assert "rollback" in held.refused["reason"]  # type: ignore[attr-defined]


def test_a_symlinked_directory_is_never_followed(tmp_path: Path, root: Root) -> None:
    entries = signed(base_files(root), root)
    _write(tmp_path / "checkout", entries)
    _establish(tmp_path)
    node = tmp_path / "checkout/state/nodes/web-1"
    elsewhere = tmp_path / "elsewhere"
    node.rename(elsewhere)  # the same files, reached through a symlink
    node.symlink_to(elsewhere)
    _, held = _establish(tmp_path)
    assert "symlink" in held.refused["reason"]  # type: ignore[attr-defined]


def test_without_good_material_a_refusal_is_an_error(
    tmp_path: Path, root: Root, next_root: Root
) -> None:
    _write(tmp_path / "checkout", signed(base_files(next_root), next_root))
    with pytest.raises(StateRefused, match=r"not trusted here.*no verified state/ to keep"):
        _establish(tmp_path, pins=(root.fingerprint,))


def test_plan_writes_nothing(tmp_path: Path, root: Root) -> None:
    _write(tmp_path / "checkout", signed(base_files(root), root))
    source, _ = _establish(tmp_path, commit=False)
    assert source == tmp_path / "checkout"  # just verified, read from the checkout
    assert not (tmp_path / "lib").exists()


def test_an_unsigned_repository_is_taken_only_by_a_host_that_pinned_nothing(
    tmp_path: Path, root: Root
) -> None:
    _write(tmp_path / "checkout", base_files(root))
    source, held = _establish(tmp_path)
    assert source == tmp_path / "checkout" and held.source == "unsigned"  # type: ignore[attr-defined]
    with pytest.raises(StateRefused, match="not signed"):
        _establish(tmp_path, pins=(root.fingerprint,))


def test_read_beneath_refuses_every_kind_of_detour(tmp_path: Path) -> None:
    import os

    (tmp_path / "d").mkdir()
    (tmp_path / "d/file").write_bytes(b"0123456789")
    (tmp_path / "d/link").symlink_to("/etc/hostname")
    (tmp_path / "dirlink").symlink_to(tmp_path / "d")
    os.mkfifo(tmp_path / "d/fifo")
    got = read_beneath(
        tmp_path, ["d/file", "d/link", "dirlink/file", "d/fifo", "d", "d/missing"],
        sizes={"d/file": 3},
    )  # fmt: skip
    assert got == {
        "d/file": b"0123",  # read to one byte past the expected size: its hash fails
        "d/link": "a symlink",
        "dirlink/file": "reached through a symlink or file (dirlink)",
        "d/fifo": "a special file",
        "d": "a directory",
    }
