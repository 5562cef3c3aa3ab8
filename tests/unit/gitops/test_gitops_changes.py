from __future__ import annotations

import copy

from factories import age_recipient, identity, make_mesh, policy, test_case, web_api_mesh
from gitops_helpers import mesh_of
from hypothesis import given
from hypothesis import strategies as st

from meshops.gitops.changes import desired_changes, field_changes, short_key


def _by_address(before: dict, after: dict) -> dict[str, tuple[str, tuple[str, ...]]]:
    changes = desired_changes(mesh_of(before), mesh_of(after))
    return {c.address: (c.action, c.details) for c in changes}


def test_identical_meshes_have_no_changes() -> None:
    data = web_api_mesh()
    assert desired_changes(mesh_of(data), mesh_of(copy.deepcopy(data))) == []


def test_node_endpoint_change_is_described_with_old_and_new_value() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["nodes"]["node-2"]["endpoint"] = "192.0.2.99:51820"
    old = before["nodes"]["node-2"]["endpoint"]
    assert _by_address(before, after) == {
        'nodes["node-2"]': ("changed", (f"endpoint: {old} -> 192.0.2.99:51820",))
    }


def test_identity_placement_is_described_as_placed_and_removed() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["identities"]["api"]["nodes"] = ["node-3"]
    action, details = _by_address(before, after)['identities["api"]']
    assert action == "changed"
    assert details == ("placed on node-3", "removed from node-2")


def test_added_and_removed_nodes_and_policies() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["nodes"]["node-4"] = make_mesh(nodes=4)["nodes"]["node-4"]
    del after["policies"][1]  # admin-writes-api
    after["policies"].append(policy("web-health", "web", "db", methods=["GET"], paths=["/health"]))
    changes = _by_address(before, after)
    assert changes['nodes["node-4"]'][0] == "added"
    assert any(d.startswith("endpoint: ") for d in changes['nodes["node-4"]'][1])
    assert changes['policies["admin-writes-api"]'] == ("removed", ())
    assert changes['policies["web-health"]'] == (
        "added",
        ("from: [web]", "to: [db]", "allow: GET /health"),
    )


def test_policy_rule_change_shows_the_allow_lists() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["policies"][0]["allow"][0]["methods"] = ["GET", "HEAD"]
    assert _by_address(before, after)['policies["frontends-read-api"]'] == (
        "changed",
        ("allow: GET /v1/* -> GET,HEAD /v1/*",),
    )


def test_settings_groups_and_tests_are_described() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["mtls"] = {"mode": "permissive"}
    after["certs"]["ttl"] = "72h"
    after["ca"]["recipients"] = [age_recipient(0), age_recipient(1)]
    after["groups"]["frontends"] = ["web"]
    after["tests"].append(test_case("api", "db", "GET /query", "allow"))
    changes = _by_address(before, after)
    assert changes["mtls"] == ("changed", ("mode: strict -> permissive",))
    assert changes["certs"] == ("changed", ("ttl: 48h -> 72h",))
    assert changes["ca"] == ("changed", (f"recipients: +{short_key(age_recipient(1))}",))
    assert changes['groups["frontends"]'] == ("changed", ("members: -admin",))
    assert changes["tests"] == ("changed", ("+ api -> db GET /query: expect allow",))


def test_a_new_mesh_lists_everything_as_added() -> None:
    after = make_mesh(nodes=2, identities={"api": identity("node-1")})
    changes = desired_changes(None, mesh_of(after))
    assert [(c.address, c.action) for c in changes] == [
        ('nodes["node-1"]', "added"),
        ('nodes["node-2"]', "added"),
        ('identities["api"]', "added"),
    ]


def test_short_key_keeps_kind_and_both_ends() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH9W9Zx2ne3X1"
    assert short_key(key) == "ssh-ed25519 AAAAC3Nz…2ne3X1"
    assert short_key("short") == "short"


_scalars = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans())
_docs = st.recursive(
    st.dictionaries(st.sampled_from("abcdef"), _scalars, max_size=4),
    lambda inner: st.dictionaries(st.sampled_from("abcdef"), inner, max_size=3),
    max_leaves=10,
)


@given(_docs, _docs)
def test_field_changes_are_empty_exactly_when_documents_are_equal(a: dict, b: dict) -> None:
    assert (field_changes(a, b) == []) == (a == b)


@given(_docs)
def test_field_changes_of_a_document_with_itself_is_empty(a: dict) -> None:
    assert field_changes(a, copy.deepcopy(a)) == []
