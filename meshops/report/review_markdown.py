"""`meshops review --format markdown`: a pull-request comment.

Summary first (verdict, one-line facts, warnings, failures), then details in
collapsible sections: access gained and lost, desired-state changes, a Mermaid graph
of the access change, per-node impact, state/ mismatches and the plan in a ```diff
fence. GitHub refuses comments over 65,536 characters, so the comment is rendered with
ever shorter lists until it fits under `limit`, each trimmed list saying so.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshops.gitops.review import Review, RevisionInfo
from meshops.report.escape import md_code, md_fence, md_text
from meshops.report.graph import render_mermaid
from meshops.report.review_common import access_lines, grouped_impacts, headline, names, plural

LIMIT = 65_000
_CAPS: tuple[int | None, ...] = (None, 1000, 300, 100, 30, 10, 3)
GRAPH_MAX_EDGES = 150  # Mermaid renders up to 500 edges, but nobody reads a hairball
GRAPH_MAX_CHARS = 20_000
_TRIM_NOTE = (
    "trimmed to keep this comment under {limit:,} characters; run "
    "`meshops review --format text` for the whole list"
)


def _details(summary: str, body: list[str], *, open_: bool = False) -> list[str]:
    return [
        f"<details{' open' if open_ else ''}><summary>{summary}</summary>",
        "",
        *body,
        "",
        "</details>",
        "",
    ]


class _Renderer:
    def __init__(self, review: Review, cap: int | None, limit: int, graph: bool):
        self.review = review
        self.cap = cap
        self.limit = limit
        self.graph = graph
        self.trimmed = False

    def take(self, items: Sequence[str]) -> list[str]:
        if self.cap is None or len(items) <= self.cap:
            return list(items)
        self.trimmed = True
        return list(items[: self.cap])

    def more(self, total: int, shown: int) -> list[str]:
        if shown >= total:
            return []
        return ["", f"… and {total - shown:,} more ({_TRIM_NOTE.format(limit=self.limit)})"]

    def render(self) -> str:
        r = self.review
        out: list[str] = []
        verdict = "✅" if r.ok else "❌"
        base, head = _side(r.base), _side(r.head)
        out += [f"## {verdict} meshops review: {base} → {head}", ""]
        out += [f"**{md_text(headline(r))}**", ""]
        out += [f"> {md_text(note)}" for note in r.notes]
        if r.notes:
            out.append("")
        out += self.problems()
        out += self.state_errors()
        out += self.enrolment_errors()
        out += self.warnings()
        out += self.access()
        out += self.changes()
        out += self.graph_section()
        out += self.impacts()
        out += self.enrolments()
        out += self.state_changes()
        out += self.state()
        out += self.plan()
        out.append(f"<sub>meshops review · {md_code(r.head.mesh_path)}</sub>")
        return "\n".join(out) + "\n"

    def problems(self) -> list[str]:
        r = self.review
        out: list[str] = []
        if r.head.problems:
            lines = [str(p) for p in r.head.problems]
            shown = self.take(lines)
            out += [
                f"### ❌ {md_code(r.head.mesh_path)} does not validate at {md_code(r.head.label)}"
            ]
            out += ["", *md_fence(shown), *self.more(len(lines), len(shown)), ""]
        if r.tests.failures:
            lines = [str(p) for p in r.tests.failures]
            shown = self.take(lines)
            out += [f"### ❌ {plural(len(lines), 'policy test')} failed", ""]
            out += [*md_fence(shown), *self.more(len(lines), len(shown)), ""]
        return out

    def warnings(self) -> list[str]:
        items = [w.message for w in self.review.warnings]
        if not items:
            return []
        shown = self.take(items)
        out = ["### ⚠️ Warnings", ""]
        out += [f"- {md_text(w)}" for w in shown]
        return [*out, *self.more(len(items), len(shown)), ""]

    def access(self) -> list[str]:
        diff = self.review.access
        if diff.empty:
            return []
        lines = access_lines(self.review)
        shown = self.take(lines)
        gained = len(diff.gained) + len(diff.ports_gained)
        lost = len(diff.lost) + len(diff.ports_lost)
        summary = (
            f"Access: <b>+{gained}</b> gained, <b>-{lost}</b> lost "
            "(caller → callee, method and path, or L4 port)"
        )
        body = [*md_fence(shown, "diff"), *self.more(len(lines), len(shown))]
        return _details(summary, body, open_=len(lines) <= 30)

    def changes(self) -> list[str]:
        changes = self.review.changes
        if not changes:
            return []
        items = []
        for change in changes:
            item = f"- {md_code(change.address)} **{md_text(change.action)}**"
            details = self.take(list(change.details)) if change.details else []
            item += "".join(f"\n  - {md_code(d)}" for d in details)
            if len(details) < len(change.details):
                item += f"\n  - … +{len(change.details) - len(details)} more"
            items.append(item)
        shown = self.take(items)
        body = [*shown, *self.more(len(items), len(shown))]
        return _details(f"Desired-state changes ({len(changes)})", body, open_=len(items) <= 10)

    def graph_section(self) -> list[str]:
        graph = self.review.graph
        if graph is None or not graph.edges:
            return []
        marked = len(graph.edges) - graph.count("same")
        title = (
            f"Access graph ({plural(len(graph.edges), 'edge')}; {graph.count('gained')} "
            f"gained, {graph.count('lost')} lost, {graph.count('changed')} changed)"
        )
        text = render_mermaid(graph)
        if not self.graph or len(graph.edges) > GRAPH_MAX_EDGES or len(text) > GRAPH_MAX_CHARS:
            why = f"omitted: {plural(len(graph.edges), 'edge')} is too many to draw here"
            return _details(title, [f"{why}; run `meshops graph` for the whole graph."])
        legend = (
            "Thick green: gained; dashed red: lost; amber: what is allowed changed."
            if marked
            else "No caller gains or loses a callee."
        )
        return _details(title, [legend, "", *md_fence(text.rstrip("\n").splitlines(), "mermaid")])

    def impacts(self) -> list[str]:
        impacts = self.review.impacts
        if not impacts:
            return []
        rows = []
        for nodes, status, parts in grouped_impacts(impacts):
            label = names(nodes, 8) + (f" ({len(nodes)} nodes)" if len(nodes) > 1 else "")
            rows.append(f"| {md_text(label)} | {status} | {md_text('; '.join(parts))} |")
        shown = self.take(rows)
        body = ["| node | status | what happens there |", "| --- | --- | --- |", *shown]
        body += self.more(len(rows), len(shown))
        return _details(f"Per-node impact ({plural(len(impacts), 'node')})", body)

    def state_errors(self) -> list[str]:
        errors = [e.message for e in self.review.state.errors]
        if not errors:
            return []
        shown = self.take(errors)
        out = [f"### ❌ state/ changed outside meshops apply ({len(errors)})", ""]
        out += [f"- {md_code(e)}" for e in shown]
        return [*out, *self.more(len(errors), len(shown)), ""]

    def enrolment_errors(self) -> list[str]:
        errors = [str(p) for p in self.review.enrolments.errors]
        if not errors:
            return []
        shown = self.take(errors)
        out = [f"### ❌ Enrolment requests refused ({len(errors)})", ""]
        out += [f"- {md_code(e)}" for e in shown]
        return [*out, *self.more(len(errors), len(shown)), ""]

    def enrolments(self) -> list[str]:
        summary = list(self.review.enrolments.summary)
        if not summary:
            return []
        shown = self.take(summary)
        body = [f"- {md_text(line)}" for line in shown] + self.more(len(summary), len(shown))
        title = f"Enrolments: host-held keys, signatures verified ({len(summary)})"
        return _details(title, body, open_=len(summary) <= 10)

    def state_changes(self) -> list[str]:
        summary = list(self.review.state.summary)
        if not summary:
            return []
        shown = self.take(summary)
        body = [f"- {md_text(line)}" for line in shown] + self.more(len(summary), len(shown))
        title = f"state/ changes, verified as repo apply's signed output ({len(summary)})"
        return _details(title, body, open_=len(summary) <= 10)

    def state(self) -> list[str]:
        issues = self.review.state_issues
        if not issues:
            return []
        shown = self.take(list(issues))
        body = [f"- {md_text(issue)}" for issue in shown] + self.more(len(issues), len(shown))
        return _details(f"⚠️ state/ does not match mesh.yaml ({len(issues)})", body)

    def plan(self) -> list[str]:
        plan = self.review.plan
        if plan is None:
            return []
        lines = [f"{line.symbol} {line.address}  # {line.reason}" for line in plan.lines]
        shown = self.take(lines)
        counts = ", ".join(
            f"{plan.count(a)} to {a}"
            for a in ("create", "update", "replace", "destroy")
            if plan.count(a)
        )
        body = [md_text(plan.note), ""] if plan.note else []
        body += [*md_fence(shown or ["no changes"], "diff"), *self.more(len(lines), len(shown))]
        return _details(f"Plan, repo scope ({counts or 'no changes'})", body)


def render_markdown(review: Review, *, limit: int = LIMIT) -> str:
    """The comment, always at most `limit` characters."""
    for cap in _CAPS:
        text = _Renderer(review, cap, limit, graph=cap is None or cap >= 100).render()
        if len(text) <= limit:
            return text
    note = f"\n\n… comment cut here ({_TRIM_NOTE.format(limit=limit)})\n"
    return text[: limit - len(note)] + note


def _side(side: RevisionInfo) -> str:
    """`main` (abc123def456), or the working tree as itself (it has no commit)."""
    if side.commit is None:
        return md_code(side.label)
    return f"{md_code(side.label)} ({md_text(side.commit[:12])})"
