"""Resources by scope: what `plan`/`apply` manage in the repository or on a host."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshops.engine.plan import Plan
    from meshops.engine.resource import Resource
    from meshops.engine.run import ApplyResult
    from meshops.engine.runtime import Runtime
    from meshops.model import Loaded


@dataclass
class Scope:
    """One place apply acts on: the repository, or one host."""

    name: str  # "repo" or "node:<name>"
    resources: list[Resource[Any]]
    lock_path: Path
    revision: str | None
    mesh_sha256: str
    applied_ids: set[str] = field(default_factory=set)
    # checks that must pass before any change is made (e.g. the root key unseals)
    preflight: Callable[[Plan, Runtime], None] = lambda plan, rt: None
    # record the outcome (state.yaml's applied plan, status.json, metrics)
    record: Callable[[Plan, ApplyResult | None, str | None, Runtime], None] = (
        lambda plan, result, plan_id, rt: None
    )
    # what a reader of the plan should know that is not a change (a held rotation phase)
    notes: Callable[[Plan, Runtime], list[str]] = lambda plan, rt: []
    # apply every change whose dependencies succeeded (a host), or stop at the first
    # failure (the repository, whose steps build on each other)
    keep_going: bool = False
    # a host refused its checkout's state/ and runs on the last good material: the
    # run goes on (leaves renew), then ends with this error (exit 1)
    refused: Exception | None = None


def git_revision(repo_dir: Path) -> str | None:
    """The commit HEAD names, or None outside a git checkout (or without a commit)."""
    found = head_commit(repo_dir)
    if found is not None:
        return found
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo_dir), "rev-parse", "--verify", "-q", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


_HEX = frozenset("0123456789abcdef")


def head_commit(repo_dir: Path) -> str | None:
    """HEAD read from the files of a plain checkout (`.git/HEAD`, a loose ref, or
    packed-refs), without starting `git` (several milliseconds of every plan); None
    when anything is unusual (a linked worktree, a symbolic ref chain, no commit yet):
    then `git rev-parse` answers."""
    git_dir = repo_dir / ".git"
    try:
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return _commit(head)
        ref = head[5:]
        if not ref.startswith("refs/") or ".." in ref:
            return None
        try:
            return _commit((git_dir / ref).read_text().strip())
        except FileNotFoundError:
            pass
        for line in (git_dir / "packed-refs").read_text().splitlines():
            commit, _, name = line.partition(" ")
            if name == ref:
                return _commit(commit)
    except OSError:
        return None
    return None


def _commit(text: str) -> str | None:
    return text if len(text) in (40, 64) and set(text) <= _HEX else None


def mesh_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def repo_lock_path(repo_dir: Path) -> Path:
    """The repo scope's lock: under .git/ in a checkout (never committed by accident)."""
    git_dir = repo_dir / ".git"
    return git_dir / "meshops.lock" if git_dir.is_dir() else repo_dir / ".meshops.lock"


def open_repo(loaded: Loaded, mesh_file: Path, repo_dir: Path, rt: Runtime) -> Scope:
    from meshops.engine.plan import Action
    from meshops.resources.repo.scope import ROOT_KEY_NEED, compile_repo, open_repo_scope

    repo_scope = open_repo_scope(loaded, repo_dir, rt.now)
    lock = repo_lock_path(repo_dir)

    def preflight(plan: Plan, rt: Runtime) -> None:
        creates_root = any(
            c.address == "ca.root" and c.action is Action.CREATE for c in plan.actionable
        )
        makes_root = creates_root and not repo_scope.adopts_staged_root
        if ROOT_KEY_NEED in plan.needs() and not makes_root:
            repo_scope.root_material(rt)  # unseal now: fail before changing anything

    def record(plan: Plan, result: ApplyResult | None, plan_id: str | None, rt: Runtime) -> None:
        repo_scope.sweep_temp_files()  # left by an apply killed mid-write; we hold the lock
        if plan_id and result is not None and result.ok:
            repo_scope.state.applied_plan = plan_id
            repo_scope.save()
        repo_scope.flush()  # state.yaml writes are batched during an apply
        # the commit point, after the last write to state/: sign what the apply left,
        # only when every change (the manifest's included) went through
        if repo_scope.sign_due and result is not None and result.ok:
            from meshops.resources.repo.manifest import sign_state

            sign_state(repo_scope, rt)

    applied = {repo_scope.state.applied_plan} if repo_scope.state.applied_plan else set()
    return Scope(
        name="repo",
        resources=compile_repo(repo_scope),
        lock_path=lock,
        revision=git_revision(repo_dir),
        mesh_sha256=mesh_digest(mesh_file),
        applied_ids=applied,
        preflight=preflight,
        record=record,
        notes=lambda plan, rt: [w for w in [repo_scope.rotation_step(rt.now).waiting] if w],
    )
