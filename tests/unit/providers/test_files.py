"""The one door for writing files: atomic writes and the `--root` symlink rule."""

from __future__ import annotations

import itertools
import os
import random
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshops.errors import MeshError
from meshops.providers.files import (
    clear_leftovers,
    inside_root,
    leftovers,
    read_bytes,
    write_atomic,
    write_together,
)


def _tree(directory: Path) -> dict[str, bytes | str]:
    """Every entry under `directory`: file bytes, or a symlink's target."""
    out: dict[str, bytes | str] = {}
    for path in sorted(directory.rglob("*")):
        key = str(path.relative_to(directory))
        if path.is_symlink():
            out[key] = "-> " + os.readlink(path)
        elif path.is_file():
            out[key] = path.read_bytes()
    return out


# -- write_atomic ---------------------------------------------------------------------


def test_write_atomic_sets_the_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "deep/dir/key.pem"
    write_atomic(target, b"secret", mode=0o600)
    assert target.read_bytes() == b"secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_atomic(target, b"public", mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["key.pem"]


def test_write_atomic_replaces_a_symlinked_final_file_instead_of_writing_its_target(
    tmp_path: Path,
) -> None:
    real = tmp_path / "real"
    real.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(real)
    write_atomic(link, b"new")
    assert not link.is_symlink() and link.read_bytes() == b"new"
    assert real.read_bytes() == b"old"


def test_write_atomic_failure_names_the_path_in_the_systems_words_and_cleans_up(
    tmp_path: Path,
) -> None:
    target = tmp_path / "dir/file"
    target.mkdir(parents=True)  # a directory where the file should go: rename fails
    with pytest.raises(MeshError) as caught:
        write_atomic(target, b"data")
    assert str(target) in caught.value.message
    assert "Is a directory" in caught.value.message
    assert [p.name for p in target.parent.iterdir()] == ["file"]


def test_write_atomic_into_a_file_where_a_directory_should_be_is_a_clean_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "etc").write_text("not a directory")
    with pytest.raises(MeshError, match=r"cannot create directory .*etc/meshops"):
        write_atomic(tmp_path / "etc/meshops/host.yaml", b"x")


def test_read_bytes_is_none_for_a_missing_file(tmp_path: Path) -> None:
    assert read_bytes(tmp_path / "nope") is None


# -- inside_root ----------------------------------------------------------------------


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "etc/meshops/tls").mkdir(parents=True)
    outside.mkdir()
    return root, outside


def test_plain_paths_under_the_root_are_returned_unchanged(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    for rel in ("etc/meshops/tls/api/cert.pem", "var/lib/meshops/lock", "etc/hosts"):
        assert inside_root(root / rel, root) == root / rel


def test_symlinked_directory_leading_outside_is_refused_naming_the_symlink(
    layout: tuple[Path, Path],
) -> None:
    root, outside = layout
    link = root / "etc/meshops/tls/api"
    link.symlink_to(outside)
    with pytest.raises(MeshError) as caught:
        inside_root(link / "key.pem", root)
    message = caught.value.message
    assert message.startswith(f"{link} is a symlink to {outside}, which leads outside --root")
    assert f"{link}/key.pem" in message


def test_symlinked_top_directory_leading_outside_is_refused(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    (root / "var").symlink_to(outside)
    with pytest.raises(MeshError, match=rf"^{root}/var is a symlink to {outside}"):
        inside_root(root / "var/lib/meshops/status.json", root)


def test_relative_symlink_climbing_out_is_refused(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "etc/meshops/tls/web").symlink_to("../../../../outside")
    with pytest.raises(MeshError, match=r"tls/web is a symlink to \.\./\.\./\.\./\.\./outside"):
        inside_root(root / "etc/meshops/tls/web/cert.pem", root)


def test_symlinked_final_file_leading_outside_is_refused(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    (outside / "hosts").write_text("127.0.0.1 localhost\n")
    (root / "etc/hosts").symlink_to(outside / "hosts")
    with pytest.raises(MeshError, match=rf"^{root}/etc/hosts is a symlink to"):
        inside_root(root / "etc/hosts", root)


def test_symlinks_that_stay_inside_the_root_are_followed(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "srv/tls").mkdir(parents=True)
    (root / "etc/meshops/tls/api").symlink_to(root / "srv/tls")
    (root / "etc/meshops/tls/web").symlink_to("../../../srv/tls")
    (root / "etc/hosts.real").write_text("")
    (root / "etc/hosts").symlink_to("hosts.real")
    for rel in ("etc/meshops/tls/api/key.pem", "etc/meshops/tls/web/key.pem", "etc/hosts"):
        assert inside_root(root / rel, root) == root / rel


def test_dot_dot_components_leaving_the_root_are_refused(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with pytest.raises(MeshError, match=r"leads outside --root .*resolves to .*/outside/x\.conf"):
        inside_root(root / "etc/../../outside/x.conf", root)
    assert inside_root(root / "etc/../var/x", root) == root / "etc/../var/x"


def test_a_root_that_is_itself_a_symlink_is_fine(layout: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = layout
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    assert inside_root(alias / "etc/hosts", alias) == alias / "etc/hosts"


def test_with_root_slash_nothing_is_checked(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to("/nonexistent-elsewhere")
    assert inside_root(link / "x", Path("/")) == link / "x"


def test_a_symlink_loop_is_not_a_crash(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "loop").symlink_to("loop")
    path = inside_root(root / "loop/x", root)  # no escape to name; the write will say ELOOP
    with pytest.raises(MeshError, match="cannot create directory"):
        write_atomic(path, b"x")


# -- property: whatever inside_root lets through, write_atomic keeps inside the root ----

_NAMES = st.sampled_from(["a", "b", "c", "..", "."])
_TARGETS = st.sampled_from(["ROOT", "OUT", "ROOT/a", "OUT/b", "..", "../..", "a", "../../out"])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    links=st.lists(st.tuples(st.lists(_NAMES, min_size=1, max_size=3), _TARGETS), max_size=4),
    dirs=st.lists(st.lists(_NAMES, min_size=1, max_size=3), max_size=3),
    target=st.lists(_NAMES, min_size=1, max_size=5),
)
def test_a_write_let_through_never_changes_anything_outside_the_root(
    tmp_path_factory: pytest.TempPathFactory,
    links: list[tuple[list[str], str]],
    dirs: list[list[str]],
    target: list[str],
) -> None:
    base = tmp_path_factory.mktemp("prop")
    root, out = base / "root", base / "out"
    root.mkdir()
    out.mkdir()
    (out / "keep").write_bytes(b"outside")
    for parts in dirs:
        if ".." not in parts:
            (root.joinpath(*parts)).mkdir(parents=True, exist_ok=True)
    for parts, dest in links:
        link = root.joinpath(*parts)
        if ".." in parts or link == root or link.exists() or link.is_symlink():
            continue
        text = dest.replace("ROOT", str(root)).replace("OUT", str(out))
        if link.parent.is_dir() and not link.parent.is_symlink():
            link.symlink_to(text)
    path = root.joinpath(*target, "file")
    before_out, before_base = _tree(out), {p.name for p in base.iterdir()}
    try:
        checked = inside_root(path, root)
    except MeshError as exc:
        assert str(root) in exc.message
        return
    try:
        write_atomic(checked, b"written", fsync=False)
    except MeshError:
        return  # e.g. a component is a file or a loop: refused by the OS, cleanly
    assert _tree(out) == before_out
    assert {p.name for p in base.iterdir()} == before_base
    assert os.path.realpath(checked).startswith(os.path.realpath(root) + "/")


# -- write_together: several files of one directory swapped in at once -----------------


def test_write_together_swaps_the_files_and_carries_the_others_over(tmp_path: Path) -> None:
    tls = tmp_path / "tls/api"
    tls.mkdir(parents=True, mode=0o750)
    tls.chmod(0o750)
    write_atomic(tls / "key.pem", b"old key", mode=0o600)
    write_atomic(tls / "cert.pem", b"old cert")
    write_atomic(tls / "combined.pem", b"secret", mode=0o600)
    write_together(tls, {"key.pem": (b"new key", 0o600), "cert.pem": (b"new cert", 0o644)})
    assert _tree(tls) == {"cert.pem": b"new cert", "combined.pem": b"secret", "key.pem": b"new key"}
    assert stat.S_IMODE((tls / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((tls / "combined.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.stat().st_mode) == 0o750
    assert sorted(p.name for p in tls.parent.iterdir()) == ["api"]
    assert leftovers(tls) == []


def test_write_together_creates_a_missing_directory(tmp_path: Path) -> None:
    write_together(tmp_path / "new", {"key.pem": (b"k", 0o600), "cert.pem": (b"c", 0o644)})
    assert _tree(tmp_path / "new") == {"cert.pem": b"c", "key.pem": b"k"}


def test_leftovers_of_a_killed_run_are_found_and_cleared_but_live_temps_are_kept(
    tmp_path: Path,
) -> None:
    tls = tmp_path / "api"
    tls.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tls / f".key.pem.meshops-tmp-{dead.pid}").write_bytes(b"half")
    (tls / f".cert.pem.meshops-tmp-{os.getpid()}").write_bytes(b"mine, in progress")
    staged = tmp_path / ".api.meshops-next"
    staged.mkdir()
    (staged / "key.pem").write_bytes(b"old")
    assert leftovers(tls) == sorted([staged, tls / f".key.pem.meshops-tmp-{dead.pid}"])
    clear_leftovers(tls)
    assert leftovers(tls) == [] and not staged.exists()
    assert (tls / f".cert.pem.meshops-tmp-{os.getpid()}").exists()


def test_a_writer_killed_at_random_points_never_leaves_a_key_beside_another_cert(
    tmp_path: Path,
) -> None:
    """A child rewrites the pair (key i, cert i) in a loop and is SIGKILLed at random
    moments once it is under way; after every kill the pair on disk carries one
    generation, and it is one the killed child wrote."""
    tls = tmp_path / "api"
    write_together(tls, {"key.pem": (b"0", 0o600), "cert.pem": (b"0", 0o644)})
    rng = random.Random(7)
    for round_ in range(25):
        mark = f"{round_}-".encode()
        pid = os.fork()
        if pid == 0:  # the child: write generations until killed
            try:
                for i in itertools.count(1):
                    gen = mark + str(i).encode()
                    write_together(tls, {"key.pem": (gen, 0o600), "cert.pem": (gen, 0o644)})
            finally:
                os._exit(0)
        # on a loaded machine the child may take a while to start: kill it only once it
        # has written, so every kill lands in its write loop
        deadline = time.monotonic() + 30
        while not (tls / "cert.pem").read_bytes().startswith(mark):
            assert time.monotonic() < deadline, "the writer never wrote"
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        key, cert = (tls / "key.pem").read_bytes(), (tls / "cert.pem").read_bytes()
        assert key == cert, f"torn pair: key {key!r}, cert {cert!r}"
        assert key.startswith(mark), f"round {round_}: {key!r} is not the killed writer's"
        clear_leftovers(tls)
        assert leftovers(tls) == []
