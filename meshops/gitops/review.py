"""`meshops review`: what a change to mesh.yaml does, from two revisions alone (pure).

`build_review(base, head)` takes two `Snapshot`s (mesh.yaml and state/ bytes, read from
git objects by `revisions.py`) and returns a `Review`: the desired-state changes in
words, the exact access gained and lost, the policy tests at head, warnings, per-node
impact, whether state/ matches mesh.yaml, and optionally the engine's repo-scope plan.
Renderers in `meshops/report/review_*.py` only read a `Review`.

The seam for the engine: pass `plan_section`, a callable that gets the loaded head
mesh and the state/ files at head and returns a `PlanSummary` (or None when it has
nothing to say). `state_check` likewise replaces the node-name check of state/.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from meshops.errors import MeshError, Problem, ValidationFailed
from meshops.gitops.changes import DesiredChange, desired_changes
from meshops.gitops.enrolment_review import EnrolmentReview, review_enrolments
from meshops.gitops.impact import NodeImpact, node_impacts
from meshops.gitops.revisions import Snapshot
from meshops.gitops.state_review import StateReview, review_state
from meshops.gitops.statecheck import StateCheck, check_state
from meshops.gitops.warnings import MANY_NODES, ReviewWarning, review_warnings
from meshops.model import Loaded, load_text
from meshops.model.mesh import Mesh
from meshops.policy import AccessDiff, AccessTable, access_diff
from meshops.report.graph import Graph, change_graph

PlanAction = Literal["create", "update", "replace", "destroy"]
SYMBOLS: dict[PlanAction, str] = {"create": "+", "update": "~", "replace": "-/+", "destroy": "-"}


@dataclass(frozen=True)
class PlanLine:
    """One change of the repo-scope plan, as the engine reports it."""

    action: PlanAction
    address: str  # `ca.node["web-1"]`
    reason: str  # `new node`, `expires in 3h < renew_before 16h`

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.action]


@dataclass(frozen=True)
class PlanSummary:
    lines: tuple[PlanLine, ...]
    note: str = ""  # e.g. "needs the root CA identity to apply"

    def count(self, action: PlanAction) -> int:
        return sum(1 for line in self.lines if line.action == action)


# The engine's seam: (loaded head mesh, state/ files at head) -> the repo-scope plan.
PlanSection = Callable[[Loaded, Mapping[str, bytes]], PlanSummary | None]


@dataclass(frozen=True)
class RevisionInfo:
    label: str  # the ref as given, or "working tree"
    commit: str | None
    mesh_path: str
    found: bool  # mesh.yaml exists at this revision
    problems: tuple[Problem, ...] = ()  # why it does not validate (empty: valid)

    @property
    def valid(self) -> bool:
        return self.found and not self.problems


@dataclass(frozen=True)
class TestResults:
    total: int
    failures: tuple[Problem, ...] = ()

    @property
    def passed(self) -> int:
        return self.total - len(self.failures)


@dataclass(frozen=True)
class Review:
    base: RevisionInfo
    head: RevisionInfo
    changes: tuple[DesiredChange, ...] = ()
    access: AccessDiff = field(default_factory=lambda: AccessDiff((), ()))
    tests: TestResults = field(default_factory=lambda: TestResults(0))
    warnings: tuple[ReviewWarning, ...] = ()
    impacts: tuple[NodeImpact, ...] = ()
    state_issues: tuple[str, ...] = ()
    state: StateReview = field(default_factory=StateReview)  # the change of state/
    enrolments: EnrolmentReview = field(default_factory=EnrolmentReview)  # enroll/*.yaml
    plan: PlanSummary | None = None
    graph: Graph | None = None
    notes: tuple[str, ...] = ()  # facts about the comparison itself (base not an ancestor)

    @property
    def ok(self) -> bool:
        """Head validates, every policy test passes, and state/ changed only as
        `meshops apply` signed it, and every enrolment request holds."""
        return (
            self.head.valid
            and not self.tests.failures
            and not self.state.errors
            and not self.enrolments.errors
        )

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def unchanged(self) -> bool:
        """Neither mesh.yaml's desired state, nor state/, nor a request changed."""
        return (
            not self.changes
            and self.access.empty
            and not self.state.changed
            and not self.enrolments.changed
        )


def _load(snapshot: Snapshot) -> tuple[Loaded | None, tuple[Problem, ...]]:
    if snapshot.mesh is None:
        return None, ()
    try:
        return load_text(snapshot.mesh, snapshot.mesh_path, run_tests=False), ()
    except ValidationFailed as exc:
        return None, tuple(exc.problems)
    except MeshError as exc:  # a refused document (too big, too deep): unlocated
        return None, (Problem(None, "", exc.message),)


def _info(snapshot: Snapshot, problems: tuple[Problem, ...]) -> RevisionInfo:
    return RevisionInfo(
        snapshot.label, snapshot.commit, snapshot.mesh_path, snapshot.mesh is not None, problems
    )


def build_review(
    base: Snapshot,
    head: Snapshot,
    *,
    plan_section: PlanSection | None = None,
    state_check: StateCheck = check_state,
    base_is_ancestor: bool | None = None,
    many_nodes: int = MANY_NODES,
    now: datetime | None = None,
) -> Review:
    """Review the change from `base` to `head` (`now`: when expired node CAs need no
    revocation; default the wall clock)."""
    from meshops.engine import clock
    from meshops.model.checks import test_problems

    when = now or clock.now()

    base_loaded, base_problems = _load(base)
    head_loaded, head_problems = _load(head)
    base_info, head_info = _info(base, base_problems), _info(head, head_problems)
    notes = []
    if base_is_ancestor is False:
        notes.append(
            f"{base.label} is not an ancestor of {head.label}: the diff also undoes what "
            f"{base.label} gained since this branch forked; rebase to review only this change"
        )
    if base.mesh is None:
        notes.append(f"{base.mesh_path} does not exist at {base.label}: everything is new")
    elif base_problems:
        notes.append(
            f"{base.mesh_path} does not validate at {base.label}; changes are shown "
            "against an empty mesh"
        )
    if head_loaded is None:
        if not head_info.found:
            head_info = RevisionInfo(
                head.label,
                head.commit,
                head.mesh_path,
                False,
                (Problem(None, "", f"{head.mesh_path} does not exist at {head.label}"),),
            )
        state = review_state(base, head, None, when)
        return Review(base_info, head_info, state=state, notes=tuple(notes))
    before = base_loaded.mesh if base_loaded else None
    after = head_loaded.mesh
    before_table = base_loaded.access if base_loaded else AccessTable(())
    after_table = head_loaded.access
    failures = test_problems(after, head_loaded.document, after_table)
    enrolments = review_enrolments(base, head, head_loaded, when)
    return Review(
        base=base_info,
        head=head_info,
        changes=tuple(desired_changes(before, after)),
        access=access_diff(before_table, after_table),
        tests=TestResults(len(after.tests), tuple(failures)),
        warnings=tuple(review_warnings(before, after, many_nodes=many_nodes)),
        impacts=tuple(node_impacts(before, after, before_table, after_table)),
        state_issues=tuple(state_check(after, head.state)),
        state=review_state(base, head, after, when, enrolments.proven_by_node()),
        enrolments=enrolments,
        plan=plan_section(head_loaded, head.state) if plan_section else None,
        graph=change_graph(
            _placements(before) if before else {}, before_table, _placements(after), after_table
        ),
        notes=tuple(notes),
    )


def _placements(mesh: Mesh) -> dict[str, list[str]]:
    return {name: ident.nodes for name, ident in mesh.identities.items()}
