"""The repo-scope plan at a git revision, for `review`: what apply would sign, seal or
revoke if this revision were merged. Runs the real engine over the revision's state/
files copied into a scratch directory; reads nothing live and needs no identity."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from meshops.engine import clock
from meshops.gitops.review import PlanLine, PlanSummary
from meshops.model import Loaded

_ACTIONS = {"create": "create", "update": "update", "replace": "replace", "delete": "destroy"}


def repo_plan(
    loaded: Loaded, state: Mapping[str, bytes], enroll: Mapping[str, bytes] | None = None
) -> PlanSummary | None:
    from meshops.engine.plan import Action
    from meshops.engine.run import make_plan
    from meshops.engine.runtime import Runtime
    from meshops.errors import MeshError
    from meshops.resources.repo.scope import compile_repo, open_repo_scope

    with tempfile.TemporaryDirectory(prefix="meshops-review-") as scratch:
        repo = Path(scratch)
        for rel, data in state.items():
            target = repo / "state" / rel
            if ".." in Path(rel).parts:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        for name, data in (enroll or {}).items():
            if "/" in name or name.startswith("."):
                continue
            (repo / "enroll").mkdir(exist_ok=True)
            (repo / "enroll" / name).write_bytes(data)
        rt = Runtime(repo_dir=repo, now=clock.now())
        try:
            scope = open_repo_scope(loaded, repo, rt.now)
            scope.local_override = set()  # every file here came from a commit
            plan = make_plan("repo", compile_repo(scope), rt)
        except MeshError as exc:
            first = exc.message.splitlines()[0]
            return PlanSummary((), note=f"the repo-scope plan could not be made: {first}")
    lines = tuple(
        PlanLine(_ACTIONS[c.action.value], c.address, c.reason)  # type: ignore[arg-type]
        for c in plan.actionable
        if c.action is not Action.NOOP
    )
    note = ("apply needs: " + "; ".join(plan.needs())) if plan.needs() else ""
    if not lines:
        note = "state/ is up to date with mesh.yaml at head"
    return PlanSummary(lines, note=note)
