"""`meshops graph`: who may call whom, from the access table, as Mermaid or DOT."""

from __future__ import annotations

import argparse

from meshops.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=["mermaid", "dot"],
        default="mermaid",
        help="mermaid (paste into markdown) or dot (Graphviz: `| dot -Tsvg`)",
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.report.graph import access_graph, render_dot, render_mermaid

    # the graph shows what the policies allow; a failing policy test does not change it
    loaded = ctx.load(run_tests=False)
    placements = {name: ident.nodes for name, ident in loaded.mesh.identities.items()}
    graph = access_graph(placements, loaded.access)
    text = render_dot(graph) if args.format == "dot" else render_mermaid(graph)
    ctx.out(text.rstrip("\n"))
    return 0
