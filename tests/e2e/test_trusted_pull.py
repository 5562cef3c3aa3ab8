"""Trusted pulls on real git repositories: fetch, refuse rewinds, require signatures.

Signatures are real: SSH keys made with `ssh-keygen -t ed25519`, commits signed by git
with `gpg.format ssh`, checked by `git verify-commit` against an allowed-signers file.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from mesh_fixtures import Signer, git, git_commit, make_signer

from meshops.errors import MeshError
from meshops.gitops.pull import check_descends, fetch, verify_range

pytestmark = pytest.mark.e2e


class Repo:
    """A fresh git repository whose commits each rewrite mesh.yaml."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        return git(self.path, *args)

    def commit(self, message: str, signer: Signer | None = None) -> str:
        (self.path / "mesh.yaml").write_text(f"# {message}\n")
        self.git("add", "mesh.yaml")
        return git_commit(self.path, message, signer)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Signer, Signer, Path]:
    """A trusted signer, an untrusted one, and an allowed-signers file naming the first."""
    directory = tmp_path / "keys"
    directory.mkdir()
    trusted, stranger = make_signer(directory, "alice"), make_signer(directory, "mallory")
    allowed = directory / "allowed_signers"
    allowed.write_text(trusted.allowed_line)
    return trusted, stranger, allowed


def test_properly_ssh_signed_chain_passes(
    tmp_path: Path, keys: tuple[Signer, Signer, Path]
) -> None:
    trusted, _, allowed = keys
    repo = Repo(tmp_path / "r")
    old = repo.commit("one", trusted)
    second = repo.commit("two", trusted)
    new = repo.commit("three", trusted)
    assert verify_range(repo.path, old, new, allowed) == [second, new]
    assert len(verify_range(repo.path, None, new, allowed)) == 3  # the whole history


def test_unsigned_commit_is_refused_naming_it(
    tmp_path: Path, keys: tuple[Signer, Signer, Path]
) -> None:
    trusted, _, allowed = keys
    repo = Repo(tmp_path / "r")
    old = repo.commit("one", trusted)
    repo.commit("two", trusted)
    unsigned = repo.commit("sneaky", None)
    new = repo.commit("four", trusted)
    with pytest.raises(MeshError) as caught:
        verify_range(repo.path, old, new, allowed)
    message = str(caught.value)
    assert f"commit {unsigned[:12]} ('sneaky') is not signed" in message
    assert f"refusing to apply {new[:12]}" in message
    assert "the 1 commit before it verified" in message


def test_commit_signed_by_a_key_not_in_allowed_signers_is_refused(
    tmp_path: Path, keys: tuple[Signer, Signer, Path]
) -> None:
    trusted, stranger, allowed = keys
    repo = Repo(tmp_path / "r")
    old = repo.commit("one", trusted)
    bad = repo.commit("by mallory", stranger)
    with pytest.raises(MeshError) as caught:
        verify_range(repo.path, old, bad, allowed)
    message = str(caught.value)
    assert f"commit {bad[:12]} ('by mallory') is signed by a key that is not trusted" in message
    assert "allowed signers file" in message


def test_missing_allowed_signers_file_is_a_clear_error(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    head = repo.commit("one")
    with pytest.raises(MeshError, match="allowed-signers file not found"):
        verify_range(repo.path, None, head, tmp_path / "nope")


def test_rewind_is_refused_with_a_clear_message_and_accepted_with_allow_rewind(
    tmp_path: Path,
) -> None:
    repo = Repo(tmp_path / "r")
    first = repo.commit("one")
    applied = repo.commit("remove node-3 (revokes it)")
    assert check_descends(repo.path, first, applied) is True
    assert check_descends(repo.path, None, applied) is True
    with pytest.raises(MeshError) as caught:
        check_descends(repo.path, applied, first, allow_rewind=False)
    assert str(caught.value).startswith(
        f"refusing to move from {applied[:12]} to {first[:12]}: {first[:12]} does not descend "
        "from the last applied revision (a rewind could bring back revoked nodes)"
    )
    assert "pass --allow-rewind to force" in str(caught.value)
    assert check_descends(repo.path, applied, first, allow_rewind=True) is False


def test_a_force_pushed_history_is_refused(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    repo.commit("one")
    applied = repo.commit("two")
    repo.git("reset", "-q", "--hard", "HEAD~1")
    rewritten = repo.commit("two, rewritten")
    with pytest.raises(MeshError, match="does not descend"):
        check_descends(repo.path, applied, rewritten)


def test_fetch_returns_the_new_revision_without_touching_the_checkout(
    tmp_path: Path, keys: tuple[Signer, Signer, Path]
) -> None:
    trusted, _, allowed = keys
    origin = Repo(tmp_path / "origin")
    origin.commit("one", trusted)
    clone = tmp_path / "host"
    git(tmp_path, "clone", "-q", str(origin.path), str(clone))
    applied = git(clone, "rev-parse", "HEAD")
    new = origin.commit("two", trusted)
    assert fetch(clone) == new
    assert git(clone, "rev-parse", "HEAD") == applied  # HEAD and the work tree stay put
    assert check_descends(clone, applied, new)
    assert verify_range(clone, applied, new, allowed) == [new]
    assert fetch(clone, "origin", "main") == new


def test_fetch_from_an_unreachable_remote_is_a_clear_error(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "r")
    repo.commit("one")
    repo.git("remote", "add", "origin", str(tmp_path / "gone"))
    with pytest.raises(MeshError) as caught:
        fetch(repo.path)
    message = str(caught.value)
    assert message.startswith(f"cannot fetch branch 'main' from origin ({tmp_path / 'gone'})")
    assert "keeps running the revision it applied last" in message


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")
def test_gpg_signed_commit_verifies_against_the_given_keyring_only(tmp_path: Path) -> None:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(home)}
    gen = subprocess.run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Dev <dev@example.com>",
            "ed25519",
            "sign",
            "never",
        ],
        capture_output=True,
        env={**env, "PATH": "/usr/bin:/bin"},
    )
    if gen.returncode != 0:
        pytest.skip(f"cannot make a gpg key here: {gen.stderr.decode()[-200:]}")
    repo = Repo(tmp_path / "r")
    old = repo.commit("one")
    (repo.path / "mesh.yaml").write_text("# two\n")
    repo.git("add", "mesh.yaml")
    subprocess.run(
        [
            "git",
            "-C",
            str(repo.path),
            "-c",
            "user.name=Dev",
            "-c",
            "user.email=dev@example.com",
            "-c",
            "user.signingkey=dev@example.com",
            "commit",
            "-q",
            "-S",
            "-m",
            "two",
        ],
        check=True,
        env={**env, "PATH": "/usr/bin:/bin"},
    )
    new = repo.git("rev-parse", "HEAD")
    empty = tmp_path / "empty-gnupg"
    empty.mkdir(mode=0o700)
    try:
        assert verify_range(repo.path, old, new, None, gnupg_home=home) == [new]
        with pytest.raises(MeshError, match="not trusted"):
            verify_range(repo.path, old, new, None, gnupg_home=empty)
    finally:  # stop the agents gpg started for these two homes
        for gnupg in (home, empty):
            subprocess.run(
                ["gpgconf", "--kill", "gpg-agent"],
                env={**env, "GNUPGHOME": str(gnupg)},
                capture_output=True,
            )
