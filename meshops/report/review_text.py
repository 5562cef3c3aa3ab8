"""`meshops review --format text`: for a terminal; ANSI colour only when asked."""

from __future__ import annotations

from meshops.gitops.review import Review
from meshops.report.escape import visible
from meshops.report.review_common import access_lines, grouped_impacts, headline, names

_COLORS = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2"}


def render_text(review: Review, *, color: bool = False) -> str:
    def paint(text: str, style: str) -> str:
        text = visible(text)  # user text never carries its own escape codes
        return f"\x1b[{_COLORS[style]}m{text}\x1b[0m" if color else text

    out: list[str] = []

    def section(title: str) -> None:
        out.append("")
        out.append(paint(title, "bold"))

    base, head = (
        side.label if side.commit is None else f"{side.label} ({side.commit[:12]})"
        for side in (review.base, review.head)
    )
    mark = paint("OK", "green") if review.ok else paint("FAILED", "red")
    out.append(f"meshops review {visible(base)} -> {visible(head)}: {mark}")
    out.append(visible(headline(review)))
    for note in review.notes:
        out.append(paint(f"note: {note}", "dim"))
    if review.head.problems:
        section(f"{review.head.mesh_path} does not validate at {review.head.label}")
        out += [paint(f"  {p}", "red") for p in review.head.problems]
    if review.state.errors:
        section("state/ changed outside meshops apply")
        out += [paint(f"  {e.message}", "red") for e in review.state.errors]
    if review.enrolments.errors:
        section("Enrolment requests refused")
        out += [paint(f"  {p}", "red") for p in review.enrolments.errors]
    if review.tests.failures:
        section("Policy tests failed")
        out += [paint(f"  {p}", "red") for p in review.tests.failures]
    if review.warnings:
        section("Warnings")
        out += [paint(f"  ! {w.message}", "yellow") for w in review.warnings]
    if not review.access.empty:
        section("Access")
        lines = access_lines(review)
        out += [paint(f"  {line}", "green" if line[0] == "+" else "red") for line in lines]
    if review.changes:
        section("Desired-state changes")
        for change in review.changes:
            out.append(visible(f"  {change.address} {change.action}"))
            out += [visible(f"      {detail}") for detail in change.details]
    if review.impacts:
        section("Per-node impact")
        for nodes, status, parts in grouped_impacts(review.impacts):
            out.append(visible(f"  {names(nodes)} ({status})"))
            out += [visible(f"      {part}") for part in parts]
    if review.enrolments.summary:
        section("Enrolments (host-held keys, signatures verified)")
        out += [visible(f"  {line}") for line in review.enrolments.summary]
    if review.state.summary:
        section("state/ changes (verified: repo apply's signed output)")
        out += [visible(f"  {line}") for line in review.state.summary]
    if review.state_issues:
        section("state/ does not match mesh.yaml")
        out += [paint(f"  {issue}", "yellow") for issue in review.state_issues]
    if review.plan is not None:
        section("Plan (repo scope)")
        if review.plan.note:
            out.append(visible(f"  {review.plan.note}"))
        for line in review.plan.lines:
            style = {"create": "green", "destroy": "red"}.get(line.action, "yellow")
            out.append(paint(f"  {line.symbol} {line.address}  # {line.reason}", style))
        if not review.plan.lines:
            out.append("  no changes")
    return "\n".join(out) + "\n"
