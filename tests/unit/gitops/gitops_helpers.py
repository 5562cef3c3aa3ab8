"""Helpers for the gitops unit tests: meshes from the shared factories, as snapshots."""

from __future__ import annotations

import copy
from typing import Any

from factories import to_yaml

from meshops.gitops.revisions import Snapshot
from meshops.model import load_text
from meshops.model.mesh import Mesh


def mesh_of(data: dict[str, Any]) -> Mesh:
    return load_text(to_yaml(data), run_tests=False).mesh


def snap(
    data: dict[str, Any] | None,
    label: str = "HEAD",
    state: dict[str, bytes] | None = None,
    *,
    text: str | None = None,
) -> Snapshot:
    body = text.encode() if text is not None else (to_yaml(data).encode() if data else None)
    return Snapshot(label, "0" * 40, "mesh.yaml", body, dict(state or {}))


def edited(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of `data` with top-level sections replaced."""
    out = copy.deepcopy(data)
    out.update(copy.deepcopy(changes))
    return out


def state_for(*nodes: str) -> dict[str, bytes]:
    body = "version: 1\nnodes:\n" + "".join(f"  {n}: {{address: 10.42.0.1}}\n" for n in nodes)
    if not nodes:
        body = "version: 1\nnodes: {}\n"
    return {"state.yaml": body.encode()}
