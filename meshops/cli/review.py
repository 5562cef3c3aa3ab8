"""`meshops review`: review a mesh change between two git revisions (no checkout)."""

from __future__ import annotations

import argparse

from meshops.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base", required=True, metavar="REF", help="the revision the change starts from"
    )
    head = parser.add_mutually_exclusive_group()
    head.add_argument(
        "--head", default="HEAD", metavar="REF", help="the revision to review (default: HEAD)"
    )
    head.add_argument(
        "--worktree",
        action="store_true",
        help="review the working tree (uncommitted changes included) instead of --head",
    )
    parser.add_argument(
        "--format",
        choices=["markdown", "text", "json"],
        default="text",
        help="markdown for a pull-request comment, json for scripts (default: text)",
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.gitops import revisions
    from meshops.gitops.review import build_review

    repo = revisions.open_repo(ctx.repo_dir)
    mesh_path = revisions.repo_relative(repo, ctx.mesh_file)
    base = revisions.read_commit(repo, args.base, mesh_path)
    if args.worktree:
        head = revisions.read_worktree(repo, mesh_path)
        ancestor = None
    else:
        head = revisions.read_commit(repo, args.head, mesh_path)
        ancestor = revisions.is_ancestor(repo, args.base, args.head)
    from meshops.gitops.plan_section import repo_plan

    review = build_review(
        base,
        head,
        base_is_ancestor=ancestor,
        plan_section=lambda loaded, state: repo_plan(loaded, state, head.enroll),
    )
    if args.format == "json":
        from meshops.report.review_json import render_json

        text = render_json(review)
    elif args.format == "markdown":
        from meshops.report.review_markdown import render_markdown

        text = render_markdown(review)
    else:
        from meshops.report.review_text import render_text

        text = render_text(review, color=ctx.color and ctx.is_tty)
    ctx.out(text.rstrip("\n"))
    return review.exit_code
