"""The managed /etc/hosts block: only the block changes, rendering is idempotent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshops.errors import MeshError
from meshops.providers.hosts import BEGIN, END, read_block, remove_block, render

DEBIAN_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
ENTRIES = [("10.42.0.11", ("web-1.mesh.demo.internal", "web-1")), ("10.42.0.12", ("api-1",))]

# Text that is not a marker line: any characters, including other line separators.
outside_line = st.text(max_size=40).filter(lambda s: s.strip() not in (BEGIN, END))
outside_text = st.lists(
    st.tuples(outside_line, st.sampled_from(["\n", "\r\n", ""])), max_size=6
).map(lambda parts: "".join(line + end for line, end in parts))
names = st.from_regex(r"[a-z][a-z0-9-]{0,12}(\.[a-z0-9]{1,8}){0,2}", fullmatch=True)
entries = st.lists(
    st.tuples(st.ip_addresses().map(str), st.lists(names, min_size=1, max_size=3).map(tuple)),
    max_size=5,
)


def test_block_is_appended_after_existing_lines_with_trailing_newline_kept() -> None:
    out = render(DEBIAN_HOSTS, ENTRIES)
    assert out.startswith(DEBIAN_HOSTS)
    assert out.endswith(f"{END}\n")
    assert read_block(out) == ENTRIES


def test_file_without_trailing_newline_stays_without_one() -> None:
    out = render("127.0.0.1 localhost", ENTRIES)
    assert out.startswith("127.0.0.1 localhost\n" + BEGIN)
    assert out.endswith(END)


def test_only_the_block_is_replaced_in_the_middle_of_a_file() -> None:
    before = "# top\n127.0.0.1 localhost\n"
    after = "\n# custom\n192.0.2.5 printer # office\n"
    text = before + f"{BEGIN}\n10.1.1.1 old\n{END}\n" + after
    out = render(text, ENTRIES)
    assert out.startswith(before)
    assert out.endswith(END + "\n" + after)
    assert read_block(out) == ENTRIES


def test_file_without_block_reads_as_none() -> None:
    assert read_block(DEBIAN_HOSTS) is None


def test_empty_entries_keep_an_empty_block_and_remove_block_drops_it() -> None:
    out = render(DEBIAN_HOSTS, [])
    assert read_block(out) == []
    assert remove_block(out) == DEBIAN_HOSTS


@pytest.mark.parametrize(
    "text",
    [
        f"{BEGIN}\n{BEGIN}\n{END}\n",
        f"{BEGIN}\n1.2.3.4 a\n",
        f"{END}\n",
        f"{END}\n{BEGIN}\n",
        f"{BEGIN}\n{END}\n{BEGIN}\n{END}\n",
    ],
)
def test_broken_markers_are_refused_with_the_lines_named(text: str) -> None:
    with pytest.raises(MeshError, match="markers are broken") as info:
        render(text, ENTRIES)
    assert "at lines 1" in info.value.message
    with pytest.raises(MeshError):
        read_block(text)


def test_invalid_ip_or_name_is_refused() -> None:
    with pytest.raises(MeshError, match="not an IP address"):
        render("", [("web-1", ("web-1",))])
    with pytest.raises(MeshError, match="not a valid host name"):
        render("", [("10.0.0.1", ("bad name",))])


@given(outside_text, entries)
def test_text_outside_an_appended_block_is_never_changed(text: str, new: list) -> None:
    out = render(text, new)
    assert out.startswith(text)
    assert read_block(out) == [(str(ip), tuple(ns)) for ip, ns in new]
    assert remove_block(out).startswith(text)


@given(outside_text, outside_text, entries, entries)
def test_text_around_an_existing_block_is_never_changed(
    before: str, after: str, old: list, new: list
) -> None:
    if before and not before.endswith(("\n", "\r\n")):
        before += "\n"
    text = render(before, old) + ("\n" if after else "") + after
    head, _, _ = text.partition(BEGIN)
    tail = text[text.index(END) + len(END) :]
    out = render(text, new)
    assert out.startswith(head)
    assert out.endswith(tail)
    assert read_block(out) == new


@given(outside_text, entries)
def test_rendering_is_idempotent(text: str, new: list) -> None:
    once = render(text, new)
    assert render(once, new) == once


@given(outside_text)
def test_file_without_block_keeps_its_trailing_newline_state(text: str) -> None:
    out = render(text, ENTRIES)
    if text:
        assert out.splitlines(keepends=True)[-1].endswith(END) == (
            text.splitlines()[-1] == text.splitlines(keepends=True)[-1]
        )
