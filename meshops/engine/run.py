"""The pipeline's engine steps: refresh, diff into a Plan, apply in dependency order."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshops.engine.plan import Action, Change, Plan
from meshops.engine.resource import Observed, Resource
from meshops.engine.runtime import Runtime
from meshops.errors import MeshError


def order(resources: Sequence[Resource[Any]]) -> list[Resource[Any]]:
    """Dependency order (a resource after what it depends on), stable otherwise."""
    by_address = {r.address: r for r in resources}
    if len(by_address) != len(resources):
        counts = Counter(r.address for r in resources)
        dupes = sorted(a for a, n in counts.items() if n > 1)
        raise MeshError(f"internal: duplicate resource addresses {dupes[:3]}")
    placed: dict[str, int] = {}
    result: list[Resource[Any]] = []
    visiting: set[str] = set()

    def visit(resource: Resource[Any]) -> None:
        if resource.address in placed:
            return
        if resource.address in visiting:
            raise MeshError(f"internal: dependency cycle at {resource.address}")
        visiting.add(resource.address)
        for dep in resource.depends_on:
            if dep in by_address:
                visit(by_address[dep])
        visiting.discard(resource.address)
        placed[resource.address] = len(result)
        result.append(resource)

    for resource in resources:
        visit(resource)
    return result


def refresh(resources: Sequence[Resource[Any]], rt: Runtime) -> dict[str, Observed[Any]]:
    return {r.address: r.read(rt) for r in resources}


def live_fingerprint(observed: dict[str, Observed[Any]]) -> str:
    digest = hashlib.sha256()
    for address in sorted(observed):
        digest.update(address.encode() + b"=" + observed[address].fingerprint.encode() + b"\n")
    return digest.hexdigest()[:32]


def make_plan(
    scope: str,
    resources: Sequence[Resource[Any]],
    rt: Runtime,
    *,
    revision: str | None = None,
) -> Plan:
    ordered = order(resources)
    observed = refresh(ordered, rt)
    rt.planned.clear()
    changes = []
    for resource in ordered:
        change = resource.plan(observed[resource.address], rt)
        rt.planned[resource.address] = change
        changes.append(change)
    return Plan(
        scope=scope,
        changes=tuple(changes),
        fingerprint=live_fingerprint(observed),
        revision=revision,
        created_at=rt.now.isoformat(timespec="seconds"),
    )


@dataclass
class ApplyResult:
    applied: list[Change] = field(default_factory=list)
    failed: Change | None = None
    error: MeshError | None = None
    skipped: list[Change] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed is None


Progress = Callable[[str, Change, int, int], None]  # (event, change, index, total)


def apply_plan(
    plan: Plan,
    resources: Sequence[Resource[Any]],
    rt: Runtime,
    *,
    progress: Progress | None = None,
    after_each: Callable[[Change], None] | None = None,
) -> ApplyResult:
    """Apply the plan's changes in order; stop at the first failure.

    Each resource's apply leaves its files either old or new; stopping at the first
    failure means nothing that depends on a failed change runs. The next run plans
    again from what is on disk, so a stopped apply converges.
    """
    by_address = {r.address: r for r in resources}
    todo = [c for c in plan.changes if c.action is not Action.NOOP]
    result = ApplyResult()
    for index, change in enumerate(todo):
        if progress:
            progress("start", change, index, len(todo))
        try:
            by_address[change.address].apply(change, rt)
        except MeshError as exc:
            result.failed, result.error = change, exc
            result.skipped = todo[index + 1 :]
            if progress:
                progress("failed", change, index, len(todo))
            break
        result.applied.append(change)
        if after_each:
            after_each(change)
        if progress:
            progress("done", change, index, len(todo))
    return result
