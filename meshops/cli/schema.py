"""`meshops schema`: the JSON Schema of mesh.yaml v1, generated from the model."""

from __future__ import annotations

import argparse

from meshops.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.model.schema import schema_text

    ctx.out(schema_text().rstrip("\n"))
    return 0
