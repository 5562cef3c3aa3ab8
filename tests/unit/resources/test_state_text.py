"""state.yaml's own writer: any YAML loader reads back exactly the data written, and it
writes what PyYAML's block style would (so upgrading changes no byte of state.yaml).
Its own reader reads back exactly what it wrote, and of any other text either what a
YAML loader reads or nothing (the loader then reads it)."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from meshops.resources.repo.state_text import emit, read

TRICKY = [
    "", "yes", "No", "on", "null", "~", "true", "1", "-1", "0x1f", "1_000", "1:20", "1e3",
    ".5", ".inf", "2026-11-23", "2026-11-23T17:00:00+00:00", "10.42.0.1", "10.42.0.1/32",
    "sha256:ab", "a: b", "a #b", "#x", "- x", "x:", "'q'", 'say "hi"', " lead", "trail ",
    "multi\nline", "tab\there", "é", "<<", "=", "@x", "!x", "&x", "*x", "{}", "[]", "%x",
]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(TRICKY), st.text(max_size=20)
)
keys = st.one_of(st.sampled_from(TRICKY), st.text(min_size=0, max_size=12))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400)
@given(st.dictionaries(keys, values, max_size=6))
def test_every_loader_reads_back_what_was_written(data: dict[str, Any]) -> None:
    text = emit(data)
    assert yaml.load(text, Loader=yaml.CSafeLoader) == (data or {})
    assert yaml.safe_load(text) == (data or {})


@settings(max_examples=400)
@given(st.dictionaries(keys, values, max_size=6))
def test_the_reader_reads_back_exactly_what_was_written(data: dict[str, Any]) -> None:
    assert read("# a header\n" + emit(data)) == (data or {})


floats = st.floats(allow_nan=False) | st.sampled_from([1.5, 1e-05, 3600.0])
styles = st.sampled_from(
    [
        {"default_flow_style": False},
        {"default_flow_style": True},
        {"default_style": "'"},
        {"default_style": '"'},
        {"indent": 4},
    ]
)


@settings(max_examples=400)
@given(st.dictionaries(keys, st.one_of(values, floats, st.lists(floats, max_size=2))), styles)
def test_the_reader_never_reads_other_text_otherwise_than_a_loader(
    data: dict[str, Any], style: dict[str, Any]
) -> None:
    text = yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False, width=200, **style)
    assert read(text) in (None, yaml.load(text, Loader=yaml.CSafeLoader))


@given(st.text(alphabet=" -:#'\"ab1.\n{}[]\\x", max_size=60))
def test_the_reader_never_misreads_arbitrary_text(text: str) -> None:
    try:
        loaded = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError:
        loaded = "(not YAML)"
    assert read(text) in (None, loaded)


def test_a_state_document_is_written_as_pyyaml_writes_it() -> None:
    data = {
        "version": 1,
        "mesh": "demo",
        "ca": {"roots": [{"fingerprint": "sha256:ab", "not_after": "2036-11-28T22:36:56+00:00",
                          "serial": "61df0a", "hold": 3600.0}], "rotation": None},
        "crl": {"number": 1, "revoked": []},
        "nodes": {"node-1": {"address": "10.42.0.1", "wireguard": {"public_key": "Ab+/c="}},
                  "yes": {}},
        "released": {},
    }  # fmt: skip
    expected = yaml.dump(
        data, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False, width=200
    )
    assert emit(data) == expected
