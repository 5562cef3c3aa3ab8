"""state.yaml's own writer: any YAML loader reads back exactly the data written, and it
writes what PyYAML's block style would (so upgrading changes no byte of state.yaml)."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from meshops.resources.repo.state_text import emit

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
