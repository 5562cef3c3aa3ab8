"""`revalidate` (model/reload.py): a mesh.yaml edited inside node entries gives exactly
the mesh, positions and problems that validating it from scratch gives, or None."""

from __future__ import annotations

from typing import Any

import pytest
from factories import identity, make_mesh, node, policy, to_yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from meshops.errors import ValidationFailed
from meshops.model import Loaded, load_text
from meshops.model.reload import revalidate

NODES = 6
BASE = make_mesh(
    nodes={f"node-{i}": {**node(i), "labels": {"role": "web"}} for i in range(1, NODES + 1)},
    identities={"api": identity(["node-1", "node-2"])},
    policies=[policy("p", ["api"], "api")],
)


def _full(text: str) -> Loaded | None:
    try:
        return load_text(text, run_tests=False)
    except ValidationFailed:
        return None


def _same(ours: Loaded, full: Loaded) -> None:
    assert ours.mesh.model_dump() == full.mesh.model_dump()
    assert list(ours.mesh.nodes) == list(full.mesh.nodes)
    assert ours.document.data == full.document.data
    assert ours.document.spots == full.document.spots


_EDITS: list[tuple[str, Any]] = [
    ("endpoint", st.sampled_from(["192.0.2.77:51820", "198.51.100.9:4000", "[2001:db8::1]:51820",
                                  "host.example.com:51820", "not an endpoint", "1.2.3.4:0"])),
    ("labels", st.sampled_from([{"role": "db"}, {"zone": "b"}, {"role": 5}])),
    ("address", st.sampled_from(["10.42.0.9", "10.42.0.10", "10.99.0.1", "garbage"])),
    ("ops", st.booleans()),
]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, NODES), st.sampled_from(range(len(_EDITS))), st.data()),
             min_size=1, max_size=3),
)  # fmt: skip
def test_node_edits_give_what_validating_from_scratch_gives(edits: list[Any]) -> None:
    data: dict[str, Any] = {**BASE, "nodes": {k: dict(v) for k, v in BASE["nodes"].items()}}
    old = to_yaml(data)
    for index, kind, draw in edits:
        field, values = _EDITS[kind]
        data["nodes"][f"node-{index}"][field] = draw.draw(values)
    new = to_yaml(data)
    previous = load_text(old, run_tests=False)
    ours = revalidate(previous, old.encode(), new.encode(), "mesh.yaml")
    full = _full(new)
    if ours is not None:
        assert full is not None, "revalidate accepted what validation refuses"
        _same(ours, full)


def test_an_endpoint_moved_is_revalidated_in_place() -> None:
    old = to_yaml(BASE)
    new = old.replace("192.0.2.3:51820", "203.0.113.3:51820")
    ours = revalidate(load_text(old, run_tests=False), old.encode(), new.encode(), "mesh.yaml")
    assert ours is not None
    assert str(ours.mesh.nodes["node-3"].endpoint) == "203.0.113.3:51820"
    _same(ours, load_text(new, run_tests=False))


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.replace("  node-6:", "  node-9:"),  # a node renamed: its key changed
        lambda t: t + "# a comment\n",  # a line added
        lambda t: t.replace("mesh.test.internal", "mesh.other.internal"),  # not a node
        lambda t: t.replace("192.0.2.3:51820", "192.0.2.3:51820 # &anchor"),  # an anchor
        lambda t: t.replace("role: web", "role: db", 1).replace("name: p", "name: q"),  # and more
    ],
)
def test_anything_else_is_left_to_full_validation(change: Any) -> None:
    old = to_yaml(BASE)
    new = change(old)
    assert new != old
    assert revalidate(load_text(old, run_tests=False), old.encode(), new.encode(), "m") is None


def test_an_invalid_entry_or_a_semantic_problem_is_left_to_full_validation() -> None:
    old = to_yaml(BASE)
    previous = load_text(old, run_tests=False)
    bad_endpoint = old.replace("192.0.2.3:51820", "192.0.2.3:99999")
    clash = old.replace("192.0.2.3:51820", "192.0.2.2:51820")  # two nodes, one endpoint
    for new in (bad_endpoint, clash):
        assert revalidate(previous, old.encode(), new.encode(), "mesh.yaml") is None
        with pytest.raises(ValidationFailed):
            load_text(new, run_tests=False)
