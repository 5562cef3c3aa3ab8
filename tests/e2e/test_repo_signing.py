"""Repo scope signs state/ (state/manifest.yaml + .sig) and never blesses what it did
not write: the upgrade of an unsigned repository, tampering that arrived in a commit,
symlinks, and `ca rotate` without the root key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_repo_support import KeyRing, MeshRepo, check_manifest, keyring, new_repo

pytestmark = pytest.mark.e2e
__all__ = ["keyring"]  # the session fixture, imported for pytest


@pytest.fixture
def repo(tmp_path: Path, keyring: KeyRing) -> MeshRepo:
    repo = new_repo(tmp_path / "mesh", keyring, nodes=2)
    repo.apply()
    repo.commit("initial state")
    return repo


def _git(repo: MeshRepo, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo.path), *args], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout.strip()


def test_an_unsigned_repository_is_signed_by_its_next_apply(repo: MeshRepo) -> None:
    """A repository written by an earlier meshops has no manifest: the next repo apply
    signs state/ as it is (with the root key), and review verifies that commit."""
    for name in ("manifest.yaml", "manifest.sig"):
        (repo.state_dir / name).unlink()
    repo.commit("as an earlier meshops left it")
    unsigned = _git(repo, "rev-parse", "HEAD")
    plan = repo.plan()
    assert plan.returncode == 2
    assert "+ state.manifest: state/ has no signed manifest yet" in plan.stdout
    assert "Needs: root CA key" in plan.stdout
    refused = repo.meshops("apply", "--auto-approve")
    assert refused.returncode == 1 and "no identity was given" in refused.stderr
    repo.apply()
    head = check_manifest(repo)
    assert head["version"] == "1"
    repo.commit("signed")
    reviewed = repo.meshops("review", "--base", unsigned, "--format", "json")
    assert reviewed.returncode == 0, str(reviewed)
    state = json.loads(reviewed.stdout)["state"]
    assert state["verified"] and "the first signed manifest" in state["summary"][0]
    assert repo.plan().returncode == 0


def test_a_committed_change_outside_apply_is_never_signed(repo: MeshRepo) -> None:
    crt = repo.state_dir / "ca/root.crt"
    crt.write_bytes(crt.read_bytes() + crt.read_bytes())
    repo.commit("a second copy of the root, by hand")
    before = repo.snapshot()
    for argv in (["plan"], ["apply", "--auto-approve"]):
        refused = repo.meshops(*argv, identity=True)
        assert refused.returncode == 1, str(refused)
        assert "state/ca/root.crt changed outside meshops apply" in refused.stderr
        assert "refusing to sign it" in refused.stderr and "Traceback" not in refused.stderr
    assert repo.snapshot() == before
    # restored from the last signed revision, apply goes on
    _git(repo, "checkout", "HEAD~1", "--", "state")
    assert repo.plan().returncode == 0


def test_an_uncommitted_change_of_this_machine_is_re_signed(repo: MeshRepo) -> None:
    """What an apply stopped before it signed leaves: local, uncommitted, re-signed."""
    (repo.state_dir / "state.yaml").write_text((repo.state_dir / "state.yaml").read_text() + "\n")
    plan = repo.plan()
    assert "~ state.manifest: state/state.yaml changed since the manifest was signed" in plan.stdout
    repo.apply()
    assert check_manifest(repo)["version"] == "2"


def test_a_symlink_under_state_is_never_signed(repo: MeshRepo) -> None:
    crl = repo.state_dir / "ca/crl.pem"
    crl.unlink()
    crl.symlink_to("/etc/hostname")
    refused = repo.meshops("apply", "--auto-approve", identity=True)
    assert refused.returncode == 1
    assert (
        "state/ca/crl.pem is a symlink, not a regular file: refusing to sign it" in refused.stderr
    )


def test_staging_a_root_signs_state_and_needs_the_root_key(repo: MeshRepo) -> None:
    before = repo.snapshot()
    refused = repo.meshops("ca", "rotate")
    assert refused.returncode == 1 and "needs the root CA key" in refused.stderr
    assert repo.snapshot() == before  # nothing staged
    staged = repo.meshops("ca", "rotate", identity=True)
    assert staged.returncode == 0, str(staged)
    assert check_manifest(repo)["version"] == "2"
    repo.commit("staged")
    reviewed = repo.meshops("review", "--base", "HEAD~1")
    assert reviewed.returncode == 0 and "is staged" in reviewed.stdout, str(reviewed)
