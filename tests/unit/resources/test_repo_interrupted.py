"""Repo-scope resources in process: an apply stopped between any two changes converges,
and a removal stopped before the CRL is re-signed still ends with the node CA revoked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from factories import age_identity_pair, make_mesh, to_yaml

from meshops.engine.plan import Action, Plan
from meshops.engine.run import apply_plan, make_plan
from meshops.engine.runtime import Runtime
from meshops.model import load_text
from meshops.resources import Scope, open_repo


class Repo:
    def __init__(self, path: Path, data: dict[str, Any]):
        self.path, self.data = path, data
        self.identity = path.parent / "operator.key"
        self.identity.write_text(age_identity_pair(0)[0] + "\n")
        self.identity.chmod(0o600)

    def scope(self) -> tuple[Scope, Runtime]:
        text = to_yaml(self.data)
        (self.path / "mesh.yaml").write_text(text)
        rt = Runtime(repo_dir=self.path, identity_files=[self.identity])
        loaded = load_text(text, "mesh.yaml")
        return open_repo(loaded, self.path / "mesh.yaml", self.path, rt), rt

    def plan(self) -> tuple[Plan, Scope, Runtime]:
        scope, rt = self.scope()
        return make_plan(scope.name, scope.resources, rt), scope, rt

    def apply(self, *, stop_before: int | None = None, record: bool = True) -> Plan:
        """Apply the fresh plan, or only its first `stop_before` changes; then record
        the outcome as `meshops apply` does, unless `record=False` (a SIGKILL)."""
        plan, scope, rt = self.plan()
        todo = plan.actionable if stop_before is None else plan.actionable[:stop_before]
        partial = Plan(plan.scope, todo, plan.fingerprint)
        result = apply_plan(partial, scope.resources, rt)
        assert result.ok, result.error
        if record:
            scope.record(partial, result, None, rt)
        return plan


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    (tmp_path / "mesh").mkdir()
    return Repo(tmp_path / "mesh", make_mesh(nodes=3))


@pytest.mark.parametrize("record", [True, False], ids=["stopped", "killed"])
def test_an_apply_stopped_after_any_change_converges_on_the_next_run(
    repo: Repo, record: bool
) -> None:
    total = len(repo.plan()[0].actionable)
    for stop in range(total):
        repo.apply(stop_before=stop, record=record)
        repo.apply()
        assert not repo.plan()[0].has_changes, f"not converged after stopping at {stop}"
        # new work for the next round: re-key node-2
        node = repo.data["nodes"]["node-2"]
        node["recipient"] = age_identity_pair(stop + 3)[1]


def test_a_removal_stopped_before_the_crl_still_revokes_the_node_ca(repo: Repo) -> None:
    repo.apply()
    scope, _ = repo.scope()
    state = scope.resources[0].scope.state  # type: ignore[attr-defined]
    serial = state.nodes["node-2"].ca.serial
    del repo.data["nodes"]["node-2"]
    plan = repo.plan()[0]
    addresses = [c.address for c in plan.actionable]
    assert addresses[-2:] == ["ca.crl", "state.manifest"]
    # stop right after the node CA is deleted (its record gone from state.yaml)
    repo.apply(stop_before=addresses.index('ca.node["node-2"]') + 1)
    replan = repo.plan()[0]
    crl = [c for c in replan.actionable if c.address == "ca.crl"]
    assert crl and crl[0].action is Action.UPDATE
    assert f"revokes node CA of node-2 (serial {serial})" in crl[0].reason
    repo.apply()
    assert not repo.plan()[0].has_changes
    from meshops.pki.parse import load_crl

    revoked = load_crl((repo.path / "state/ca/crl.pem").read_bytes())
    assert format(next(iter(revoked)).serial_number, "x") == serial


def test_temp_files_left_by_a_killed_apply_are_swept_by_the_next_apply(repo: Repo) -> None:
    repo.apply()
    junk = repo.path / "state/nodes/node-1/.wg.key.age.meshops-tmp-99999"
    junk.write_bytes(b"sealed")
    orphan_dir = repo.path / "state/nodes/gone"
    orphan_dir.mkdir()
    (orphan_dir / ".ca.crt.meshops-tmp-1").write_bytes(b"x")
    scope, rt = repo.scope()
    plan = make_plan(scope.name, scope.resources, rt)
    scope.record(plan, None, None, rt)
    assert not junk.exists()
    assert not orphan_dir.exists()
    assert (repo.path / "state/nodes/node-1/wg.key.age").exists()


def test_files_of_a_node_state_yaml_never_recorded_are_removed_with_the_node(
    repo: Repo,
) -> None:
    # an apply killed after writing a new node's files but before state.yaml caught
    # up, then the node taken out of mesh.yaml: only the files say it existed
    repo.apply()
    import shutil

    shutil.copytree(repo.path / "state/nodes/node-1", repo.path / "state/nodes/stray")
    plan = repo.plan()[0]
    stray = {c.address: c.action for c in plan.actionable if '"stray"' in c.address}
    assert stray == {
        'wireguard.key["stray"]': Action.DELETE,
        'ca.node["stray"]': Action.DELETE,
    }
    repo.apply()
    assert not (repo.path / "state/nodes/stray").exists()
    assert not repo.plan()[0].has_changes
