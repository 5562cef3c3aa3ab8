"""`meshops plan`: what apply would change, with a reason per change."""

from __future__ import annotations

import argparse
import json

from meshops.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="FILE", help="save the plan for `meshops apply FILE`")
    parser.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when there are no changes, 2 when there are, 1 on error",
    )
    parser.add_argument("--format", choices=["text", "json", "markdown"], default="text")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.cli.common import make_runtime, open_scope
    from meshops.engine.run import make_plan

    rt = make_runtime(ctx)
    scope = open_scope(ctx, rt)
    plan = make_plan(scope.name, scope.resources, rt, revision=scope.revision)
    emit_plan(ctx, plan, args.format)
    if args.format != "json":
        for note in scope.notes(plan, rt):
            ctx.out(f"\nNote: {note}")
    if scope.refused is not None:  # planned from the last good material: say why
        raise scope.refused
    if args.out:
        from pathlib import Path

        from meshops.engine import planfile

        planfile.save(Path(args.out), plan, mesh_sha256=scope.mesh_sha256, now=rt.now)
        if args.format == "text":
            ctx.out(f"Saved the plan to {args.out}; apply it with `meshops apply {args.out}`.")
    from meshops.cli.exitcodes import ExitCode

    if args.detailed_exitcode and plan.has_changes:
        return ExitCode.CHANGES
    return ExitCode.OK


def emit_plan(ctx: Context, plan: object, fmt: str) -> None:
    from meshops.engine.plan import Plan

    assert isinstance(plan, Plan)
    if fmt == "json":
        from meshops.report.plan_json import plan_to_json

        ctx.out(json.dumps(plan_to_json(plan), indent=2, sort_keys=True))
    elif fmt == "markdown":
        from meshops.report.plan_text import render_markdown

        ctx.out(render_markdown(plan).rstrip("\n"))
    else:
        from meshops.cli.common import met_needs
        from meshops.report.plan_text import render_text

        text = render_text(plan, color=ctx.color and ctx.is_tty, met=met_needs())
        ctx.out(text.rstrip("\n"))
