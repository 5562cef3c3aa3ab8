"""`meshops validate`: schema, semantic checks and policy tests, every error located."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from meshops.cli.context import Context

if TYPE_CHECKING:
    from meshops.model import Loaded

FORMAT_VERSION = "1.0"  # docs/json.md: a new minor version only adds fields


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["text", "json"], default="text")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.errors import ValidationFailed

    try:
        loaded = ctx.load()
        check_enrolments(loaded, ctx)
    except ValidationFailed as exc:
        if args.format == "json":
            ctx.out(json.dumps(_problems_json(exc), indent=2))
            return 1
        raise
    mesh = loaded.mesh
    if args.format == "json":
        summary = {
            "format_version": FORMAT_VERSION,
            "valid": True,
            "file": ctx.mesh_display,
            "nodes": len(mesh.nodes),
            "identities": len(mesh.identities),
            "policies": len(mesh.policies),
            "grants": len(loaded.access.grants),
            "port_grants": len(loaded.access.ports),
            "tests_passed": len(mesh.tests),
            "problems": [],
        }
        ctx.out(json.dumps(summary, indent=2))
        return 0
    from meshops.report.words import plural

    ports = len(loaded.access.ports)
    grants = plural(len(loaded.access.grants), "grant")
    if ports:
        grants += f", {plural(ports, 'port grant')}"
    counts = [
        plural(len(mesh.nodes), "node"),
        plural(len(mesh.identities), "identity", "identities"),
        f"{plural(len(mesh.policies), 'policy', 'policies')} ({grants})",
        f"{plural(len(mesh.tests), 'policy test')} passed",
    ]
    ctx.out(f"{ctx.mesh_display}: valid: {', '.join(counts)}")
    return 0


def check_enrolments(loaded: Loaded, ctx: Context) -> None:
    """The enrolment requests under enroll/ beside mesh.yaml (docs/keys.md); raises
    ValidationFailed with every problem located in its file."""
    from meshops.engine import clock
    from meshops.enroll import load_enrolments
    from meshops.resources.repo.state import StateLayout, load_state

    mesh_dir = ctx.mesh_file.parent
    state = load_state(StateLayout(mesh_dir))
    shown = str(Path(ctx.mesh_display).parent)
    display_dir = "" if shown == "." else f"{shown}/"
    enrolments = load_enrolments(loaded, mesh_dir, state, now=clock.now(),
                                 display_dir=display_dir)  # fmt: skip
    enrolments.raise_problems()


def _problems_json(exc: object) -> dict[str, object]:
    from meshops.errors import ValidationFailed

    assert isinstance(exc, ValidationFailed)
    return {
        "format_version": FORMAT_VERSION,
        "valid": False,
        "problems": [
            {
                "file": p.location.file if p.location else None,
                "line": p.location.line if p.location else None,
                "column": p.location.column if p.location else None,
                "path": p.path,
                "message": p.message,
            }
            for p in exc.problems
        ],
    }
