"""Plans for people: Terraform's symbols, an address and a reason per line.

Plain, stable text in pipes; the same text with colour on a terminal.
"""

from __future__ import annotations

from collections.abc import Collection

from meshops.engine.plan import Action, Change, Plan
from meshops.report.escape import md_fence, md_text, visible

_COLOURS = {
    Action.CREATE: "32",  # green
    Action.UPDATE: "33",  # yellow
    Action.REPLACE: "35",  # magenta
    Action.DELETE: "31",  # red
}


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def change_line(change: Change, *, color: bool = False) -> str:
    symbol = change.action.symbol.rjust(3)
    head = _paint(f"{symbol} {visible(change.address)}", _COLOURS.get(change.action, "0"), color)
    notes = []
    if change.sensitive:
        notes.append("(sensitive)")
    if change.impact.value not in ("none",):
        notes.append(f"[{change.impact.value}]")
    tail = f"  {' '.join(notes)}" if notes else ""
    reason = f": {visible(change.reason)}" if change.reason else ""
    return f"{head}{reason}{tail}"


def summary_line(plan: Plan) -> str:
    counts = plan.counts()
    return (
        f"Plan: {counts['add']} to add, {counts['change']} to change, "
        f"{counts['destroy']} to destroy."
    )


def render_text(plan: Plan, *, color: bool = False, met: Collection[str] = ()) -> str:
    """The plan for a terminal or a pipe; needs in `met` (root privileges when the
    reader runs as root) are not repeated on the `Needs:` line."""
    scope = "repository" if plan.scope == "repo" else plan.scope.replace("node:", "node ")
    if not plan.has_changes:
        return f"No changes. The {scope} matches mesh.yaml.\n"
    lines = [f"meshops will perform the following actions on the {scope}:", ""]
    lines += [change_line(c, color=color) for c in plan.actionable]
    lines += ["", summary_line(plan)]
    needs = [need for need in plan.needs() if need not in met]
    if needs:
        lines.append(visible("Needs: " + "; ".join(needs)))
    return "\n".join(lines) + "\n"


def render_markdown(plan: Plan) -> str:
    scope = "repository" if plan.scope == "repo" else plan.scope.replace("node:", "node ")
    if not plan.has_changes:
        return f"**No changes.** The {scope} matches mesh.yaml.\n"
    body = [change_line(c).lstrip() for c in plan.actionable]
    parts = [f"### meshops plan ({scope})", "", *md_fence(body, "diff"), "", summary_line(plan)]
    needs = plan.needs()
    if needs:
        parts.append("")
        parts.append(md_text("Needs: " + "; ".join(needs)))
    return "\n".join(parts) + "\n"
