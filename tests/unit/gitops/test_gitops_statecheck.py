from __future__ import annotations

from factories import make_mesh
from gitops_helpers import mesh_of, state_for

from meshops.gitops.statecheck import check_state


def test_state_matching_mesh_has_no_issues() -> None:
    mesh = mesh_of(make_mesh(nodes=2))
    state = {
        **state_for("node-1", "node-2"),
        "nodes/node-1/ca.crt": b"",
        "nodes/node-2/ca.crt": b"",
    }
    assert check_state(mesh, state) == []


def test_node_missing_from_state_and_stale_node_in_state_are_flagged() -> None:
    mesh = mesh_of(make_mesh(nodes=2))
    issues = check_state(mesh, state_for("node-1", "node-9"))
    assert len(issues) == 2
    assert issues[0].startswith("node 'node-2' is in mesh.yaml but not in state/state.yaml")
    assert issues[1].startswith("node 'node-9' is in state/state.yaml but no longer in mesh.yaml")
    assert all("meshops apply" in issue for issue in issues)


def test_node_directories_are_compared_too() -> None:
    mesh = mesh_of(make_mesh(nodes=2))
    state = {**state_for("node-1", "node-2"), "nodes/node-1/ca.crt": b""}
    assert check_state(mesh, state) == [
        "node 'node-2' is in mesh.yaml but not in state/nodes/ "
        "(run `meshops apply` at repo scope and commit state/)"
    ]


def test_empty_state_and_broken_state_yaml_are_reported() -> None:
    mesh = mesh_of(make_mesh(nodes=1))
    assert "state/ is empty" in check_state(mesh, {})[0]
    assert "not valid YAML" in check_state(mesh, {"state.yaml": b"nodes: [\n"})[0]
