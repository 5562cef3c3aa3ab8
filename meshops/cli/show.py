"""`meshops show PLANFILE`: render a saved plan."""

from __future__ import annotations

import argparse
from pathlib import Path

from meshops.cli.context import Context
from meshops.errors import MeshError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("planfile", help="a plan saved with `meshops plan --out FILE`")
    parser.add_argument("--format", choices=["text", "json", "markdown"], default="text")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.cli.plan import emit_plan
    from meshops.engine import planfile

    saved = planfile.load(Path(args.planfile))
    emit_plan(ctx, saved.plan, args.format)
    if args.format == "json":
        return 0
    applied = _applied_note(ctx, saved.plan.scope, saved.plan_id)
    if args.format == "markdown":
        if applied:
            ctx.out(f"\n**{applied}**")
        return 0
    ctx.out(f"(plan {saved.plan_id}, made {saved.plan.created_at}, expires {saved.expires_at})")
    if applied:
        ctx.out(applied)
    return 0


def _applied_note(ctx: Context, scope: str, plan_id: str) -> str | None:
    """A line saying the plan was applied, when the scope it is for (the repository
    of -C, or the host under --root) records it as its last applied plan."""
    if scope == "repo":
        from meshops.resources.repo.state import StateLayout, load_state

        try:
            last = load_state(StateLayout(ctx.repo_dir, "")).applied_plan
        except MeshError:
            return None
        where = "the repository"
    else:
        from meshops.resources.host.scope import LIB_DIR, read_last_applied

        record = read_last_applied(ctx.host_path(LIB_DIR))
        last = str(record.get("plan_id") or "")
        when = (record.get("last_apply") or {}).get("time")
        where = f"{scope.replace('node:', 'node ')}" + (f" (last apply {when})" if when else "")
    if last != plan_id:
        return None
    return f"This plan was applied to {where}; applying it again is refused."
