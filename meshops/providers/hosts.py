"""The managed block of /etc/hosts: one block between marker lines, nothing else
touched.

`render` is pure text in, text out: everything outside the block is kept byte for
byte, and the file keeps its trailing-newline state. Writing the result is the
caller's job (through `write_atomic`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from meshops.errors import MeshError
from meshops.model.types import is_ipv4

BEGIN = "# BEGIN meshops (managed, do not edit)"
END = "# END meshops"

HostsEntry = tuple[str, tuple[str, ...]]


def read_block(text: str, *, where: str = "/etc/hosts") -> list[HostsEntry] | None:
    """The entries in the managed block, or None when the file has no block."""
    span = _find_block(text, where=where)
    if span is None:
        return None
    lines = text.splitlines(keepends=True)
    entries: list[HostsEntry] = []
    for line in lines[span[0] + 1 : span[1]]:
        content = line.split("#", 1)[0].split()
        if len(content) >= 2:
            entries.append((content[0], tuple(content[1:])))
    return entries


def render(
    text: str, entries: Sequence[tuple[str, Sequence[str]]], *, where: str = "/etc/hosts"
) -> str:
    """`text` with the managed block replaced by `entries` (appended when absent)."""
    body = _block_lines(entries, where=where)
    span = _find_block(text, where=where)
    lines = text.splitlines(keepends=True)
    if span is None:
        if not text:
            return body + "\n"
        ends_with_newline = _terminator(lines[-1]) != ""
        separator = "" if ends_with_newline else "\n"
        return text + separator + body + ("\n" if ends_with_newline else "")
    start, end = span
    ending = _terminator(lines[end])
    return "".join(lines[:start]) + body + ending + "".join(lines[end + 1 :])


def remove_block(text: str, *, where: str = "/etc/hosts") -> str:
    """`text` without the managed block (unchanged when there is none)."""
    span = _find_block(text, where=where)
    if span is None:
        return text
    lines = text.splitlines(keepends=True)
    return "".join(lines[: span[0]]) + "".join(lines[span[1] + 1 :])


def _terminator(line: str) -> str:
    """The line's ending as str.splitlines sees it ("" for an unterminated last line)."""
    content = line.splitlines()
    return line[len(content[0]) :] if content else line


def _block_lines(entries: Sequence[tuple[str, Sequence[str]]], *, where: str) -> str:
    """The block without the END line's line ending (the caller decides that)."""
    rows = [BEGIN]
    for ip, names in entries:
        rows.append(f"{_check_ip(ip, where)}\t{' '.join(_check_name(n, where) for n in names)}")
    rows.append(END)
    return "\n".join(rows)


def _find_block(text: str, *, where: str) -> tuple[int, int] | None:
    """(begin line index, end line index) of the block; errors on broken markers."""
    begins: list[int] = []
    ends: list[int] = []
    for number, line in enumerate(text.splitlines()):
        stripped = line.strip()
        if stripped == BEGIN:
            begins.append(number)
        elif stripped == END:
            ends.append(number)
    if not begins and not ends:
        return None
    if len(begins) == 1 and len(ends) == 1 and begins[0] < ends[0]:
        return begins[0], ends[0]
    lines = ", ".join(str(n + 1) for n in sorted(begins + ends))
    raise MeshError(
        f"{where}: the meshops block markers are broken "
        f"({len(begins)} BEGIN and {len(ends)} END marker lines, at lines {lines})",
        hint=f"edit {where} so it holds at most one '{BEGIN}' line followed by one "
        f"'{END}' line, or remove both; meshops will rewrite the block",
    )


def _check_ip(ip: str, where: str) -> str:
    if is_ipv4(ip):  # the common case, already canonical
        return ip
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        raise MeshError(f"{where}: {ip!r} is not an IP address") from None


_NOT_IN_A_NAME = re.compile(r"[\s#]")


def _check_name(name: str, where: str) -> str:
    if not name or _NOT_IN_A_NAME.search(name):
        raise MeshError(f"{where}: {name!r} is not a valid host name")
    return name
