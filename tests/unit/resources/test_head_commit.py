"""HEAD read from a checkout's files agrees with `git rev-parse HEAD` in every layout a
clone can have: a loose branch ref, packed refs, a detached HEAD, no commit yet."""

from __future__ import annotations

import subprocess
from pathlib import Path

from meshops.resources import git_revision, head_commit


def _git(repo: Path, *args: str) -> str:
    env_args = ["-c", "user.name=t", "-c", "user.email=t@invalid", "-c", "commit.gpgsign=false"]
    proc = subprocess.run(["git", "-C", str(repo), *env_args, *args], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return proc.stdout.strip()


def _rev_parse(repo: Path) -> str:
    return _git(repo, "rev-parse", "HEAD")


def test_head_commit_matches_git_for_loose_packed_and_detached_heads(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    assert head_commit(repo) is None and git_revision(repo) is None  # no commit yet
    (repo / "f").write_text("1")
    _git(repo, "add", "f")
    _git(repo, "commit", "-qm", "one")
    assert head_commit(repo) == _rev_parse(repo)  # loose ref
    _git(repo, "pack-refs", "--all")
    assert not any((repo / ".git/refs/heads").iterdir())
    assert head_commit(repo) == _rev_parse(repo)  # packed
    first = _rev_parse(repo)
    (repo / "f").write_text("2")
    _git(repo, "commit", "-qam", "two")
    assert head_commit(repo) == _rev_parse(repo) != first  # loose again, newer than packed
    _git(repo, "checkout", "-q", first)
    assert head_commit(repo) == first == git_revision(repo)  # detached


def test_outside_a_checkout_there_is_no_revision(tmp_path: Path) -> None:
    assert head_commit(tmp_path) is None
    assert git_revision(tmp_path) is None
