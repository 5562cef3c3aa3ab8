"""state/state.yaml: a lossless round trip of the public record, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshops.errors import MeshError
from meshops.resources.repo.state import (
    CertRecord,
    CRLRecord,
    NodeRecord,
    Released,
    Revoked,
    StateDoc,
    StateLayout,
    WireGuardRecord,
    load_state,
    save_state,
)

# YAML-hostile words too: they must come back as the same strings
TEXT = st.one_of(
    st.sampled_from(["yes", "no", "null", "~", "0x1f", "1e3", "- a", "a: b", "#x", "'", '"']),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1),
)
OPT = st.one_of(st.just(""), TEXT)

certs = st.builds(
    CertRecord,
    fingerprint=TEXT,
    serial=TEXT,
    not_after=TEXT,
    key_type=OPT,
    key_sha256=OPT,
    recipients=OPT,
    names=OPT,
    issuer=OPT,
)
nodes = st.builds(
    NodeRecord,
    address=TEXT,
    address6=st.none() | TEXT,
    wireguard=st.none() | st.builds(WireGuardRecord, TEXT, TEXT, TEXT),
    ca=st.none() | certs,
)
docs = st.builds(
    StateDoc,
    mesh=OPT,
    roots=st.lists(certs, max_size=2),
    crl=st.builds(
        CRLRecord,
        number=st.integers(0, 2**31),
        next_update=OPT,
        revoked=st.lists(st.builds(Revoked, TEXT, TEXT, TEXT, TEXT), max_size=3),
    ),
    nodes=st.dictionaries(TEXT, nodes, max_size=4),
    released=st.dictionaries(TEXT, st.builds(Released, TEXT, TEXT, TEXT), max_size=3),
    applied_plan=OPT,
)


@given(docs)
def test_state_round_trips_through_yaml(doc: StateDoc) -> None:
    text = doc.dump()
    assert text.startswith("# Written by `meshops apply`")
    assert StateDoc.parse(text, "state.yaml") == doc


def test_nodes_with_nothing_recorded_are_not_written() -> None:
    doc = StateDoc(nodes={"gone": NodeRecord(), "kept": NodeRecord(address="10.42.0.1")})
    assert set(StateDoc.parse(doc.dump(), "s").nodes) == {"kept"}


def test_save_and_load_use_the_contract_path(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path)
    assert load_state(layout) == StateDoc()
    doc = StateDoc(mesh="demo", nodes={"a": NodeRecord(address="10.42.0.1")})
    save_state(layout, doc)
    assert (tmp_path / "state/state.yaml").stat().st_mode & 0o777 == 0o644
    assert load_state(layout) == doc
    assert layout.node_ca_key("a") == tmp_path / "state/nodes/a/ca.key.age"
    assert StateLayout(tmp_path, ".sops").wg_key("a").name == "wg.key.sops"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 2\n", "not a meshops state file of version 1"),
        ("[1, 2]\n", "not a meshops state file"),
        ("version: 1\nnodes: {a: {ca: {bogus: 1}}}\n", "malformed state file"),
        ("version: 1\nnodes: {a: [1]}\n", "malformed state file"),
        ("version: 1\n  bad: [\n", "cannot parse state file"),
    ],
)
def test_broken_state_file_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(MeshError, match=message) as caught:
        StateDoc.parse(text, "state/state.yaml")
    assert "state/state.yaml" in str(caught.value)


def test_crl_record_revokes_each_serial_once() -> None:
    crl = CRLRecord()
    crl.revoke(Revoked("a", "1f", "t", "u"))
    crl.revoke(Revoked("a", "1f", "t2", "u2"))
    assert [r.revoked_at for r in crl.revoked] == ["t"]


def test_the_parse_cache_is_used_only_for_the_same_bytes(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    layout = StateLayout(tmp_path)
    doc = StateDoc(mesh="demo", nodes={"a": NodeRecord(address="10.42.0.1")})
    save_state(layout, doc)
    cache = tmp_path / ".git/meshops-state-cache.json"
    assert cache.exists()
    assert load_state(layout) == doc
    # a hand edit (or a checkout) changes the bytes: the cache is ignored, then refreshed
    text = layout.state_file.read_text().replace("10.42.0.1", "10.42.0.2")
    layout.state_file.write_text(text)
    assert load_state(layout).nodes["a"].address == "10.42.0.2"
    cache.write_text("{not json")
    assert load_state(layout).nodes["a"].address == "10.42.0.2"
    assert load_state(layout).nodes["a"].address == "10.42.0.2"


def test_a_node_crl_is_named_under_state_as_its_path_says(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path)
    for node in ("web-1", "db.eu-2", "a"):
        path = layout.node_crl(node)
        assert layout.node_crl_name(node) == path.relative_to(layout.dir).as_posix()
