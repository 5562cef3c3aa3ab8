"""`meshops apply --pull` on a test-bed host that requires signed commits.

The host's host.yaml names an allowed-signers file (under its --root); commits to the
mesh repository (the "remote") are signed by git with SSH keys made by `ssh-keygen`
and checked by `git verify-commit`. The host's first apply, from its clone as cloned,
is the trusted starting point; every later revision must descend from the last applied
one and every commit it brings must carry a trusted signature.

Each test starts by moving the remote back to the host's applied revision (as a
force-push would), so the tests do not depend on each other's order.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mesh_fixtures import (
    BedMesh,
    PullHost,
    Signer,
    bed_mesh,
    git,
    git_commit,
    git_head,
    make_signer,
    pull_host,
)
from test_repo_support import KeyRing, Unsealed, assert_no_secret_leaked, keyring
from testbed import unavailable_reason

from meshops.errors import MeshError
from meshops.gitops.pull import tracked_branch
from meshops.gitops.sync import PullSettings, parse_settings

pytestmark = pytest.mark.e2e
__all__ = ["keyring"]  # the session fixture, imported for pytest

NODE = "n1"
ALLOWED = "/etc/meshops/allowed_signers"


# -- host.yaml `pull:` and the branch a checkout follows (no test bed) ----------------------


def test_pull_settings_read_from_host_yaml_with_defaults_and_clear_errors() -> None:
    assert parse_settings(None) == PullSettings()
    settings = parse_settings(
        {"remote": "up", "branch": "prod", "interval": "1m30s", "allowed_signers": ALLOWED}
    )
    assert (settings.remote, settings.branch, settings.interval) == ("up", "prod", 90.0)
    assert settings.requires_signatures and not PullSettings().requires_signatures
    with pytest.raises(MeshError, match=r"unknown key under `pull:`: intervall"):
        parse_settings({"intervall": "5s"})
    with pytest.raises(MeshError, match=r"pull.interval: expected a duration"):
        parse_settings({"interval": "soon"})
    with pytest.raises(MeshError, match=r"pull.interval must be longer than 0s"):
        parse_settings({"interval": "0"})
    with pytest.raises(MeshError, match=r"`pull:` must be a mapping"):
        parse_settings(["origin"])


def test_a_detached_checkout_follows_the_remote_default_branch(tmp_path: Path) -> None:
    origin, clone = tmp_path / "origin", tmp_path / "clone"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "trunk")
    git(origin, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q",
        "--allow-empty", "-m", "one")  # fmt: skip
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert tracked_branch(clone) == "trunk"
    git(clone, "checkout", "-q", "--detach")  # as a pull leaves it
    assert tracked_branch(clone) == "trunk"
    git(clone, "remote", "set-head", "origin", "--delete")
    with pytest.raises(MeshError, match="HEAD is detached") as caught:
        tracked_branch(clone)
    assert caught.value.hint is not None and "pull: {branch: main}" in caught.value.hint


# -- signed pulls on a test-bed host ------------------------------------------------------


@dataclass
class SignedBed:
    mesh: BedMesh
    host: PullHost
    trusted: Signer
    stranger: Signer

    def git(self, *args: str) -> str:
        return git(self.mesh.repo.path, *args)

    def force_push_to(self, revision: str) -> None:
        """Move the remote's branch to `revision` (what a force-push does)."""
        self.git("reset", "-q", "--hard", revision)
        self.mesh.repo.data = yaml.safe_load((self.mesh.repo.path / "mesh.yaml").read_text())

    def push(self, message: str, signer: Signer | None) -> str:
        """Repo-scope apply, then a commit signed by `signer` (None: unsigned)."""
        self.mesh.repo.write_mesh()
        self.mesh.repo.apply()
        self.git("add", "-A")
        return git_commit(self.mesh.repo.path, message, signer)

    def start_from_applied(self) -> str:
        applied = self.host.applied_revision()
        assert applied is not None
        self.force_push_to(applied)
        return applied

    def pull(self, *extra: str) -> subprocess.CompletedProcess[str]:
        result = self.host.meshops("apply", "--pull", "--auto-approve", *extra, check=False)
        return subprocess.CompletedProcess(result.argv, result.returncode, result.stdout,
                                           result.stderr)  # fmt: skip


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory, keyring: KeyRing) -> Iterator[SignedBed]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("signed-pull")
    signers = directory / "signers"
    signers.mkdir()
    trusted, stranger = make_signer(signers, "alice"), make_signer(signers, "mallory")
    with bed_mesh(directory, keyring, [NODE], identities={"web": {"nodes": [NODE]}}) as mesh:
        mesh.apply_repo("initial state (unsigned: the host's trusted starting point)")
        host = pull_host(mesh, NODE, allowed_signers=ALLOWED)
        allowed = mesh.host_path(NODE, ALLOWED)
        allowed.write_text(trusted.allowed_line)
        host.meshops("apply", "--auto-approve")  # no --pull: trust starts here
        yield SignedBed(mesh, host, trusted, stranger)


@pytest.mark.netns
def test_unsigned_and_untrusted_commits_are_refused_and_a_signed_one_is_applied(
    bed: SignedBed,
) -> None:
    mesh, host = bed.mesh, bed.host
    applied = bed.start_from_applied()
    cert = mesh.tls_dir(NODE, "api") / "cert.pem"
    mesh.repo.data["identities"]["api"] = {"nodes": [NODE]}

    unsigned = bed.push("place api on n1", None)
    refused = bed.pull()
    assert refused.returncode == 1, refused
    assert refused.stdout == ""
    assert refused.stderr.startswith(
        f"error: commit {unsigned[:12]} ('place api on n1') is not signed; "
        f"refusing to apply {unsigned[:12]}; this host stays on {applied[:12]}"
    ), refused.stderr
    assert "hint: sign commits" in refused.stderr and "Traceback" not in refused.stderr
    assert not cert.exists(), "nothing of the refused revision is applied"
    assert host.head() == applied and host.applied_revision() == applied

    bed.force_push_to(applied)
    mesh.repo.data["identities"]["api"] = {"nodes": [NODE]}
    foreign = bed.push("place api on n1, signed by mallory", bed.stranger)
    refused = bed.pull()
    assert refused.returncode == 1, refused
    assert (
        f"error: commit {foreign[:12]} ('place api on n1, signed by mallory') is signed by "
        "a key that is not trusted"
    ) in refused.stderr, refused.stderr
    assert "allowed signers file" in refused.stderr
    assert not cert.exists() and host.head() == applied

    bed.force_push_to(applied)
    mesh.repo.data["identities"]["api"] = {"nodes": [NODE]}
    signed = bed.push("place api on n1, signed by alice", bed.trusted)
    accepted = bed.pull()
    assert accepted.returncode == 0, accepted
    assert '+ cert.leaf["api"]: no certificate yet' in accepted.stdout
    assert accepted.stderr == ""
    assert cert.exists()
    assert host.head() == signed and host.applied_revision() == signed
    assert mesh.status(NODE)["last_apply"]["revision"] == signed


@pytest.mark.netns
def test_a_force_pushed_rewind_is_refused_unless_allow_rewind_and_signatures_still_count(
    bed: SignedBed,
) -> None:
    mesh, host = bed.mesh, bed.host
    start = bed.start_from_applied()
    mesh.repo.data["identities"]["revoke-me"] = {"nodes": [NODE]}
    ahead = bed.push("add revoke-me", bed.trusted)
    assert bed.pull().returncode == 0
    assert host.applied_revision() == ahead

    # history rewritten: the applied commit is gone, another one takes its place
    bed.force_push_to(start)
    mesh.repo.data["identities"]["other"] = {"nodes": [NODE]}
    rewritten = bed.push("add other instead", bed.trusted)
    refused = bed.pull()
    assert refused.returncode == 1, refused
    assert refused.stderr.startswith(
        f"error: refusing to move from {ahead[:12]} to {rewritten[:12]}: {rewritten[:12]} "
        "does not descend from the last applied revision (a rewind could bring back revoked "
        "nodes); pass --allow-rewind to force"
    ), refused.stderr
    assert f"meshops review --base {ahead[:12]} --head {rewritten[:12]}" in refused.stderr
    assert host.head() == ahead and host.applied_revision() == ahead
    assert not (mesh.tls_dir(NODE, "other") / "cert.pem").exists()

    # --allow-rewind does not waive signatures on what the rewritten history brings
    bed.force_push_to(start)
    mesh.repo.data["identities"]["other"] = {"nodes": [NODE]}
    unsigned = bed.push("add other, unsigned", None)
    refused = bed.pull("--allow-rewind")
    assert refused.returncode == 1 and f"commit {unsigned[:12]}" in refused.stderr, refused
    assert "is not signed" in refused.stderr
    assert host.head() == ahead

    bed.force_push_to(rewritten)
    allowed = bed.pull("--allow-rewind")
    assert allowed.returncode == 0, allowed
    assert '+ cert.leaf["other"]' in allowed.stdout
    assert host.head() == rewritten and host.applied_revision() == rewritten
    assert git_head(mesh.repo.path) == rewritten


@pytest.mark.netns
def test_a_pull_is_refused_and_the_checkout_kept_while_another_run_holds_the_host_lock(
    bed: SignedBed,
) -> None:
    import fcntl

    mesh, host = bed.mesh, bed.host
    applied = bed.start_from_applied()
    mesh.repo.data["identities"]["late"] = {"nodes": [NODE]}
    bed.push("place late on n1", bed.trusted)
    lock = mesh.host_path(NODE, "/var/lib/meshops/lock")
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        refused = bed.pull()
    assert refused.returncode == 1, refused
    assert refused.stderr.startswith(f"error: another meshops run holds {lock}"), refused.stderr
    assert host.head() == applied, "the checkout does not move under another run"
    assert bed.pull().returncode == 0
    assert (mesh.tls_dir(NODE, "late") / "cert.pem").exists()


@pytest.mark.netns
def test_no_private_key_reached_any_output(bed: SignedBed) -> None:
    assert_no_secret_leaked(bed.mesh.repo, Unsealed())
