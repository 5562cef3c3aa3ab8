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
    # every change that failed, with its error, in the order they were attempted
    failures: list[tuple[Change, MeshError]] = field(default_factory=list)
    # not attempted: something they depend on failed (or, stopping at the first
    # failure, everything after it)
    skipped: list[Change] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failed(self) -> Change | None:
        """The first change that failed."""
        return self.failures[0][0] if self.failures else None

    @property
    def error(self) -> MeshError | None:
        """The first failure's error."""
        return self.failures[0][1] if self.failures else None


Progress = Callable[[str, Change, int, int], None]  # (event, change, index, total)


def apply_order(plan: Plan, resources: Sequence[Resource[Any]]) -> list[Change]:
    """The plan's actionable changes in the order to apply them: every change after what
    it depends on and, among those ready, security changes first (a revoked node's peer
    removal, the CRL, the trust bundle), so nothing slow or failing delays them."""
    import heapq

    by_address = {r.address: r for r in resources}
    todo = [c for c in plan.changes if c.action is not Action.NOOP]
    pending = {c.address for c in todo}
    waits: dict[str, set[str]] = {}
    blocks: dict[str, list[str]] = {}
    for change in todo:
        resource = by_address[change.address]
        deps = {d for d in resource.depends_on if d in pending and d != change.address}
        waits[change.address] = deps
        for dep in deps:
            blocks.setdefault(dep, []).append(change.address)
    rank = {c.address: (0 if by_address[c.address].security_first(c) else 1, i)
            for i, c in enumerate(todo)}  # fmt: skip
    changes = {c.address: c for c in todo}
    ready = [rank[a] + (a,) for a, deps in waits.items() if not deps]
    heapq.heapify(ready)
    ordered = []
    while ready:
        *_, address = heapq.heappop(ready)
        ordered.append(changes[address])
        for later in blocks.get(address, []):
            waits[later].discard(address)
            if not waits[later]:
                heapq.heappush(ready, rank[later] + (later,))
    if len(ordered) != len(todo):  # the plan came from `order`, so this cannot happen
        raise MeshError("internal: dependency cycle among the planned changes")
    return ordered


def apply_plan(
    plan: Plan,
    resources: Sequence[Resource[Any]],
    rt: Runtime,
    *,
    progress: Progress | None = None,
    after_each: Callable[[Change], None] | None = None,
    keep_going: bool = False,
) -> ApplyResult:
    """Apply the plan's changes in order.

    Each resource's apply leaves its files either old or new. With `keep_going` (a
    host), every change whose dependencies succeeded is applied, security changes
    first, and every failure is reported: one proxy refusing its config must not keep
    a revoked node's peer in place. Without it (the repository, whose steps build on
    each other), apply stops at the first failure. Either way the next run plans again
    from what is there, so a stopped apply converges.
    """
    by_address = {r.address: r for r in resources}
    todo = apply_order(plan, resources) if keep_going else list(plan.actionable)
    result = ApplyResult()
    actionable = {c.address for c in todo}
    blocked: set[str] = set()  # failed or skipped: what depends on them cannot run
    for index, change in enumerate(todo):
        resource = by_address[change.address]
        if not keep_going and result.failures:
            result.skipped.append(change)
            continue
        if _blocked(resource, blocked, actionable):
            result.skipped.append(change)
            blocked.add(change.address)
            continue
        if progress:
            progress("start", change, index, len(todo))
        try:
            resource.apply(change, rt)
        except MeshError as exc:
            result.failures.append((change, exc))
            blocked.add(change.address)
            if progress:
                progress("failed", change, index, len(todo))
            continue
        result.applied.append(change)
        if after_each:
            after_each(change)
        if progress:
            progress("done", change, index, len(todo))
    return result


def _blocked(resource: Resource[Any], blocked: set[str], actionable: set[str]) -> bool:
    """Whether a failure among `resource`'s dependencies keeps it from running. A
    follower (a reload hook) runs when anything it follows was changed: the proxy's
    old, checked config is still in place, and it must pick up the new CRL."""
    failed = [d for d in resource.depends_on if d in blocked]
    if not failed:
        return False
    if not resource.runs_after_any:
        return True
    return not any(d in actionable and d not in blocked for d in resource.depends_on)
