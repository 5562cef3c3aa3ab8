"""Certificates-only nodes (`wireguard: false`, or `wireguard.enabled: false` mesh-wide):
what validate asks of them, and which addresses they publish."""

from __future__ import annotations

from ipaddress import ip_address

from factories import expect_problem, identity, make_mesh, node, proxy, to_yaml

from meshops.model import load_text


def test_a_mesh_wide_switch_and_a_per_node_override() -> None:
    data = make_mesh(
        nodes={"a": node(1), "b": node(2, wireguard=True), "c": node(3)},
        wireguard={"enabled": False},
    )
    mesh = load_text(to_yaml(data)).mesh
    assert [mesh.wireguard_on(n) for n in ("a", "b", "c")] == [False, True, False]


def test_a_node_can_leave_wireguard_on_its_own() -> None:
    data = make_mesh(nodes={"a": node(1, wireguard=False), "b": node(2)})
    mesh = load_text(to_yaml(data)).mesh
    assert [mesh.wireguard_on(n) for n in ("a", "b")] == [False, True]


def test_a_certificates_only_node_publishes_its_ips_else_its_endpoint_host() -> None:
    nodes = {
        "listed": node(1, wireguard=False, ips=["10.0.1.5", "2001:db8::5"]),
        "by-endpoint": node(2, wireguard=False, endpoint="192.0.2.22:443"),
        "only-ips": {"recipient": node(3)["recipient"], "wireguard": False, "ips": ["10.0.1.7"]},
    }
    mesh = load_text(to_yaml(make_mesh(nodes=nodes))).mesh
    assert mesh.underlay_ips("listed") == [ip_address("10.0.1.5"), ip_address("2001:db8::5")]
    assert mesh.underlay_ips("by-endpoint") == [ip_address("192.0.2.22")]
    assert mesh.underlay_ips("only-ips") == [ip_address("10.0.1.7")]


def test_a_certificates_only_node_needs_an_address_to_publish() -> None:
    bare = {"recipient": node(1)["recipient"], "wireguard": False}
    text = to_yaml(make_mesh(nodes={"db-1": bare, "node-2": node(2)}))
    expect_problem(text, "db-1:", "nodes.db-1", "no address to publish", "ips: [...]")


def test_an_endpoint_by_name_is_no_address_to_publish() -> None:
    named = node(1, wireguard=False, endpoint="db.example.com:443")
    text = to_yaml(make_mesh(nodes={"db-1": named}))
    expect_problem(text, "db-1:", "nodes.db-1", "no address to publish")


def test_a_wireguard_node_needs_an_endpoint() -> None:
    text = to_yaml(make_mesh(nodes={"web-1": {"recipient": node(1)["recipient"]}}))
    expect_problem(text, "web-1:", "nodes.web-1", "needs an endpoint", "wireguard: false")


def test_a_certificates_only_node_has_no_overlay_address() -> None:
    text = to_yaml(make_mesh(nodes={"db-1": node(1, wireguard=False, address="10.42.0.9")}))
    expect_problem(text, "address: 10.42.0.9", "nodes.db-1.address", "has no WireGuard")


def test_certificates_only_nodes_may_share_an_endpoint_and_use_the_wireguard_port() -> None:
    nodes = {
        "a": node(1, wireguard=False, endpoint="192.0.2.10:51820"),
        "b": node(2, wireguard=False, endpoint="192.0.2.10:51820", ips=["192.0.2.11"]),
    }
    data = make_mesh(nodes=nodes, identities={"api": identity("a", proxy=proxy(listen=51820))})
    load_text(to_yaml(data))


def test_only_wireguard_nodes_take_overlay_addresses() -> None:
    nodes = {f"n{i}": node(i, wireguard=False, ips=[f"10.0.0.{i}"]) for i in range(1, 6)}
    nodes["wg-1"] = node(9)
    data = make_mesh(nodes=nodes, wireguard={"network": "10.42.0.0/30"})
    load_text(to_yaml(data))  # a /30 holds 2 nodes: the one WireGuard node fits
