"""A host's side of signed state (resources/host/trust.py) on a real file tree: pins,
the verified pack, refusals that keep the last good material, no symlink followed, and
a checkout unchanged since it verified taken without being read again, but never
without noticing a change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trust_helpers import Root, base_files, signed

from meshops.errors import MeshError
from meshops.providers.files import read_beneath
from meshops.resources.host import checkout
from meshops.resources.host.checkout import CheckoutReader, Seen
from meshops.resources.host.pack import PACK_FILE, Pack, read_pack
from meshops.resources.host.trust import Kept, establish, parse_pins, starting_trust
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
    kept = Kept()
    got = establish(**args, kept=kept)  # type: ignore[arg-type]
    if args["commit"] and kept.seen is not None:  # as the apply's record does
        kept.seen.save(args["lib_dir"])  # type: ignore[arg-type]
    return got


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


def test_first_apply_pins_the_roots_and_packs_what_verified(tmp_path: Path, root: Root) -> None:
    entries = signed(base_files(root), root, version=2)
    _write(tmp_path / "checkout", entries)
    files, held = _establish(tmp_path)
    assert files.read("ca/root.crt") == root.pem  # type: ignore[attr-defined]
    assert held.source == "first apply" and held.pinned == (root.fingerprint,)  # type: ignore[attr-defined]
    record = json.loads((tmp_path / "lib/trust.json").read_text())
    assert record["trusted"] == [root.fingerprint] and record["manifest_version"] == 2
    assert (tmp_path / "lib" / PACK_FILE).stat().st_mode & 0o777 == 0o600  # sealed keys
    found = read_pack(tmp_path / "lib")
    assert found is not None and found[0] == record["pack"]
    assert found[1].files == entries  # every file the host reads, nothing else


def test_a_refused_revision_keeps_the_last_good_snapshot(tmp_path: Path, root: Root) -> None:
    good = signed(base_files(root), root, version=2)
    _write(tmp_path / "checkout", good)
    _establish(tmp_path)
    before = read_beneath(tmp_path / "lib", [PACK_FILE, "trust.json"])
    bad = dict(good)
    bad["ca/root.crt"] = root.pem + root.pem
    _write(tmp_path / "checkout", bad)
    files, held = _establish(tmp_path, revision="r2")
    assert files.read("ca/root.crt") == root.pem  # type: ignore[attr-defined]
    assert held.refused["file"] == "state/ca/root.crt"  # type: ignore[attr-defined]
    assert held.revision == "r1" and held.version == 2  # type: ignore[attr-defined]
    assert read_beneath(tmp_path / "lib", [PACK_FILE, "trust.json"]) == before


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
    files, _ = _establish(tmp_path, commit=False)
    assert files.read("ca/root.crt") == root.pem  # type: ignore[attr-defined]
    assert not (tmp_path / "lib").exists()


def test_an_unsigned_repository_is_taken_only_by_a_host_that_pinned_nothing(
    tmp_path: Path, root: Root
) -> None:
    _write(tmp_path / "checkout", base_files(root))
    files, held = _establish(tmp_path)
    assert files.verified is None and held.source == "unsigned"  # type: ignore[attr-defined]
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


# -- a checkout unchanged since it verified: not read again, changes still seen -------------


@pytest.mark.usefixtures("settled")
def test_a_file_changed_in_place_with_its_times_put_back_is_refused(
    tmp_path: Path, root: Root
) -> None:
    """Same size, same mtime, same inode: only the ctime tells, and that is enough."""
    import os

    entries = signed(base_files(root), root)
    _write(tmp_path / "checkout", entries)
    _establish(tmp_path)
    _establish(tmp_path)  # now recorded: the next run takes the pack's bytes
    seen = json.loads((tmp_path / "lib/checkout.json").read_text())
    assert "nodes/web-1/ca.crt" in seen["files"]
    crt = tmp_path / "checkout/state/nodes/web-1/ca.crt"
    before = crt.stat()
    with crt.open("r+b") as handle:
        handle.write(b"NODE")  # same length as "node"
    os.utime(crt, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert crt.stat().st_ino == before.st_ino and crt.stat().st_size == before.st_size
    files, held = _establish(tmp_path, revision="r2")
    assert held.refused["file"] == "state/nodes/web-1/ca.crt"  # type: ignore[attr-defined]
    assert files.read("nodes/web-1/ca.crt") == b"node ca\n"  # type: ignore[attr-defined]


@pytest.mark.usefixtures("settled")
def test_an_unchanged_checkout_under_new_pins_is_verified_afresh(
    tmp_path: Path, root: Root, next_root: Root
) -> None:
    _write(tmp_path / "checkout", signed(base_files(root), root))
    _establish(tmp_path)
    _establish(tmp_path)
    _, held = _establish(tmp_path, pins=(next_root.fingerprint,))
    assert "not trusted here" in held.refused["reason"]  # type: ignore[attr-defined]


@pytest.mark.usefixtures("settled")
def test_a_file_added_to_an_unchanged_checkout_is_refused(tmp_path: Path, root: Root) -> None:
    _write(tmp_path / "checkout", signed(base_files(root), root))
    _establish(tmp_path)
    (tmp_path / "checkout/state/ca/transitions.yaml").write_bytes(b"transitions: []\n")
    _, held = _establish(tmp_path, revision="r2")
    assert held.refused["file"] == "state/ca/transitions.yaml"  # type: ignore[attr-defined]


@pytest.mark.usefixtures("settled")
def test_an_edited_pack_is_never_taken_as_verified(tmp_path: Path, root: Root) -> None:
    entries = signed(base_files(root), root)
    _write(tmp_path / "checkout", entries)
    _establish(tmp_path)
    pack_file = tmp_path / "lib" / PACK_FILE
    pack_file.write_bytes(pack_file.read_bytes().replace(b"sealed\n", b"forged\n"))
    files, held = _establish(tmp_path)  # the checkout is read and verified again
    assert files.read("nodes/web-1/wg.key.age") == b"sealed\n"  # type: ignore[attr-defined]
    assert held.refused is None  # type: ignore[attr-defined]
    assert read_pack(tmp_path / "lib")[1].files == entries  # type: ignore[index]
    pack_file.write_bytes(pack_file.read_bytes().replace(b"sealed\n", b"forged\n"))
    _write(tmp_path / "checkout", {**entries, "ca/crl.pem": b"tampered\n"})
    with pytest.raises(StateRefused, match="no verified state/ to keep"):
        _establish(tmp_path)  # nor kept as the last good material


def test_files_changed_moments_ago_are_read_again_next_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file recorded right after a change could change again within the same clock
    tick without its times moving: it is not recorded, so it is read again."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "a").write_bytes(b"a")
    reader = CheckoutReader(state, Seen(str(state)), {})
    assert reader(["a", "gone"], {}) == {"a": b"a"}
    reader.remember(["a", "gone"])
    assert reader.seen.files == {}  # changed a moment ago
    monkeypatch.setattr(checkout, "RACY_NS", 0)  # as if it had been read a while later
    reader = CheckoutReader(state, Seen(str(state)), {})
    reader(["a", "gone"], {})
    reader.remember(["a", "gone"])
    assert list(reader.seen.files) == ["a"]
    (state / "a").write_bytes(b"b")
    again = CheckoutReader(state, reader.seen, {reader.seen.files["a"][1]: b"a"})
    assert again(["a"], {}) == {"a": b"b"}  # its ctime moved: read, not taken as known


def test_a_pack_is_what_was_written_or_nothing() -> None:
    pack = Pack.of({"ca/root.crt": b"root\n", "nodes/a/ca.crt": b"", "state.yaml": b"x: 1\n"})
    data = pack.render()
    assert Pack.parse(data) == pack
    for damaged in (data[:-1], data + b"x", data.replace(b"root", b"r00t", 1)[:20], b""):
        assert Pack.parse(damaged) is None


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written by the test count as settled (no run reads them within a clock
    tick of their writing), so the checkout's record takes them."""
    monkeypatch.setattr(checkout, "RACY_NS", 0)
