from __future__ import annotations

import copy
from functools import cache

from factories import make_mesh, policy, web_api_mesh
from gitops_helpers import snap
from hypothesis import given, settings
from hypothesis import strategies as st

from meshops.gitops.review import build_review
from meshops.report.review_markdown import render_markdown
from meshops.report.review_text import render_text


def _review():  # type: ignore[no-untyped-def]
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["policies"].append(policy("web-db", "web", "db", methods=["GET"], paths=["/health"]))
    del after["nodes"]["node-3"]["endpoint"]
    after["nodes"]["node-3"]["endpoint"] = "198.51.100.3:51820"
    return build_review(snap(before, "origin/main"), snap(after, "HEAD"))


def test_markdown_puts_the_summary_first_and_details_in_collapsible_sections() -> None:
    text = render_markdown(_review())
    lines = text.splitlines()
    assert lines[0].startswith("## ✅ meshops review: `origin/main`")
    assert lines[2].startswith("**") and "access +1 / -0" in lines[2]
    assert text.index("**") < text.index("<details")
    assert "```diff\n+ web -> db  GET /health  (policy web-db)\n```" in text
    assert "```mermaid\nflowchart LR" in text
    assert "<summary>Per-node impact" in text
    assert text.count("<details") == text.count("</details>")


def test_text_output_has_no_escape_codes_unless_colour_is_asked_for() -> None:
    review = _review()
    assert "\x1b[" not in render_text(review)
    assert "\x1b[32m" in render_text(review, color=True)


def test_no_change_says_so() -> None:
    data = make_mesh(nodes=2)
    review = build_review(snap(data, "main"), snap(copy.deepcopy(data)))
    assert review.unchanged
    assert "no desired-state changes" in render_markdown(review)


@cache
def _big_review():  # type: ignore[no-untyped-def]
    before = make_mesh(nodes=3, identities=3)
    after = make_mesh(nodes=60, identities=60, mtls={"mode": "permissive"})
    return build_review(snap(before, "main"), snap(after))


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=600, max_value=70_000))
def test_markdown_never_exceeds_the_limit(limit: int) -> None:
    assert len(render_markdown(_big_review(), limit=limit)) <= limit


def test_the_working_tree_is_named_once_and_a_commit_by_its_hash() -> None:
    from dataclasses import replace

    from meshops.gitops.revisions import WORKTREE

    data = make_mesh(nodes=2)
    worktree = replace(snap(data), label=WORKTREE, commit=None)
    review = build_review(snap(data, "main"), worktree)
    first = render_markdown(review).splitlines()[0]
    assert first.endswith("`main` (000000000000) → `working tree`"), first
    assert "(working tree)" not in render_text(review)
