"""`meshops schema`: the JSON Schema of mesh.yaml v1, generated from the model, or the
field reference rendered from it (`--format markdown`, the text of docs/mesh-yaml.md)."""

from __future__ import annotations

import argparse

from meshops.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=["json", "markdown"],
        default="json",
        help="json: the JSON Schema (default); markdown: the field reference",
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.model.schema import schema, schema_text

    if args.format == "markdown":
        from meshops.model.reference import reference_markdown

        ctx.out(reference_markdown(schema()).rstrip("\n"))
    else:
        ctx.out(schema_text().rstrip("\n"))
    return 0
