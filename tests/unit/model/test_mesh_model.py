"""mesh.yaml v1 fields as docs/mesh-yaml.md lists them: typed, defaults given, unknowns refused."""

from __future__ import annotations

from ipaddress import IPv4Network
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
)

from meshops.model import load_text
from meshops.model.mesh import Mesh


def minimal() -> dict[str, Any]:
    return {
        "version": 1,
        "mesh": {"name": "m", "trust_domain": "m.internal", "domain": "mesh.m.internal"},
    }


def test_minimal_mesh_gets_the_documented_defaults() -> None:
    mesh = load_text(to_yaml(minimal())).mesh
    assert mesh.secrets.format == "age"
    assert mesh.ca.key_type == "ecdsa-p256"
    assert str(mesh.ca.root_ttl) == "87600h"
    assert str(mesh.ca.node_ca_ttl) == "720h"
    assert mesh.ca.recipients == []
    assert mesh.certs.key_type == "ecdsa-p256"
    assert str(mesh.certs.ttl) == "48h"
    assert str(mesh.certs.renew_before) == "33%"
    wg = mesh.wireguard
    assert (wg.interface, wg.port, wg.network, wg.network6) == (
        "wg-mesh",
        51820,
        IPv4Network("10.42.0.0/16"),
        None,
    )
    assert (str(wg.keepalive), wg.mtu) == ("25s", 1420)
    assert (mesh.mtls.mode, mesh.mtls.min_tls) == ("strict", "1.3")
    assert (mesh.nodes, mesh.identities, mesh.groups, mesh.policies, mesh.tests) == (
        {},
        {},
        {},
        [],
        [],
    )


def test_identity_settings_fall_back_to_certs_defaults() -> None:
    data = make_mesh(
        identities={"a": identity("node-1"), "b": identity("node-1", ttl="12h", key_type="ed25519")}
    )
    mesh = load_text(to_yaml(data)).mesh
    assert (str(mesh.leaf_ttl("a")), str(mesh.leaf_ttl("b"))) == ("48h", "12h")
    assert (mesh.leaf_key_type("a"), mesh.leaf_key_type("b")) == ("ecdsa-p256", "ed25519")
    assert mesh.spiffe_id("a") == "spiffe://test.internal/a"
    assert mesh.identities_on("node-1") == ["a", "b"]


def test_contract_example_shapes_load() -> None:
    data = make_mesh(
        nodes={"web-1": node(1, address="10.42.0.11", labels={"role": "web"}, dns=["w.example"])},
        identities={
            "api": identity(
                "web-1",
                ttl="24h",
                dns=["api.internal"],
                proxy=proxy(
                    "caddy", 8443, config="/etc/caddy/x.caddy", reload=["systemctl", "reload"]
                ),
                outputs={"dir": "/etc/meshops/tls/api", "p12": True, "combined_pem": True},
                on_renew=[["systemctl", "reload", "docker"]],
            ),
            "web": identity("web-1"),
        },
        groups={"frontends": ["web"]},
        policies=[
            policy("p", ["group:frontends"], "api", methods=["get", "HEAD"], paths=["/v1/*"])
        ],
        tests=[test_case("web", "api", "get /v1/users", "allow")],
    )
    mesh = load_text(to_yaml(data)).mesh
    assert mesh.policies[0].to == ["api"]  # a single name is a one-item list
    assert mesh.policies[0].allow[0].methods == ["GET", "HEAD"]  # methods upper-cased
    assert mesh.tests[0].request == "GET /v1/users"


# Every section refuses a field it does not know, at the field, naming it.
UNKNOWN_FIELD_SITES = [
    ("", "colour"),
    ("mesh", "colour"),
    ("secrets", "colour"),
    ("ca", "colour"),
    ("certs", "colour"),
    ("wireguard", "colour"),
    ("mtls", "colour"),
    ("nodes.node-1", "colour"),
    ("identities.api", "colour"),
    ("identities.api.proxy", "colour"),
    ("identities.api.outputs", "colour"),
    ("policies.0", "colour"),
    ("policies.0.allow.0", "colour"),
    ("tests.0", "colour"),
]


@pytest.mark.parametrize(("where", "field"), UNKNOWN_FIELD_SITES)
def test_unknown_fields_are_refused_everywhere(where: str, field: str) -> None:
    data = make_mesh(
        identities={"api": identity("node-1", proxy=proxy(), outputs={"p12": True})},
        secrets={"format": "age"},
        mtls={"mode": "strict"},
        policies=[policy("p", "api", "api")],
        tests=[test_case("api", "api", "GET /", "allow")],
    )
    target: Any = data
    for part in filter(None, where.split(".")):
        target = target[int(part)] if part.isdigit() else target[part]
    target[field] = "blue"
    text = to_yaml(data)
    expected_path = ".".join([*filter(None, where.split(".")), field])
    expected_path = expected_path.replace(".0", "[0]")
    expect_problem(text, f"{field}: blue", f"{expected_path}: unknown field '{field}'")


# (section path, field, bad value, fragment of the message)
BAD_VALUES = [
    ("mesh", "name", "Demo_Mesh", "not a valid name"),
    ("mesh", "trust_domain", "spiffe://demo", "bare domain"),
    ("mesh", "domain", "-bad-.example", "not a valid DNS name"),
    ("secrets", "format", "pgp", "'age' or 'sops'"),
    ("ca", "key_type", "rsa-1024", "ecdsa-p256"),
    ("ca", "root_ttl", "10y", "expected a duration"),
    ("ca", "recipients", ["age1nope"], "not a valid age X25519 recipient"),
    ("certs", "key_type", "dsa", "ecdsa-p384"),
    ("certs", "renew_before", "1.5", "percentage"),
    ("wireguard", "port", 70000, "65535"),
    ("wireguard", "network", "10.42.0.1/16", "IPv4 network"),
    ("wireguard", "network", "10.42.0.0/31", "too small"),
    ("wireguard", "network", "fd00::/64", "IPv4 network"),
    ("wireguard", "network6", "fd42::/48", "must be a /64"),
    ("wireguard", "network6", "2001:db8::/64", "unique local"),
    ("wireguard", "interface", "wg mesh", "interface name"),
    ("wireguard", "interface", "a-very-long-interface-name", "interface name"),
    ("wireguard", "mtu", 500, "1280"),
    ("wireguard", "keepalive", 25, "expected a duration"),
    ("mtls", "mode", "strictt", "'strict' or 'permissive'"),
    ("mtls", "min_tls", "1.1", "'1.2' or '1.3'"),
]


@pytest.mark.parametrize(("section", "field", "value", "fragment"), BAD_VALUES)
def test_badly_typed_settings_are_refused_at_the_field(
    section: str, field: str, value: object, fragment: str
) -> None:
    data = make_mesh()
    data.setdefault(section, {})[field] = value
    if isinstance(value, list):
        needle, path = str(value[0]), f"{section}.{field}[0]"
    else:
        needle, path = to_yaml({field: value}).strip(), f"{section}.{field}"
    expect_problem(to_yaml(data), needle, path, fragment)


BAD_NODE_FIELDS = [
    ("endpoint", "192.0.2.1", "endpoint: 192.0.2.1\n", "expected host:port"),
    ("recipient", "age1qqqq", "recipient: age1qqqq", "not a valid age"),
    ("address", "10.42.0", "address:", "IPv4"),
    ("address6", "fd42::g", "address6:", "IPv6"),
    ("labels", {"role": 5}, "role: 5", "valid string"),
    ("dns", ["ok.example", "not ok"], "not ok", "not a valid DNS name"),
    ("ips", ["10.0.0.300"], "10.0.0.300", "IPv"),
]


@pytest.mark.parametrize(("field", "value", "needle", "fragment"), BAD_NODE_FIELDS)
def test_badly_typed_node_fields_are_refused_naming_the_node(
    field: str, value: object, needle: str, fragment: str
) -> None:
    data = make_mesh(nodes=2)
    data["nodes"]["node-2"][field] = value
    problem = expect_problem(to_yaml(data), needle, fragment)
    assert problem.path.startswith(f"nodes.node-2.{field}")


def test_node_names_must_be_dns_labels() -> None:
    data = make_mesh(nodes={"Web_1": node(1)})
    expect_problem(to_yaml(data), "Web_1:", "nodes.Web_1: 'Web_1' is not a valid name")


BAD_IDENTITY_FIELDS: list[tuple[dict[str, Any], str, str]] = [
    ({"nodes": []}, "nodes: []", "at least 1"),
    ({"ttl": "forever"}, "ttl: forever", "expected a duration"),
    ({"key_type": "rsa-1024"}, "key_type: rsa-1024", "ecdsa-p256"),
    ({"proxy": proxy("haproxy")}, "kind:", "'caddy', 'envoy' or 'nginx'"),
    ({"proxy": proxy(listen=0)}, "listen:", "greater than or equal to 1"),
    ({"proxy": proxy(upstream="localhost")}, "upstream:", "expected host:port"),
    ({"proxy": proxy(config="meshops.caddy")}, "config:", "absolute path"),
    ({"outputs": {"dir": "tls"}}, "dir:", "absolute path"),
    ({"outputs": {"p12": "maybe"}}, "p12:", "boolean"),
    ({"on_renew": [[]]}, "[]", "non-empty argv"),
    ({"on_renew": ["systemctl reload x"]}, "systemctl reload x", "valid list"),
]


@pytest.mark.parametrize(("fields", "needle", "fragment"), BAD_IDENTITY_FIELDS)
def test_badly_typed_identity_fields_are_refused(
    fields: dict[str, Any], needle: str, fragment: str
) -> None:
    data = make_mesh(identities={"api": {**identity("node-1"), **fields}})
    problem = expect_problem(to_yaml(data), needle, fragment)
    assert problem.path.startswith("identities.api")


BAD_POLICIES: list[tuple[dict[str, Any], str, str]] = [
    ({"methods": ["FETCH"]}, "FETCH", "'GET', 'HEAD'"),
    ({"methods": []}, "methods: []", "at least 1"),
    ({"paths": []}, "paths: []", "at least 1"),
    ({"paths": ["v1/*"]}, "v1/*", "must start with '/'"),
    ({"paths": ["/v1/*/x"]}, "/v1/*/x", "only allowed at the end"),
    ({"paths": ["/a b"]}, "/a b", "a path pattern holds letters"),
    ({"paths": ["/v1/x;jsessionid=1"]}, "/v1/x;", "no ';' parameters"),
    ({"paths": ["/v1/%2e%2e/*"]}, "/v1/%2e", "no percent-escapes"),
    ({"paths": ["/" + "a" * 1024]}, "/aaaa", "the limit is 1024"),
]


@pytest.mark.parametrize(("rule", "needle", "fragment"), BAD_POLICIES)
def test_bad_policy_rules_are_refused_at_the_item(
    rule: dict[str, Any], needle: str, fragment: str
) -> None:
    data = make_mesh(
        identities=1, policies=[{"name": "p", "from": "id-1", "to": "id-1", "allow": [rule]}]
    )
    problem = expect_problem(to_yaml(data), needle, fragment)
    assert problem.path.startswith("policies[0].allow[0]")


@pytest.mark.parametrize(
    ("request_text", "fragment"),
    [
        ("GET", "'METHOD /path'"),
        ("GET v1", "'METHOD /path'"),
        ("FETCH /x", "not an HTTP method"),
        ("* /x", "not an HTTP method"),
    ],
)
def test_bad_policy_test_requests_are_refused(request_text: str, fragment: str) -> None:
    data = make_mesh(identities=1, tests=[test_case("id-1", "id-1", request_text, "deny")])
    expect_problem(to_yaml(data), "request:", "tests[0].request", fragment)


def test_policy_test_expect_is_allow_or_deny() -> None:
    data = make_mesh(identities=1, tests=[test_case("id-1", "id-1", "GET /", "maybe")])
    expect_problem(to_yaml(data), "expect:", "tests[0].expect", "'allow' or 'deny'")


def test_mesh_model_is_frozen() -> None:
    mesh = load_text(to_yaml(make_mesh())).mesh
    with pytest.raises(Exception, match="frozen"):
        mesh.version = 2  # type: ignore[misc]
    assert isinstance(mesh, Mesh)
