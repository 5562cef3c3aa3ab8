"""Semantic checks: each with a valid and an invalid case, located exactly and named."""

from __future__ import annotations

from typing import Any

import pytest
from factories import (
    expect_problem,
    identity,
    make_mesh,
    node,
    policy,
    proxy,
    test_case,
    to_yaml,
    web_api_mesh,
)

from meshops.model import load_text


def valid(data: dict[str, Any]) -> None:
    load_text(to_yaml(data))


# -- references ----------------------------------------------------------------------


def test_identity_on_known_nodes_is_valid() -> None:
    valid(make_mesh(nodes=2, identities={"api": identity(["node-1", "node-2"])}))


def test_identity_on_unknown_node_is_located_at_the_list_item() -> None:
    text = to_yaml(make_mesh(nodes=2, identities={"api": identity(["node-1", "node-9"])}))
    expect_problem(text, "node-9", "identities.api.nodes[1]", "unknown node 'node-9'")


def test_unknown_node_suggests_the_closest_name() -> None:
    text = to_yaml(make_mesh(nodes=2, identities={"api": identity(["node-3"])}))
    expect_problem(text, "node-3", "did you mean 'node-")


def test_identity_listing_a_node_twice_is_refused() -> None:
    text = to_yaml(make_mesh(nodes=2, identities={"api": identity(["node-1", "node-1"])}))
    expect_problem(text, "nodes:\n      - node-1", "identities.api.nodes", "listed twice")


def test_group_of_known_identities_is_valid() -> None:
    valid(make_mesh(identities=2, groups={"all": ["id-1", "id-2"]}))


def test_group_member_that_is_not_an_identity_is_refused() -> None:
    text = to_yaml(make_mesh(identities=2, groups={"all": ["id-1", "ghost"]}))
    expect_problem(text, "ghost", "groups.all[1]", "unknown identity 'ghost'")


def test_group_named_like_an_identity_is_refused() -> None:
    text = to_yaml(make_mesh(identities=2, groups={"id-1": ["id-2"]}))
    expect_problem(text, "id-1:\n    - id-2", "groups.id-1", "same name as an identity")


@pytest.mark.parametrize("ref", ["id-1", "group:all", "*"])
def test_policy_principals_identity_group_and_star_are_valid(ref: str) -> None:
    valid(
        make_mesh(identities=2, groups={"all": ["id-1", "id-2"]}, policies=[policy("p", ref, ref)])
    )


@pytest.mark.parametrize(
    ("side", "ref", "fragment"),
    [
        ("from", "ghost", "unknown identity 'ghost'"),
        ("to", "ghost", "unknown identity 'ghost'"),
        ("from", "group:nope", "unknown group 'nope'"),
        ("to", "all", "'all' is a group; write it as 'group:all'"),
    ],
)
def test_policy_reference_problems_name_the_policy_and_the_reference(
    side: str, ref: str, fragment: str
) -> None:
    frm, to = (ref, "id-1") if side == "from" else ("id-1", ref)
    data = make_mesh(identities=2, groups={"all": ["id-1"]}, policies=[policy("p-bad", frm, to)])
    text = to_yaml(data)
    needle = f"{side}: {ref}"
    problem = expect_problem(text, needle, "policy 'p-bad'", fragment)
    assert problem.path == f"policies[0].{side}[0]"


def test_policy_names_used_twice_are_refused_at_the_second() -> None:
    data = make_mesh(identities=2, policies=[policy("dup", "id-1", "id-2")] * 2)
    text = to_yaml(data)
    expect_problem(text, "name: dup", "policies[1].name", "'dup' is used twice", occurrence=2)


def test_policy_test_with_unknown_identity_is_refused() -> None:
    data = make_mesh(identities=2, tests=[test_case("id-1", "ghost", "GET /", "deny")])
    text = to_yaml(data)
    expect_problem(text, "to: ghost", "tests[0].to", "unknown identity 'ghost'")


# -- addresses -----------------------------------------------------------------------


def _nodes(**addresses: str) -> dict[str, Any]:
    return {
        name: node(i, address=addr) for i, (name, addr) in enumerate(addresses.items(), start=1)
    }


def test_distinct_addresses_inside_the_network_are_valid() -> None:
    valid(make_mesh(nodes=_nodes(a="10.42.0.1", b="10.42.255.254")))


def test_address_outside_the_network_is_refused() -> None:
    text = to_yaml(make_mesh(nodes=_nodes(a="10.42.0.1", b="10.43.0.1")))
    expect_problem(text, "address: 10.43.0.1", "nodes.b.address", "outside the network")


@pytest.mark.parametrize("addr", ["10.42.0.0", "10.42.255.255"])
def test_network_and_broadcast_addresses_are_refused(addr: str) -> None:
    text = to_yaml(make_mesh(nodes=_nodes(a=addr)))
    expect_problem(text, f"address: {addr}", "nodes.a.address", "network or broadcast")


def test_address_used_twice_names_the_first_node() -> None:
    text = to_yaml(make_mesh(nodes=_nodes(first="10.42.0.5", second="10.42.0.5")))
    expect_problem(
        text, "address: 10.42.0.5", "nodes.second.address", "used by node 'first'", occurrence=2
    )


def test_address6_inside_network6_is_valid() -> None:
    data = make_mesh(nodes={"a": node(1, address6="fd42::1")}, wireguard={"network6": "fd42::/64"})
    valid(data)


def test_address6_without_network6_is_refused() -> None:
    text = to_yaml(make_mesh(nodes={"a": node(1, address6="fd42::1")}))
    expect_problem(text, "address6:", "nodes.a.address6", "network6")


def test_address6_outside_network6_is_refused() -> None:
    data = make_mesh(nodes={"a": node(1, address6="fd43::1")}, wireguard={"network6": "fd42::/64"})
    expect_problem(to_yaml(data), "address6:", "nodes.a.address6", "outside network6")


def test_more_nodes_than_the_network_holds_is_refused() -> None:
    text = to_yaml(make_mesh(nodes=3, wireguard={"network": "10.42.0.0/30"}))
    expect_problem(text, "network:", "wireguard.network", "room for 2 nodes")


# -- endpoints -----------------------------------------------------------------------


def test_distinct_endpoints_are_valid() -> None:
    valid(make_mesh(nodes=4))


def test_duplicate_endpoint_names_the_node_using_it() -> None:
    nodes = {"a": node(1), "b": node(2, endpoint=node(1)["endpoint"])}
    text = to_yaml(make_mesh(nodes=nodes))
    expect_problem(text, "endpoint:", "nodes.b.endpoint", "already used by node 'a'", occurrence=2)


def test_endpoint_host_names_compare_without_case() -> None:
    nodes = {
        "a": node(1, endpoint="Host.Example:51820"),
        "b": node(2, endpoint="host.example:51820"),
    }
    text = to_yaml(make_mesh(nodes=nodes))
    expect_problem(text, "endpoint:", "nodes.b.endpoint", "'a'", occurrence=2)


# -- lifetimes -----------------------------------------------------------------------


def test_lifetimes_nested_properly_are_valid() -> None:
    valid(
        make_mesh(
            identities={"api": identity("node-1", ttl="720h", renew_before="719h")},
            ca={"root_ttl": "720h", "node_ca_ttl": "720h"},
            certs={"ttl": "720h", "renew_before": "99%"},
        )
    )


def test_node_ca_ttl_above_root_ttl_is_refused() -> None:
    text = to_yaml(make_mesh(ca={"root_ttl": "100h", "node_ca_ttl": "101h"}))
    expect_problem(text, "node_ca_ttl:", "ca.node_ca_ttl", "101h is longer than root_ttl 100h")


def test_default_leaf_ttl_above_node_ca_ttl_is_refused() -> None:
    text = to_yaml(make_mesh(ca={"node_ca_ttl": "24h"}))
    expect_problem(text, "ttl: 48h", "certs.ttl", "longer than ca.node_ca_ttl 24h")


def test_identity_ttl_above_node_ca_ttl_is_refused() -> None:
    data = make_mesh(identities={"api": identity("node-1", ttl="721h")})
    expect_problem(to_yaml(data), "ttl: 721h", "identities.api.ttl", "721h is longer")


def test_certs_renew_before_not_below_ttl_is_refused() -> None:
    text = to_yaml(make_mesh(certs={"renew_before": "48h"}))
    expect_problem(text, "renew_before:", "certs.renew_before", "not shorter than ttl 48h")


def test_identity_renew_before_not_below_its_ttl_names_the_identity() -> None:
    data = make_mesh(identities={"batch": identity("node-1", ttl="12h", renew_before="12h")})
    text = to_yaml(data)
    expect_problem(text, "renew_before: 12h", "identities.batch.renew_before", "ttl 12h of 'batch'")


def test_identity_ttl_below_inherited_renew_before_is_refused_on_the_ttl() -> None:
    data = make_mesh(
        certs={"renew_before": "10h"}, identities={"api": identity("node-1", ttl="5h")}
    )
    expect_problem(to_yaml(data), "ttl: 5h", "identities.api.ttl", "renew_before 10h")


@pytest.mark.parametrize(
    ("section", "field", "needle"),
    [("ca", "root_ttl", "root_ttl: '0'"), ("certs", "ttl", "ttl: '0'")],
)
def test_zero_lifetimes_are_refused(section: str, field: str, needle: str) -> None:
    text = to_yaml(make_mesh(**{section: {field: "0"}}))
    expect_problem(text, needle, f"{section}.{field}")


# -- proxies -------------------------------------------------------------------------


def test_proxies_on_distinct_ports_are_valid() -> None:
    valid(web_api_mesh())


def test_two_proxies_on_one_node_and_port_are_refused() -> None:
    data = make_mesh(
        identities={
            "a": identity("node-1", proxy=proxy(listen=8443)),
            "b": identity("node-1", proxy=proxy(listen=8443)),
        }
    )
    text = to_yaml(data)
    expect_problem(
        text, "listen: 8443", "identities.b.proxy.listen", "already used by 'a'", occurrence=2
    )


def test_two_proxies_writing_one_config_file_are_refused() -> None:
    conf = "/etc/caddy/x.caddy"
    data = make_mesh(
        identities={
            "a": identity("node-1", proxy=proxy(listen=1, config=conf)),
            "b": identity("node-1", proxy=proxy(listen=2, config=conf)),
        }
    )
    text = to_yaml(data)
    expect_problem(text, "config:", "identities.b.proxy.config", "by 'a'", occurrence=2)


def test_proxy_on_the_wireguard_port_is_refused() -> None:
    data = make_mesh(identities={"a": identity("node-1", proxy=proxy(listen=51820))})
    text = to_yaml(data)
    expect_problem(text, "listen: 51820", "identities.a.proxy.listen", "WireGuard port")


# -- version ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 0, "1", True, None])
def test_versions_this_build_does_not_understand_are_refused(version: object) -> None:
    data = make_mesh()
    data["version"] = version
    expect_problem(to_yaml(data), "version:", "version", "understands mesh.yaml version 1")


def test_missing_version_is_a_missing_field() -> None:
    data = make_mesh()
    del data["version"]
    expect_problem(to_yaml(data), "mesh:", "missing required field 'version'")


# -- policy tests --------------------------------------------------------------------


def test_passing_policy_tests_are_valid() -> None:
    loaded = load_text(to_yaml(web_api_mesh()))
    assert len(loaded.mesh.tests) == 5


def test_failing_policy_test_is_an_error_at_its_line_naming_the_request() -> None:
    data = web_api_mesh()
    data["tests"].append(test_case("web", "api", "POST /v1/users", "allow"))
    text = to_yaml(data)
    expect_problem(
        text,
        "from: web\n    to: api\n    request: POST",
        "tests[5]",
        "web -> api POST /v1/users: expected allow, got deny (no policy allows it)",
    )


def test_failing_deny_test_names_the_policy_that_allowed_it() -> None:
    data = web_api_mesh()
    data["tests"] = [test_case("admin", "api", "GET /v1/x", "deny", name="admin-cannot-read")]
    text = to_yaml(data)
    expect_problem(
        text,
        "from: admin\n    to: api\n    request: GET /v1/x",
        "policy test 'admin-cannot-read' failed",
        "by policy 'frontends-read-api'",
    )


def test_every_failing_policy_test_is_reported() -> None:
    data = web_api_mesh()
    for t in data["tests"]:
        t["expect"] = "deny" if t["expect"] == "allow" else "allow"
    from meshops.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as caught:
        load_text(to_yaml(data))
    assert len(caught.value.problems) == 5


def test_policy_tests_are_skipped_when_asked() -> None:
    data = web_api_mesh()
    data["tests"][0]["expect"] = "deny"
    load_text(to_yaml(data), run_tests=False)


def test_all_semantic_problems_are_reported_at_once() -> None:
    data = make_mesh(
        nodes=_nodes(a="10.99.0.1"),
        identities={"api": identity("ghost")},
        ca={"node_ca_ttl": "1h"},
    )
    from meshops.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as caught:
        load_text(to_yaml(data))
    paths = {p.path for p in caught.value.problems}
    assert {"identities.api.nodes[0]", "nodes.a.address", "certs.ttl"} <= paths
    assert str(caught.value).endswith(f"{len(caught.value.problems)} problems found")


# -- names that bind an identity to its nodes -------------------------------------------
# `<node>.<domain>` in a leaf means "issued by that node's CA" to Envoy's RBAC: no other
# node's CA may be able to issue it.


def test_identity_dns_outside_the_mesh_domain_is_valid() -> None:
    valid(make_mesh(nodes=2, identities={"api": identity("node-1", dns=["api.example.com"])}))


def test_identity_named_like_the_one_node_it_runs_on_is_valid() -> None:
    valid(make_mesh(nodes=2, identities={"node-1": identity("node-1")}))


def test_identity_named_like_another_node_is_refused() -> None:
    text = to_yaml(make_mesh(nodes=2, identities={"node-2": identity("node-1")}))
    expect_problem(text, "node-2:\n    nodes", "identities.node-2", "has the name of node")


def test_identity_dns_naming_another_node_is_refused_at_the_item() -> None:
    data = make_mesh(
        nodes=2,
        identities={"api": identity("node-1", dns=["x.example", "node-2.mesh.test.internal"])},
    )
    expect_problem(
        to_yaml(data), "node-2.mesh", "identities.api.dns[1]", "covers node-2.mesh.test.internal"
    )


def test_a_wildcard_over_the_mesh_domain_is_refused() -> None:
    data = make_mesh(nodes=2, identities={"api": identity("node-1", dns=["*.mesh.test.internal"])})
    expect_problem(to_yaml(data), "'*.mesh", "identities.api.dns[0]", "covers the mesh domain")


def test_node_dns_naming_another_node_is_refused_but_its_own_is_valid() -> None:
    own = make_mesh(nodes={"node-1": node(1, dns=["node-1.mesh.test.internal"]), "node-2": node(2)})
    valid(own)
    other = make_mesh(nodes={"node-1": node(1, dns=["test.internal"]), "node-2": node(2)})
    text = to_yaml(other)
    expect_problem(text, "test.internal\n", "nodes.node-1.dns[0]", "covers", occurrence=3)


def test_an_envoy_bootstrap_cannot_be_imported() -> None:
    data = make_mesh(identities={"api": identity("node-1", proxy=proxy("envoy", run="import"))})
    expect_problem(to_yaml(data), "run: import", "identities.api.proxy.run", "be imported")


@pytest.mark.parametrize("name", ["mesh.test.internal", "test.internal", "*.mesh.test.internal"])
def test_a_dns_name_covering_the_mesh_domain_is_refused_even_on_a_lone_node(name: str) -> None:
    """A node CA permitting the mesh domain could issue every node's name, also of nodes
    added later (make_mesh's domain is mesh.test.internal)."""
    data = make_mesh(nodes=1)
    data["nodes"]["node-1"]["dns"] = [name]
    text = to_yaml(data)
    needle = f"'{name}" if name.startswith("*") else name  # YAML quotes a leading *
    expect_problem(text, needle, "nodes.node-1.dns[0]", "covers the mesh domain",
                   occurrence=text.count(needle))  # fmt: skip


def test_names_of_a_nodes_own_are_valid() -> None:
    data = make_mesh(nodes=2, identities={"api": identity(["node-1", "node-2"], dns=[
        "api.example.com", "x.node-1.mesh.test.internal"])})  # fmt: skip
    data["nodes"]["node-1"]["dns"] = ["*.apps.example.org", "node-1.mesh.test.internal"]
    valid(data)
