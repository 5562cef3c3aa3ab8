"""Does the committed state/ match mesh.yaml? The simplest sound check without the engine.

Compares node names only: those in mesh.yaml against the `nodes:` mapping of
`state/state.yaml` and the `state/nodes/<node>/` directories, when they exist. Any
mismatch means `meshops apply` at repo scope has not been run (or committed) for this
revision. The engine can replace this with a full check through `build_review`'s
`state_check` parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import yaml

from meshops.model.mesh import Mesh

# mesh, state/ files (path relative to state/ -> bytes) -> problems in words
StateCheck = Callable[[Mesh, Mapping[str, bytes]], list[str]]

_APPLY = "run `meshops apply` at repo scope and commit state/"


def check_state(mesh: Mesh, state: Mapping[str, bytes]) -> list[str]:
    """Node-level mismatches between mesh.yaml and state/; [] when they agree."""
    if not state:
        if not mesh.nodes:
            return []
        return [f"state/ is empty: nothing has been applied for this mesh yet ({_APPLY})"]
    issues: list[str] = []
    wanted = set(mesh.nodes)
    if "state.yaml" in state:
        recorded, problem = _state_yaml_nodes(state["state.yaml"])
        if problem:
            issues.append(problem)
        else:
            issues += _compare(wanted, recorded, "state/state.yaml")
    dirs = {
        path.split("/")[1] for path in state if path.startswith("nodes/") and path.count("/") >= 2
    }
    if dirs or any(p.startswith("nodes/") for p in state):
        issues += _compare(wanted, dirs, "state/nodes/")
    if "state.yaml" not in state:
        issues.append(f"state/state.yaml is missing ({_APPLY})")
    return issues


def _state_yaml_nodes(data: bytes) -> tuple[set[str], str | None]:
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        return set(), f"state/state.yaml is not valid YAML: {exc}"
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        return set(), "state/state.yaml is not a mapping"
    nodes = doc.get("nodes") or {}
    if not isinstance(nodes, dict):
        return set(), "state/state.yaml: `nodes` is not a mapping"
    return {str(name) for name in nodes}, None


def _compare(wanted: set[str], recorded: set[str], where: str) -> list[str]:
    issues = []
    for node in sorted(wanted - recorded):
        issues.append(f"node {node!r} is in mesh.yaml but not in {where} ({_APPLY})")
    for node in sorted(recorded - wanted):
        issues.append(f"node {node!r} is in {where} but no longer in mesh.yaml ({_APPLY})")
    return issues
