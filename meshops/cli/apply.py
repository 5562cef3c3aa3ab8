"""`meshops apply [PLANFILE]`: make the changes, one apply at a time per scope."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshops.cli.context import Context

if TYPE_CHECKING:
    from meshops.engine.plan import Change, Plan
    from meshops.engine.planfile import SavedPlan
    from meshops.engine.run import ApplyResult
    from meshops.engine.runtime import Runtime
    from meshops.errors import MeshError
    from meshops.gitops.sync import PullRefused
    from meshops.resources import Scope


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("planfile", nargs="?", help="a plan saved with `meshops plan --out`")
    parser.add_argument(
        "--auto-approve", action="store_true", help="apply without asking (required off a tty)"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing when nothing changed")
    parser.add_argument(
        "--format", choices=["text", "json"], default="text",
        help="json: print what was applied, every failure and what was skipped (for scripts)",
    )  # fmt: skip
    parser.add_argument(
        "--pull", action="store_true",
        help="host scope: fetch the mesh repository first (trusted, no rewinds; see host.yaml); "
        "cron mode: prints nothing when nothing changed",
    )  # fmt: skip
    parser.add_argument(
        "--allow-rewind", action="store_true",
        help="with --pull: accept a revision that does not descend from the last applied one",
    )  # fmt: skip


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.cli.common import lock_path, make_runtime
    from meshops.engine import lock, planfile
    from meshops.errors import MeshError

    rt = make_runtime(ctx)
    saved = planfile.load(Path(args.planfile)) if args.planfile else None
    if not getattr(args, "pull", False):
        return _apply(args, ctx, rt, saved, quiet=bool(args.quiet))
    if saved is not None:
        raise MeshError(
            "--pull cannot apply a saved plan: the plan was made at the revision it names",
            hint="pull first (`meshops apply --pull`), or apply the plan without --pull",
        )
    if ctx.resolve_node() is None:
        raise MeshError("--pull is for host scope: pass --node NAME (or set it in host.yaml)")
    # The pull moves the checkout, so it holds the host's apply lock too: a cron run and
    # `watch` never move it under each other's feet. A refused pull leaves the checkout
    # where it was; that revision is still applied (leaf renewals must not stop because
    # the remote is unreachable or untrusted), then the refusal is the error.
    with lock.hold(lock_path(ctx), "apply --pull"):
        refused = _pull(ctx, rt, allow_rewind=bool(getattr(args, "allow_rewind", False)))
        if refused is not None:  # recorded with the apply: status and metrics show it
            rt.shared["pull_refused"] = refused.message
        try:
            code = _apply(args, ctx, rt, None, quiet=True, locked=True)  # cron: silent no-op
        except MeshError as exc:
            if refused is None:
                raise
            raise MeshError(
                f"{refused.message}; applying the kept revision failed too: {exc.message}",
                hint=exc.hint or refused.hint,
            ) from None
    if refused is not None:
        raise refused
    return code


def _apply(
    args: argparse.Namespace,
    ctx: Context,
    rt: Runtime,
    saved: SavedPlan | None,
    *,
    quiet: bool,
    locked: bool = False,
) -> int:
    import contextlib

    from meshops.cli.common import lock_path, open_scope
    from meshops.engine import lock, planfile
    from meshops.engine.run import apply_plan, make_plan
    from meshops.errors import MeshError

    held = contextlib.nullcontext() if locked else lock.hold(lock_path(ctx), "apply")
    with held:
        # plan under the lock: what we apply is what is true now
        scope = open_scope(ctx, rt, commit=True)
        assert scope.lock_path == lock_path(ctx), (scope.lock_path, lock_path(ctx))
        plan = make_plan(scope.name, scope.resources, rt, revision=scope.revision)
        if saved is not None:
            planfile.check_still_valid(
                saved,
                plan,
                mesh_sha256=scope.mesh_sha256,
                now=rt.now,
                applied_ids=scope.applied_ids,
            )
        as_json = getattr(args, "format", "text") == "json"
        if not plan.has_changes:
            if as_json:
                _print_json(ctx, plan, None)
            elif not quiet:
                ctx.out("No changes. Nothing to apply.")
            scope.record(plan, None, None, rt)
            return _refused(scope)
        if saved is None:
            from meshops.cli.common import met_needs
            from meshops.report.plan_text import render_text

            if as_json and not args.auto_approve:
                raise MeshError(
                    "--format json applies without asking: add --auto-approve "
                    "(or apply a plan saved with `meshops plan --out`)"
                )
            if not as_json:
                text = render_text(plan, color=ctx.color and ctx.is_tty, met=met_needs())
                ctx.out(text.rstrip("\n"))
            if not args.auto_approve:
                _confirm(ctx)
        scope.preflight(plan, rt)
        result = None
        unrecorded: MeshError | None = None
        try:
            progress = None if as_json else _progress(ctx)
            result = apply_plan(
                plan, scope.resources, rt, progress=progress, keep_going=scope.keep_going
            )
        finally:
            # also on an unexpected error: records what was done (state.yaml is batched)
            try:
                scope.record(plan, result, saved.plan_id if saved else _plan_id(), rt)
            except MeshError as exc:  # e.g. a full disk: said after what failed first
                unrecorded = exc
            rt.forget_secrets()
    assert result is not None
    if as_json:
        _print_json(ctx, plan, result)
    else:
        _summary(ctx, plan, result)
    if not result.ok:
        raise failure_error(result, unrecorded)
    if unrecorded is not None:
        raise unrecorded
    return _refused(scope)


def _refused(scope: Scope) -> int:
    """0, or the refusal of the checkout's state/ once the last good material has
    been applied (leaf renewals go on; the refusal is still an error: exit 1)."""
    if scope.refused is not None:
        raise scope.refused
    return 0


def _print_json(ctx: Context, plan: Plan, result: ApplyResult | None) -> None:
    import json

    from meshops.report.apply_json import apply_to_json

    ctx.out(json.dumps(apply_to_json(plan, result), indent=2, sort_keys=True))


def failure_error(result: ApplyResult, unrecorded: MeshError | None = None) -> MeshError:
    """One error naming every change that failed, each with its own hint, and what was
    not attempted because of them."""
    from meshops.errors import MeshError

    also = f"; recording the outcome failed too: {unrecorded.message}" if unrecorded else ""
    shown = ", ".join(c.address for c in result.skipped[:5])
    more = f" and {len(result.skipped) - 5} more" if len(result.skipped) > 5 else ""
    skipped = f"not attempted, as they need a failed change: {shown}{more}; " if shown else ""
    tail = f"{skipped}the next apply continues from here{also}"
    if len(result.failures) == 1:
        change, error = result.failures[0]
        hint = f"{error.hint} ({tail})" if error.hint else tail
        return MeshError(f"{change.address}: {error.message}", hint=hint)
    lines = [f"{len(result.failures)} changes failed:"]
    for change, error in result.failures:
        lines.append(f"  {change.address}: {error.message}")
        if error.hint:
            lines.append(f"    hint: {error.hint}")
    return MeshError("\n".join(lines), hint=tail)


def _pull(ctx: Context, rt: Runtime, *, allow_rewind: bool) -> PullRefused | None:
    """Move the checkout to the remote's newest acceptable revision; the refusal, if any."""
    from meshops.cli.common import use_host_config
    from meshops.gitops.sync import PullRefused, parse_settings, pull

    use_host_config(ctx, rt)
    config = ctx.host_config() or {}
    settings = parse_settings(config.get("pull"))
    lib_dir = ctx.host_path("/var/lib/meshops")
    node = ctx.resolve_node()
    assert node is not None

    def check_state(revision: str, loaded: Any) -> None:
        """The revision's state/ verifies for this host, before it is checked out."""
        from meshops.gitops.pull import TreeAt
        from meshops.resources.host.trust import check_revision, parse_pins
        from meshops.resources.repo.scope import suffix_for
        from meshops.trust.verify import NotRegular

        tree = TreeAt(ctx.repo_dir, revision, "state")

        def read(paths: list[str], sizes: Mapping[str, int]) -> dict[str, Any]:
            got = tree.read(paths, sizes)
            return {p: v if isinstance(v, bytes) else NotRegular(v) for p, v in got.items()}

        check_revision(
            read, tree.irregular(), lib_dir=lib_dir, node=node,
            suffix=suffix_for(loaded.mesh.secrets.format), pins=parse_pins(config.get("trust")),
        )  # fmt: skip

    try:
        pull(
            ctx.repo_dir,
            settings,
            lib_dir=lib_dir,
            host_path=ctx.host_path,
            mesh_file=ctx.mesh_file,
            allow_rewind=allow_rewind,
            check_state=check_state,
        )
    except PullRefused as exc:
        return exc
    return None


def _plan_id() -> str:
    import uuid

    return str(uuid.uuid4())


def _confirm(ctx: Context) -> None:
    from meshops.errors import MeshError

    if not sys.stdin.isatty():
        raise MeshError(
            "apply asks for confirmation and no terminal is attached",
            hint="review with `meshops plan`, then run `meshops apply --auto-approve`, "
            "or save a plan with --out and apply that file",
        )
    sys.stdout.write("\nDo you want to perform these actions? Only 'yes' is accepted: ")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "yes":
        raise MeshError("apply cancelled")


def _progress(ctx: Context):  # type: ignore[no-untyped-def]
    """A rich progress bar on a terminal; a plain line per change in pipes."""
    verbs = {"create": "created", "update": "updated", "replace": "replaced", "delete": "destroyed"}
    if ctx.is_tty and ctx.color:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), transient=True
        )
        task = None

        def on_tty(event: str, change: Change, index: int, total: int) -> None:
            nonlocal task
            if task is None:
                bar.start()
                task = bar.add_task("applying", total=total)
            if event == "start":
                bar.update(task, description=change.address)
            else:
                bar.advance(task)
                if index + 1 == total or event == "failed":
                    bar.stop()

        return on_tty

    from meshops.report.escape import visible

    def plain(event: str, change: Change, index: int, total: int) -> None:
        if event == "done":
            ctx.out(visible(f"{change.address}: {verbs.get(change.action.value, 'done')}"))

    return plain


def _summary(ctx: Context, plan: Plan, result: ApplyResult) -> None:
    from meshops.engine.plan import Action

    done = [c.action for c in result.applied]
    added = sum(a in (Action.CREATE, Action.REPLACE) for a in done)
    changed = sum(a is Action.UPDATE for a in done)
    destroyed = sum(a in (Action.DELETE, Action.REPLACE) for a in done)
    word = "complete" if result.ok else "incomplete"
    failed = f" {len(result.failures)} failed." if result.failures else ""
    skipped = f" {len(result.skipped)} not attempted." if result.skipped else ""
    ctx.out(
        f"Apply {word}! Resources: {added} added, {changed} changed, {destroyed} destroyed."
        f"{failed}{skipped}"
    )
