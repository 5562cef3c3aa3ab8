"""The loader's and field types' fast paths agree with the slow, obvious versions.

`is_ipv4` replaces `ipaddress.IPv4Address` per endpoint, the bech32 checksum uses a
precomputed table, and a document without anchors is depth-checked in one pass: each
must accept and refuse exactly what the straightforward version does.
"""

from __future__ import annotations

import ipaddress

import pytest
import yaml
from factories import age_recipient
from hypothesis import given
from hypothesis import strategies as st

from meshops.errors import ValidationFailed
from meshops.model.loader import MAX_DEPTH, _Converter, parse_yaml
from meshops.model.types import _BECH32, _bech32_polymod, _bech32_valid, is_ipv4


def reference_is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def reference_polymod(values: list[int]) -> int:
    """BIP-173's checksum exactly as the specification writes it."""
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


dotted = st.lists(st.text(alphabet="0123456789", max_size=4), min_size=1, max_size=6).map(".".join)


@given(st.one_of(dotted, st.text(alphabet="0123456789.", max_size=18), st.text(max_size=18)))
def test_is_ipv4_agrees_with_ipaddress(text: str) -> None:
    assert is_ipv4(text) == reference_is_ipv4(text)


@pytest.mark.parametrize(
    "text", ["192.0.2.11", "0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3.256", "1.2.3", ""]
)
def test_is_ipv4_on_the_edges(text: str) -> None:
    assert is_ipv4(text) == reference_is_ipv4(text)


@given(st.lists(st.integers(min_value=0, max_value=31), max_size=90))
def test_table_bech32_checksum_equals_the_specification(values: list[int]) -> None:
    assert _bech32_polymod(values) == reference_polymod(values)


@given(st.integers(min_value=4, max_value=61), st.sampled_from(_BECH32))
def test_any_one_character_change_breaks_an_age_recipient(at: int, char: str) -> None:
    good = age_recipient(0)
    assert _bech32_valid(good)
    bad = good[:at] + char + good[at + 1 :]
    assert _bech32_valid(bad) == (bad == good)


def _nested(depth: int, as_list: bool) -> str:
    text = "v"
    for i in range(depth):
        text = f"[{text}]" if as_list else f"{{k{i}: {text}}}"
    return text


def _check_error(text: str, *, aliases: bool) -> str | None:
    converter = _Converter("m.yaml")
    try:
        converter.check_size(yaml.compose(text, Loader=yaml.CSafeLoader), aliases=aliases)
    except ValidationFailed as exc:
        return str(exc.problems[0])
    return None


@given(st.integers(min_value=0, max_value=MAX_DEPTH + 5), st.booleans(), st.integers(0, 3))
def test_tree_check_refuses_what_the_alias_check_refuses_at_the_same_place(
    depth: int, as_list: bool, siblings: int
) -> None:
    parts = [_nested(depth, as_list)] + [
        _nested(depth + 1 - i, not as_list) for i in range(siblings)
    ]
    text = "top: [" + ", ".join(parts) + "]\n"
    assert _check_error(text, aliases=False) == _check_error(text, aliases=True)


def test_a_document_without_anchors_still_refuses_deep_nesting_with_location() -> None:
    text = "a: " + "[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2) + "\n"
    with pytest.raises(ValidationFailed) as caught:
        parse_yaml(text, "m.yaml")
    assert str(caught.value.problems[0]).startswith("m.yaml:1:")
    assert "nesting deeper than" in str(caught.value.problems[0])


def test_positions_are_kept_as_pairs_and_located_on_demand() -> None:
    doc = parse_yaml("a:\n  b: [1, {c: x}]\n", "m.yaml")
    assert doc.spots[("a", "b", 1, "c")] == (2, 11)
    assert str(doc.locate(("a", "b", 1, "c", "missing"))) == "m.yaml:2:11"
    assert str(doc.marks[("a", "b")]) == "m.yaml:2:3"
    assert doc.locate(("zzz",)) == doc.marks[()]
