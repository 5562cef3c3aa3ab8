"""`meshops show PLANFILE`: render a saved plan."""

from __future__ import annotations

import argparse
from pathlib import Path

from meshops.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("planfile", help="a plan saved with `meshops plan --out FILE`")
    parser.add_argument("--format", choices=["text", "json", "markdown"], default="text")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.cli.plan import emit_plan
    from meshops.engine import planfile

    saved = planfile.load(Path(args.planfile))
    emit_plan(ctx, saved.plan, args.format)
    if args.format == "text":
        ctx.out(f"(plan {saved.plan_id}, made {saved.plan.created_at}, expires {saved.expires_at})")
    return 0
