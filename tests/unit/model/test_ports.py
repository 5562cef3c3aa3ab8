"""L4 in mesh.yaml: identities' `ports`, policy rules with `ports`, L4 policy tests, and
the checks that refuse what a packet filter or a proxy could not enforce."""

from __future__ import annotations

from typing import Any

import pytest
from factories import expect_problem, identity, make_mesh, proxy, test_case, to_yaml

from meshops.errors import ValidationFailed
from meshops.model import load_text
from meshops.model.port import Port


def l4_mesh(**fields: Any) -> dict[str, Any]:
    """api (proxied) on node-1 calls db on node-2 over 5432/tcp; web on node-1 too."""
    data: dict[str, Any] = {
        "identities": {
            "web": identity("node-1"),
            "api": identity("node-1", proxy=proxy()),
            "db": identity("node-2", ports=["5432/tcp", "53/udp"]),
            "cache": identity("node-3", ports=["6379/tcp"]),
        },
        "policies": [
            {"name": "api-db", "from": "api", "to": "db", "allow": [{"ports": ["5432/tcp"]}]}
        ],
    }
    data.update(fields)
    return make_mesh(**data)


def test_ports_parse_in_both_spellings_and_print_canonically() -> None:
    assert Port.parse("5432/tcp") == Port(5432, "tcp")
    assert Port.parse(" 53/UDP ") == Port(53, "udp")
    assert str(Port(53, "udp")) == "53/udp" and Port(53, "udp").request == "udp/53"
    assert Port.parse_request("tcp/5432") == Port.parse_request("5432/tcp") == Port(5432, "tcp")
    assert Port.parse_request("GET /x") is None
    for bad in ("5432", "5432/sctp", "0/tcp", "65536/tcp", "x/tcp", "/tcp", "١٢/tcp"):
        with pytest.raises(ValueError):
            Port.parse(bad)


def test_an_identity_port_without_protocol_is_located_at_the_item() -> None:
    data = l4_mesh()
    data["identities"]["db"]["ports"] = ["5432/tcp", "5433"]
    expect_problem(to_yaml(data), "'5433'", "identities.db.ports[1]", "PORT/tcp or PORT/udp")


def test_a_rule_with_ports_and_methods_is_refused_at_the_rule() -> None:
    data = l4_mesh()
    data["policies"][0]["allow"] = [{"ports": ["5432/tcp"], "methods": ["GET"]}]
    expect_problem(
        to_yaml(data),
        "ports:",
        "policies[0].allow[0]",
        "not both: split it into two rules",
        occurrence=3,  # after db's and cache's
    )


def test_methods_on_a_callee_without_a_proxy_are_refused_and_the_ports_suggested() -> None:
    data = l4_mesh()
    data["policies"].append(
        {"name": "web-db", "from": "web", "to": "db", "allow": [{"methods": ["GET"]}]}
    )
    expect_problem(
        to_yaml(data),
        "methods:",
        "policies[1].allow[0]",
        "'db', which has no proxy",
        "allow its ports (5432/tcp, 53/udp)",
    )


def test_a_port_the_callee_does_not_expose_is_refused_at_the_port() -> None:
    data = l4_mesh()
    data["policies"][0]["allow"] = [{"ports": ["5432/tcp", "5433/tcp"]}]
    expect_problem(
        to_yaml(data), "5433/tcp", "policies[0].allow[0].ports[1]", "'db' does not expose it"
    )


def test_a_port_no_member_of_a_group_exposes_is_refused() -> None:
    data = l4_mesh(groups={"stores": ["db", "cache"]})
    data["policies"][0]["to"] = "group:stores"
    data["policies"][0]["allow"] = [{"ports": ["6379/tcp", "11211/tcp"]}]
    expect_problem(
        to_yaml(data),
        "11211/tcp",
        "policies[0].allow[0].ports[1]",
        "no identity of 'group:stores' exposes it",
    )


def test_a_group_grants_each_port_only_on_the_members_exposing_it() -> None:
    data = l4_mesh(groups={"stores": ["db", "cache"]})
    data["policies"][0]["to"] = "group:stores"
    data["policies"][0]["allow"] = [{"ports": ["6379/tcp", "5432/tcp"]}]
    table = load_text(to_yaml(data)).access
    assert {(g.callee, str(g.port)) for g in table.ports} == {
        ("cache", "6379/tcp"),
        ("db", "5432/tcp"),
    }


@pytest.mark.parametrize(
    ("ports", "mtls", "fragment"),
    [
        (["8443/tcp"], "strict", "already 'api''s proxy"),
        (["8080/tcp"], "strict", "upstream behind 'api''s proxy, which strict mTLS never opens"),
        (["8444/tcp"], "permissive", "already 'api''s plaintext"),
        (["51820/udp"], "strict", "is the WireGuard port"),
        (["9000/tcp", "9000/tcp"], "strict", "listed twice"),
    ],
)
def test_ports_that_clash_on_a_node_are_refused(ports: list[str], mtls: str, fragment: str) -> None:
    data = l4_mesh(mtls={"mode": mtls})
    data["identities"]["web"]["ports"] = ports
    with pytest.raises(ValidationFailed) as caught:
        load_text(to_yaml(data))
    assert any(fragment in str(p) for p in caught.value.problems), caught.value.problems


def test_an_upstream_port_may_be_exposed_in_permissive_mode() -> None:
    data = l4_mesh(mtls={"mode": "permissive"})
    data["identities"]["web"]["ports"] = ["8080/tcp"]
    load_text(to_yaml(data))


def test_two_identities_on_one_node_cannot_share_a_port() -> None:
    data = l4_mesh()
    data["identities"]["web"]["ports"] = ["6379/tcp"]
    data["identities"]["cache"]["nodes"] = ["node-1"]
    with pytest.raises(ValidationFailed, match="already 'cache'"):
        load_text(to_yaml(data))


def test_l4_policy_tests_pass_and_fail_with_the_same_table() -> None:
    tests = [
        test_case("api", "db", "tcp/5432", "allow"),
        test_case("api", "db", "5432/tcp", "allow"),
        test_case("api", "db", "udp/53", "deny"),
        test_case("api", "cache", "tcp/6379", "deny"),
    ]
    load_text(to_yaml(l4_mesh(tests=tests)))
    failing = to_yaml(l4_mesh(tests=[test_case("api", "db", "udp/53", "allow")]))
    problem = expect_problem(failing, "from: api", "expected allow, got deny", occurrence=2)
    assert "no policy allows it" in problem.message


def test_an_l4_deny_test_fails_when_a_neighbour_on_the_callers_node_opens_the_port() -> None:
    """`web` shares node-1 with `api`: the packet filter cannot tell them apart."""
    text = to_yaml(l4_mesh(tests=[test_case("web", "db", "tcp/5432", "deny")]))
    problem = expect_problem(text, "from: web", "expected deny, got allow")
    assert "'api', also on node 'node-1'" in problem.message
    assert "node-granular" in problem.message


def test_an_http_request_to_a_port_only_identity_is_denied_by_the_table() -> None:
    text = to_yaml(l4_mesh(tests=[test_case("api", "db", "GET /", "allow")]))
    expect_problem(text, "from: api", "expected allow, got deny", occurrence=2)


def test_new_settings_have_their_defaults() -> None:
    mesh = load_text(to_yaml(l4_mesh())).mesh
    assert (mesh.firewall.enabled, mesh.firewall.icmp, mesh.firewall.log) == (True, True, False)
    assert mesh.wireguard.peers == "all"
    assert not any(node.ops for node in mesh.nodes.values())
    policy_mode = l4_mesh(wireguard={"peers": "policy"}, firewall={"icmp": False})
    policy_mode["nodes"]["node-3"]["ops"] = True
    mesh = load_text(to_yaml(policy_mode)).mesh
    assert mesh.wireguard.peers == "policy" and not mesh.firewall.icmp
    assert mesh.nodes["node-3"].ops
