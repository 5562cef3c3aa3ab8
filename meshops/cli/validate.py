"""`meshops validate`: schema, semantic checks and policy tests, every error located."""

from __future__ import annotations

import argparse
import json

from meshops.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["text", "json"], default="text")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.errors import ValidationFailed

    try:
        loaded = ctx.load()
    except ValidationFailed as exc:
        if args.format == "json":
            ctx.out(json.dumps(_problems_json(exc), indent=2))
            return 1
        raise
    mesh = loaded.mesh
    if args.format == "json":
        summary = {
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
    ports = len(loaded.access.ports)
    port_grants = f", {ports} port grants" if ports else ""
    ctx.out(
        f"{ctx.mesh_display}: valid: {len(mesh.nodes)} nodes, {len(mesh.identities)} "
        f"identities, {len(mesh.policies)} policies ({len(loaded.access.grants)} grants"
        f"{port_grants}), {len(mesh.tests)} policy tests passed"
    )
    return 0


def _problems_json(exc: object) -> dict[str, object]:
    from meshops.errors import ValidationFailed

    assert isinstance(exc, ValidationFailed)
    return {
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
