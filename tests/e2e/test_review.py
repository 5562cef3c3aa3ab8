"""`meshops review` end to end: the installed CLI on real git repositories with several
commits, reading both revisions straight from git objects."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from factories import make_mesh, test_case, to_yaml, web_api_mesh
from test_repo_support import KeyRing, keyring, new_repo

pytestmark = pytest.mark.e2e
__all__ = ["keyring"]

MESHOPS = os.environ.get("MESHOPS_BIN", "meshops")
WHO = ["-c", "user.name=Reviewer", "-c", "user.email=reviewer@example.com"]


class GitMesh:
    """A git repository holding mesh.yaml, committed step by step."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(self.path), *WHO, *args], capture_output=True, text=True, check=True
        )
        return proc.stdout.strip()

    def commit(
        self,
        data: dict[str, Any] | None = None,
        message: str = "change",
        *,
        text: str | None = None,
        files: dict[str, str] | None = None,
    ) -> str:
        if data is not None or text is not None:
            (self.path / "mesh.yaml").write_text(text if text is not None else to_yaml(data or {}))
        for name, body in (files or {}).items():
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).write_text(body)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def review(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MESHOPS, "--no-color", "-C", str(self.path), "review", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def review_json(self, *args: str) -> dict[str, Any]:
        proc = self.review(*args, "--format", "json")
        assert proc.stderr == "", proc.stderr
        data: dict[str, Any] = json.loads(proc.stdout)
        return data


@pytest.fixture
def repo(tmp_path: Path) -> GitMesh:
    return GitMesh(tmp_path / "mesh")


def test_policy_change_is_reviewed_as_exact_access_gained_and_lost(repo: GitMesh) -> None:
    before = web_api_mesh()
    base = repo.commit(before, "initial mesh")
    after = copy.deepcopy(before)
    # web and admin may now also HEAD /v1/*, and lose GET on nothing; api loses /query on db
    after["policies"][0]["allow"][0]["methods"] = ["GET", "HEAD"]
    after["policies"][2]["allow"][0]["paths"] = ["/query/read"]
    after["tests"] = [t for t in after["tests"] if t["to"] != "db"]
    repo.commit(after, "tighten db access")
    proc = repo.review("--base", base)
    assert proc.returncode == 0, proc.stderr
    assert "+ admin -> api  HEAD /v1/*  (policy frontends-read-api)" in proc.stdout
    assert "+ web -> api  HEAD /v1/*  (policy frontends-read-api)" in proc.stdout
    assert "+ api -> db  any method /query/read  (policy api-uses-db)" in proc.stdout
    assert "- api -> db  any method /query  (policy api-uses-db)" in proc.stdout
    doc = repo.review_json("--base", base)
    gained = {(g["caller"], g["callee"], g["method"], g["path"]) for g in doc["access"]["gained"]}
    lost = {(g["caller"], g["callee"], g["method"], g["path"]) for g in doc["access"]["lost"]}
    assert gained == {
        ("admin", "api", "HEAD", "/v1/*"),
        ("web", "api", "HEAD", "/v1/*"),
        ("api", "db", "*", "/query/read"),
    }
    assert lost == {("api", "db", "*", "/query")}
    assert doc["base"]["commit"] == base and doc["head"]["ref"] == "HEAD"


def test_node_removal_shows_the_removal_and_the_peer_dropped_on_each_host(repo: GitMesh) -> None:
    before = make_mesh(nodes=4)
    base = repo.commit(before, "four nodes")
    repo.commit(make_mesh(nodes=4), "no-op commit in between")
    after = copy.deepcopy(before)
    del after["nodes"]["node-3"]
    repo.commit(after, "retire node-3")
    doc = repo.review_json("--base", base)
    assert {"section": "nodes", "name": "node-3", "action": "removed"}.items() <= next(
        c for c in doc["changes"] if c["name"] == "node-3"
    ).items()
    assert any(w["code"] == "node-removed" for w in doc["warnings"])
    nodes = {n["node"]: n for n in doc["nodes"]}
    assert nodes["node-3"]["status"] == "removed"
    for host in ("node-1", "node-2", "node-4"):
        assert nodes[host]["peers_removed"] == ["node-3"]
    markdown = repo.review("--base", base, "--format", "markdown").stdout
    assert "peers -1 (node-3)" in markdown
    assert "node-1, node-2, node-4 (3 nodes)" in markdown


def test_broken_policy_test_at_head_fails_with_exit_1(repo: GitMesh) -> None:
    before = web_api_mesh()
    base = repo.commit(before, "mesh")
    after = copy.deepcopy(before)
    after["tests"].append(test_case("web", "db", "GET /query", "allow"))  # no policy allows it
    repo.commit(after, "a test that cannot pass")
    proc = repo.review("--base", base, "--format", "markdown")
    assert proc.returncode == 1
    assert "❌" in proc.stdout and "1 policy test failed" in proc.stdout
    assert "expected allow, got deny" in proc.stdout


def test_invalid_head_is_reported_with_its_location_and_exit_1(repo: GitMesh) -> None:
    before = web_api_mesh()
    base = repo.commit(before, "mesh")
    broken = copy.deepcopy(before)
    broken["identities"]["api"]["nodes"] = ["node-9"]
    repo.commit(broken, "typo")
    proc = repo.review("--base", base)
    assert proc.returncode == 1
    assert "does not validate" in proc.stdout
    assert "mesh.yaml:" in proc.stdout and "unknown node 'node-9'" in proc.stdout


def test_review_reads_git_objects_not_the_checkout(repo: GitMesh) -> None:
    before = make_mesh(nodes=2)
    base = repo.commit(before, "two nodes")
    after = copy.deepcopy(before)
    after["nodes"]["node-2"]["endpoint"] = "198.51.100.2:51820"
    head = repo.commit(after, "move node-2")
    repo.git("checkout", "-q", base)  # the working tree now holds the base
    (repo.path / "mesh.yaml").write_text("garbage: [")  # and is dirty
    doc = repo.review_json("--base", base, "--head", head)
    assert [c["address"] for c in doc["changes"]] == ['nodes["node-2"]']
    # --worktree reviews the dirty working tree instead
    worktree = repo.review("--base", base, "--worktree")
    assert worktree.returncode == 1 and "YAML syntax error" in worktree.stdout


def test_unknown_base_is_a_clear_error(repo: GitMesh) -> None:
    repo.commit(make_mesh(nodes=1), "mesh")
    proc = repo.review("--base", "origin/nope")
    assert proc.returncode == 1
    assert "unknown revision 'origin/nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_state_not_matching_mesh_is_flagged_until_applied(tmp_path: Path, keyring: KeyRing) -> None:
    mesh = new_repo(tmp_path / "mesh", keyring, nodes=2)
    mesh.apply()
    mesh.commit("mesh and state")
    base = subprocess.run(
        ["git", "-C", str(mesh.path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    mesh.set_node("node-3", keyring.ssh_hosts[2], 3)
    mesh.write_mesh()
    mesh.commit("add node-3 without applying")
    unapplied = mesh.meshops("review", "--base", base, "--format", "json")
    assert unapplied.returncode == 0, str(unapplied)
    issues = json.loads(unapplied.stdout)["state"]["issues"]
    assert any("node 'node-3' is in mesh.yaml but not in state/state.yaml" in i for i in issues)
    mesh.apply()
    mesh.commit("apply")
    applied = mesh.meshops("review", "--base", base, "--format", "json")
    assert json.loads(applied.stdout)["state"]["issues"] == []


def test_markdown_for_a_thousand_node_change_stays_under_65000_characters(
    repo: GitMesh,
) -> None:
    base = repo.commit(make_mesh(nodes=5, identities=5), "small mesh")
    repo.commit(
        make_mesh(nodes=1000, identities=1000, wireguard={"network": "10.40.0.0/14"}),
        "grow to a thousand nodes",
    )
    proc = repo.review("--base", base, "--format", "markdown")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout) < 65_000
    assert "trimmed to keep this comment under 65,000 characters" in proc.stdout
    assert proc.stdout.count("<details") == proc.stdout.count("</details>")


def test_base_that_moved_on_since_the_branch_forked_is_noted(repo: GitMesh) -> None:
    data = make_mesh(nodes=2)
    repo.commit(data, "fork point")
    repo.git("checkout", "-q", "-b", "feature")
    feature = copy.deepcopy(data)
    feature["nodes"]["node-2"]["endpoint"] = "198.51.100.2:51820"
    repo.commit(feature, "feature change")
    repo.git("checkout", "-q", "main")
    moved = copy.deepcopy(data)
    moved["mtls"] = {"min_tls": "1.3"}
    moved["certs"]["ttl"] = "24h"
    repo.commit(moved, "main moved on")
    doc = repo.review_json("--base", "main", "--head", "feature")
    assert any("main is not an ancestor of feature" in note for note in doc["notes"])
    assert {c["address"] for c in doc["changes"]} == {"certs", 'nodes["node-2"]'}


def test_mesh_in_a_subdirectory_reads_its_sibling_state(repo: GitMesh) -> None:
    data = make_mesh(nodes=1)
    (repo.path / "infra").mkdir()
    (repo.path / "infra" / "mesh.yaml").write_text(to_yaml(data))
    base = repo.commit(files={"infra/state/state.yaml": "version: 1\nnodes: {node-1: {}}\n"})
    proc = subprocess.run(
        [
            MESHOPS,
            "-C",
            str(repo.path),
            "-f",
            "infra/mesh.yaml",
            "review",
            "--base",
            base,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["head"]["mesh_path"] == "infra/mesh.yaml"
    assert doc["state"]["issues"] == []
