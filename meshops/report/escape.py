"""Escaping for what people read: terminals, markdown comments, Mermaid and DOT (pure).

mesh.yaml refuses control characters and restricts names, but a renderer must not
rely on that: review renders old revisions, errors quote what commands printed, and
status shows what the last apply recorded. Every renderer passes user text through
one of these, so no text can clear a terminal, close a code fence, open an HTML
comment that hides the rest of a pull-request comment, or break a graph.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# C0 and C1 controls, DEL, and the Unicode format and separator characters that
# reorder or hide text (bidi overrides, zero-width, line/paragraph separators, BOM)
_HIDDEN = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]"
)
_HIDDEN_BUT_NEWLINE = re.compile(_HIDDEN.pattern.replace("\x00-\x1f", "\x00-\x09\x0b-\x1f"))


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every control and invisible formatting character written as an
    escape (`\\x1b`, `\\u202e`): safe to print on a terminal, on one line."""
    return _HIDDEN.sub(_shown, text)


def visible_lines(text: str) -> str:
    """Like `visible`, keeping line breaks: for messages of several lines."""
    return _HIDDEN_BUT_NEWLINE.sub(_shown, text)


# punctuation that means something inline to CommonMark or GitHub (code, emphasis,
# links and images, HTML and comments, entities, tables, strikethrough, mentions,
# math); a backslash makes each literal, and GitHub renders the character itself
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~&!@$])")


def md_text(text: str) -> str:
    """User text inside markdown prose (a list item, a table cell, a heading)."""
    return _MARKDOWN.sub(r"\\\1", visible(text))


def md_code(text: str) -> str:
    """User text as an inline code span: a fence longer than any backtick run in it."""
    text = visible(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_fence(lines: Sequence[str], lang: str = "") -> list[str]:
    """A fenced code block around user text: its fence longer than any backtick or
    tilde run in it, so no line can close it early."""
    shown = [visible(line) for line in lines]
    longest = max((len(run) for line in shown for run in re.findall(r"`+", line)), default=0)
    ticks = "`" * max(3, longest + 1)
    return [f"{ticks}{lang}", *shown, ticks]


def mermaid_label(text: str) -> str:
    """Text inside a quoted Mermaid label: anything but plain characters becomes an
    entity code (`#35;`), so no quote, bracket, pipe or HTML escapes the label."""
    return "".join(c if c.isalnum() or c in " ,./:*_-" else f"#{ord(c)};" for c in visible(text))


def dot_string(text: str) -> str:
    """Text inside a double-quoted DOT string."""
    return visible(text).replace("\\", "\\\\").replace('"', '\\"')
