"""The user documentation lives in the repository and keeps up with the code.

Every link in README.md and docs/ leads to a file (and heading) that exists, docs/README.md
lists every doc, nothing tracked points at notes outside the repository, and
docs/commands.md names every command, option and exit code the CLI really has.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshops.cli.exitcodes import ExitCode
from meshops.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
MARKDOWN = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
COMMANDS_MD = DOCS / "commands.md"

# Spelt in pieces, so this file does not hold what it looks for.
OUTSIDE_NOTES = ("../" + "shared", "shared/" + "CONTRACT", "DESIGN" + ".md", "CONTRACT" + ".md")

_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"(?<!\\)\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def prose_lines(text: str) -> Iterator[str]:
    """The lines of a markdown file outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def links(path: Path) -> list[str]:
    found = []
    for line in prose_lines(path.read_text()):
        found += _LINK.findall(_CODE_SPAN.sub("", line))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path.read_text()):
        match = re.match(r"#{1,6}\s+(.*)", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def relative(target: str) -> bool:
    return not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(doc: Path) -> None:
    broken = []
    for target in filter(relative, links(doc)):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)


def test_the_link_checker_sees_links_and_anchors() -> None:
    """The checks above would pass vacuously if links or headings were never found."""
    assert "docs/README.md" in links(REPO / "README.md")
    assert "commands.md#exit-codes" in links(DOCS / "json.md")
    assert {"exit-codes", "environment-variables"} <= anchors(COMMANDS_MD)
    assert slug("Commands from mesh.yaml") == "commands-from-meshyaml"
    assert slug("/var/lib/meshops") == "varlibmeshops"


def test_docs_readme_lists_every_doc_and_readme_links_it() -> None:
    listed = {Path(t.partition("#")[0]).name for t in links(DOCS / "README.md") if relative(t)}
    docs = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    assert docs <= listed, f"docs/README.md does not list {sorted(docs - listed)}"
    assert "docs/README.md" in links(REPO / "README.md")


def test_nothing_tracked_points_at_notes_outside_the_repository() -> None:
    files = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.split(b"\0")
    assert len(files) > 100  # the repository's files, not an empty listing
    hits = []
    for name in filter(None, files):
        path = REPO / name.decode()
        if not path.is_file():  # deleted in the work tree
            continue
        data = path.read_bytes()
        hits += [f"{name.decode()}: {s}" for s in OUTSIDE_NOTES if s.encode() in data]
    assert not hits, "user docs live in docs/: " + ", ".join(hits)


def commands(
    parser: argparse.ArgumentParser, prefix: str = "meshops"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command and sub-command of the real parser, with its own parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from commands(sub, f"{prefix} {name}")


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {
        opt
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    }


def test_commands_md_names_every_command_and_option_of_the_parser() -> None:
    text = COMMANDS_MD.read_text()
    parser = build_parser()
    found = list(commands(parser))
    names = [name for name, _ in found]
    assert {"meshops plan", "meshops host init", "meshops ca import"} <= set(names)
    missing = [name for name in names if f"`{name}" not in text]
    assert not missing, f"docs/commands.md does not document {missing}"

    def said(opt: str) -> bool:  # in a usage block or the prose, as a whole option
        return re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text) is not None

    undocumented = sorted(
        f"{name} {opt}" for name, sub in found for opt in options(sub) if not said(opt)
    )
    undocumented += [opt for opt in sorted(options(parser)) if not said(opt)]
    assert not undocumented, f"docs/commands.md does not mention {undocumented}"


def test_commands_md_lists_every_exit_code_the_cli_defines() -> None:
    text = COMMANDS_MD.read_text()
    missing = [
        f"{code.value} ({code.name})"
        for code in ExitCode
        if not re.search(rf"^\| `{code.value}` \| `{code.name}` \|", text, re.MULTILINE)
    ]
    assert not missing, f"docs/commands.md's exit code table lacks {missing}"
