"""Every renderer escapes user text: a name with a newline, a code fence and `<!--` never
hides the rest of a review comment, escape codes never reach a terminal, and graph
labels never break out of their quotes (issue 14). The strings here bypass mesh.yaml's
own rules on purpose: review renders old revisions, errors quote commands' output."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from functools import cache

import pytest
from factories import policy, to_yaml, web_api_mesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from meshops.engine.plan import Action, Change, Plan
from meshops.errors import Location, Problem
from meshops.gitops.changes import DesiredChange
from meshops.gitops.impact import NodeImpact
from meshops.gitops.review import PlanLine, PlanSummary, Review, build_review
from meshops.gitops.review import TestResults as Results
from meshops.gitops.revisions import Snapshot
from meshops.gitops.state_review import StateError, StateReview
from meshops.gitops.warnings import ReviewWarning
from meshops.policy import AccessDiff, Grant
from meshops.report import plan_text, review_markdown, review_text
from meshops.report.graph import Edge, Graph, Group, render_dot, render_mermaid

ATTACKS = [
    "x\n```\n<!--",
    "-->\n# owned",
    "\x1b[2J\x1b[31mall good\x1b[0m",
    "\u202eevil\u202c",
    "`` ` ```",
    "a|b\n| --- |",
    "[click](https://evil.example)",
    "<img src=x onerror=alert(1)>",
    "@everyone",
    "</details></summary><!--",
    '"];\nid_x["pwned',
    '"|\n  A-->B|"',
    "\\",
]
hostile = st.one_of(
    st.sampled_from(ATTACKS),
    st.text(
        alphabet=st.sampled_from(list("`<>!-\n\r\t\x1b[]()|\"'#*_\\@&~$\u202e\u2028a ")),
        max_size=24,
    ),
    st.text(max_size=16),
)
_HIDDEN = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


@cache
def real_review() -> Review:
    before = web_api_mesh()
    after = web_api_mesh()
    after["policies"].append(policy("web-db", "web", "db", methods=["GET"], paths=["/health"]))
    return build_review(
        Snapshot("origin/main", "0" * 40, "mesh.yaml", to_yaml(before).encode(), {}),
        Snapshot("HEAD", "1" * 40, "mesh.yaml", to_yaml(after).encode(), {}),
    )


def hostile_review(h: str) -> Review:
    """A review in which every piece of user text is `h`."""
    review = real_review()
    grant = Grant(h, h, "GET", h, policy=h)
    return replace(
        review,
        base=replace(review.base, label=h, commit=h),
        head=replace(review.head, label=h, mesh_path=h, problems=(Problem(None, h, h),)),
        changes=(DesiredChange("policies", h, "added", (h, h)),),
        access=AccessDiff((grant,), (grant,)),
        tests=Results(2, (Problem(Location(h, 1, 1), h, h),)),
        warnings=(ReviewWarning("wildcard-policy", h),),
        impacts=(NodeImpact(h, "changed", own_changes=(h,), reloads=(h,), certs_added=(h,)),),
        state_issues=(h,),
        state=StateReview(changed=(h,), errors=(StateError(h, h),), summary=(h,)),
        plan=PlanSummary((PlanLine("create", h, h),), note=h),
        graph=Graph((Group((h,), (h, "api")),), (Edge(h, "api", h, "gained"),)),
        notes=(h,),
    )


OUR_HTML = re.compile(r"^</?(details|summary|sub|b)( open)?>$")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=hostile)
def test_review_markdown_keeps_its_structure_whatever_the_names(h: str) -> None:
    text = review_markdown.render_markdown(hostile_review(h))
    assert not _HIDDEN.search(text)
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    html = [t.content.strip() for t in _flat(tokens) if t.type in ("html_inline", "html_block")]
    for chunk in html:  # only the tags meshops writes itself; no comment, no user tag
        for tag in re.findall(r"<[^>]*>", chunk):
            assert OUR_HTML.match(tag), (h, tag)
        assert "<!--" not in chunk
    links = [t for t in _flat(tokens) if t.type in ("link_open", "image")]
    assert links == [], h
    rendered = MarkdownIt("commonmark").enable("table").render(text)
    assert "meshops review ·" in rendered  # the last line is still shown


def _flat(tokens):  # type: ignore[no-untyped-def]
    for token in tokens:
        yield token
        yield from _flat(token.children or [])


@settings(max_examples=120, deadline=None)
@given(h=hostile, color=st.booleans())
def test_review_text_never_passes_escape_codes_to_the_terminal(h: str, color: bool) -> None:
    text = review_text.render_text(hostile_review(h), color=color)
    ours = re.sub(r"\x1b\[[0-9;]*m", "", text) if color else text
    assert "\x1b" not in ours
    assert not _HIDDEN.search(ours)


@settings(max_examples=120, deadline=None)
@given(h=hostile)
def test_plan_text_and_markdown_escape_addresses_and_reasons(h: str) -> None:
    change = Change(h, Action.UPDATE, h, None, None)
    plan = Plan(scope="node:x", changes=(change,), fingerprint="f", revision=None, created_at="")
    for text in (plan_text.render_text(plan), plan_text.render_markdown(plan)):
        assert not _HIDDEN.search(text)
    md = plan_text.render_markdown(plan)
    assert md.count("```") == 2 or "````" in md


_LABEL = r'[^"<>|\[\]]*'
MERMAID_LINE = re.compile(
    rf'^(flowchart LR|  subgraph g\d+\["{_LABEL}"\]|    id_\w*\["{_LABEL}"\]|  end'
    rf'|  id_\w*\["{_LABEL}<br/><small>on {_LABEL}</small>"\]'
    rf'|  id_\w* (-->|==>|-\.->)\|"{_LABEL}"\| id_\w*|  linkStyle [\d,]+ [^"]+)$'
)


@settings(max_examples=150, deadline=None)
@given(h=hostile)
def test_mermaid_labels_stay_inside_their_quotes(h: str) -> None:
    spread = (Group((h, "n2"), ("db",)),)  # an identity on several nodes: its own label
    graph = Graph((Group((h,), (h, "api")),), (Edge(h, "api", h, "gained"),), spread)
    for line in render_mermaid(graph).splitlines():
        assert MERMAID_LINE.match(line), (h, line)


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is installed by install.sh")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=hostile)
def test_dot_parses_and_keeps_each_label_whole(h: str) -> None:
    spread = (Group((h, "n2"), ("db",)),)
    graph = Graph((Group(("n1",), (h, "api")),), (Edge(h, "api", h),), spread)
    out = subprocess.run(
        ["dot", "-Tjson"], input=render_dot(graph), capture_output=True, text=True, check=True
    )
    parsed = json.loads(out.stdout)
    # nothing injected: the same vertices, one edge, its label whole and on one line
    vertices = [o for o in parsed["objects"] if "nodes" not in o]
    assert len(vertices) == len({h, "api", "db"})
    (edge,) = parsed["edges"]
    assert not _HIDDEN.search(edge["label"]) and "\n" not in edge["label"]
    assert set(edge) >= {"label"} and "color" not in edge


def test_a_policy_name_cannot_hide_the_rest_of_the_comment() -> None:
    text = review_markdown.render_markdown(hostile_review("x\n```\n<!--"))
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert "<!--" not in html  # shown as text (&lt;!--), never an HTML comment
    assert "&lt;!--" in html
    assert html.rstrip().endswith("</sub></p>")


def test_error_messages_quoting_command_output_cannot_drive_the_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pathlib import Path

    from meshops.cli.context import Context

    ctx = Context(Path("."), Path("mesh.yaml"), "mesh.yaml", None, Path("/"), color=False)
    ctx.error("hook.reload failed (exit 1):\n\x1b]0;pwned\x07\x1b[2Jdone\u202e")
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\u202e" not in err
    assert err == "error: hook.reload failed (exit 1):\n\\x1b]0;pwned\\x07\\x1b[2Jdone\\u202e\n"
