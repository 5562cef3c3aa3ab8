"""Saved plans: applied as saved, refused (exit 1, one clear line) once stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_repo_support import KeyRing, MeshRepo, check_consistent, keyring, new_repo

pytestmark = pytest.mark.e2e
__all__ = ["keyring"]


@pytest.fixture
def repo(tmp_path: Path, keyring: KeyRing) -> MeshRepo:
    repo = new_repo(tmp_path / "mesh", keyring, nodes=2)
    repo.apply()
    repo.set_node("node-3", keyring.ssh_hosts[2], 3)  # pending work for a saved plan
    repo.write_mesh()
    return repo


def _save(repo: MeshRepo, tmp_path: Path, name: str = "p.plan") -> Path:
    path = tmp_path / name
    result = repo.meshops("plan", "--out", str(path))
    assert result.returncode == 0, str(result)
    assert f"meshops apply {path}" in result.stdout
    return path


def _refused(repo: MeshRepo, plan: Path, *fragments: str) -> None:
    before = repo.snapshot()
    result = repo.meshops("apply", str(plan), identity=True)
    assert result.returncode == 1, str(result)
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert repo.snapshot() == before, "a refused plan changed files"


def test_saved_plan_applies_what_it_showed(repo: MeshRepo, tmp_path: Path) -> None:
    plan = _save(repo, tmp_path)
    shown = repo.meshops("show", str(plan))
    assert shown.returncode == 0
    assert '+ ca.node["node-3"]' in shown.stdout
    assert "expires" in shown.stdout
    assert "applied" not in shown.stdout
    result = repo.meshops("apply", str(plan), identity=True)
    assert result.returncode == 0, str(result)
    assert 'ca.node["node-3"]: created' in result.stdout
    check_consistent(repo)
    shown = repo.meshops("show", str(plan))
    assert shown.returncode == 0, str(shown)
    assert shown.stdout.splitlines()[-1] == (
        "This plan was applied to the repository; applying it again is refused."
    )
    markdown = repo.meshops("show", str(plan), "--format", "markdown")
    assert "**This plan was applied to the repository" in markdown.stdout


def test_plan_is_refused_when_state_moved(repo: MeshRepo, tmp_path: Path) -> None:
    plan = _save(repo, tmp_path)
    repo.apply()  # another apply got there first
    _refused(repo, plan, "live state changed since the plan was made", "meshops plan")


def test_plan_is_refused_when_mesh_yaml_changed(repo: MeshRepo, tmp_path: Path) -> None:
    plan = _save(repo, tmp_path)
    repo.set_node("node-4", repo.keys.ssh_hosts[3], 4)
    repo.write_mesh()
    _refused(repo, plan, "mesh.yaml changed since the plan was made")


def test_plan_is_refused_when_already_applied(repo: MeshRepo, tmp_path: Path) -> None:
    plan = _save(repo, tmp_path)
    assert repo.meshops("apply", str(plan), identity=True).returncode == 0
    _refused(repo, plan, "already applied")


def test_plan_is_refused_once_expired(repo: MeshRepo, tmp_path: Path) -> None:
    plan = _save(repo, tmp_path)
    body = json.loads(plan.read_text())
    body["planfile"]["expires_at"] = "2000-01-01T00:00:00+00:00"
    plan.write_text(json.dumps(body))
    _refused(repo, plan, "plan expired at 2000-01-01T00:00:00+00:00")


def test_plan_is_refused_when_the_repository_moved_to_another_commit(
    repo: MeshRepo, tmp_path: Path
) -> None:
    repo.commit("before plan")
    plan = _save(repo, tmp_path)
    repo.commit("someone else's change")
    _refused(repo, plan, "revision")


def test_plan_file_that_is_not_a_plan_is_a_clear_error(repo: MeshRepo, tmp_path: Path) -> None:
    junk = tmp_path / "junk.plan"
    junk.write_text('{"hello": 1}')
    _refused(repo, junk, "not a meshops plan file")
    _refused(repo, tmp_path / "missing.plan", "no such plan file")
