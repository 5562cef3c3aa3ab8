"""The Envoy bootstrap parses into Envoy's own API types and carries the table's RBAC."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from render_factories import spec_for

from meshops.errors import CommandFailed
from meshops.model import load_file
from meshops.providers.proxies import validate_envoy
from meshops.render import proxy_spec, render_envoy
from meshops.render.interpret import Request, evaluate, mesh_leaf
from meshops.render.spec import spiffe_id

EXAMPLE = Path(__file__).parents[3] / "examples" / "mesh.yaml"


def _api_bootstrap_text() -> str:
    loaded = load_file(EXAMPLE)
    spec = proxy_spec(loaded.mesh, loaded.access, "api", tls_dir="/srv/root/etc/meshops/tls/api")
    return render_envoy(spec)


def _rbac(bootstrap: object, index: int = 1) -> object:
    """The ALLOW RBAC filter (index 1; index 0 is the DENY filter for odd paths)."""
    listener = bootstrap.static_resources.listeners[0]  # type: ignore[attr-defined]
    manager = listener.filter_chains[0].filters[0].typed_config.unpack()
    return manager.http_filters[index].typed_config.unpack()


def _principal_sans(principal: object) -> tuple[str, tuple[str, ...]]:
    """(URI SAN, DNS SANs) an and_ids principal of mtls_authenticated checks needs."""
    uri, nodes = principal.and_ids.ids  # type: ignore[attr-defined]
    alternatives = nodes.or_ids.ids if nodes.or_ids else [nodes]
    sans = []
    for item in [uri, *alternatives]:
        assert item.custom.name == "envoy.rbac.principals.mtls_authenticated"
        config = item.custom.typed_config.unpack()
        sans.append((config.san_matcher.san_type.name, config.san_matcher.matcher.exact))
    assert sans[0][0] == "URI" and all(kind == "DNS" for kind, _ in sans[1:])
    return sans[0][1], tuple(name for _, name in sans[1:])


def test_bootstrap_parses_with_every_typed_config_resolved_to_its_message() -> None:
    bootstrap = validate_envoy(_api_bootstrap_text())
    chain = bootstrap.static_resources.listeners[0].filter_chains[0]
    tls = chain.transport_socket.typed_config.unpack()
    manager = chain.filters[0].typed_config.unpack()
    filters = [f.typed_config.unpack() for f in manager.http_filters]
    assert type(tls).__name__ == "DownstreamTlsContext"
    assert tls.require_client_certificate is True
    context = tls.common_tls_context
    assert context.validation_context.trusted_ca.filename == "/srv/root/etc/meshops/tls/api/ca.pem"
    assert context.validation_context.crl.filename == "/srv/root/etc/meshops/tls/api/crl.pem"
    assert context.tls_params.tls_minimum_protocol_version.name == "TLSv1_3"
    assert type(manager).__name__ == "HttpConnectionManager"
    assert [type(f).__name__ for f in filters] == ["Rbac", "Rbac", "Router"]
    assert [f.rules.action.name for f in filters[:2]] == ["DENY", "ALLOW"]
    assert bootstrap.admin is None  # no admin listener at all


def test_rbac_for_example_api_is_pinned_to_the_access_table() -> None:
    rbac = _rbac(validate_envoy(_api_bootstrap_text()))
    rendered = {}
    for name, policy in rbac.rules.policies.items():  # type: ignore[attr-defined]
        (principal,) = policy.principals
        (permission,) = policy.permissions
        methods_rule, paths_rule = permission.and_rules.rules
        alternatives = methods_rule.or_rules.rules if methods_rule.or_rules else [methods_rule]
        methods = sorted(r.header.string_match.exact for r in alternatives)
        prefix = paths_rule.url_path.path.prefix
        uri, nodes = _principal_sans(principal)
        rendered[name] = (uri, tuple(methods), prefix)
        caller = uri.rsplit("/", 1)[1]
        example = load_file(EXAMPLE).mesh
        assert nodes == tuple(f"{n}.mesh.demo.internal" for n in example.identities[caller].nodes)
    admin_methods = ("DELETE", "GET", "HEAD", "POST", "PUT")
    assert rendered == {
        "admin-0": ("spiffe://demo.internal/admin", admin_methods, "/v1/"),
        "batch-1": ("spiffe://demo.internal/batch", ("GET",), "/v1/reports/"),
        "web-2": ("spiffe://demo.internal/web", ("GET", "HEAD"), "/v1/"),
    }
    from_table = {
        (spiffe_id("demo.internal", r.caller), r.methods, tuple(p.rstrip("*") for p in r.paths))
        for r in load_file(EXAMPLE).access.rules_for("api")
    }
    assert {(uri, methods, (prefix,)) for uri, methods, prefix in rendered.values()} == from_table


def test_example_policy_tests_for_api_hold_in_the_rendered_bootstrap() -> None:
    loaded = load_file(EXAMPLE)
    text = _api_bootstrap_text()
    cases = [t for t in loaded.mesh.tests if t.to == "api"]
    assert cases
    for case in cases:
        node = loaded.mesh.identities[case.from_].nodes[0]
        cert = mesh_leaf("demo.internal", "mesh.demo.internal", case.from_, node)
        allowed = evaluate("envoy", text, Request(cert, case.method, case.path))
        assert allowed == (case.expect == "allow"), case.request


def test_permissive_bootstrap_adds_a_plaintext_listener_without_rbac() -> None:
    loaded = load_file(EXAMPLE)
    spec = proxy_spec(loaded.mesh, loaded.access, "api", tls_dir="/t", plaintext_listen=9080)
    bootstrap = validate_envoy(render_envoy(dataclasses.replace(spec, mode="permissive")))
    tls_listener, plain = bootstrap.static_resources.listeners
    assert plain.address.socket_address.port_value == 9080
    assert plain.filter_chains[0].transport_socket is None
    tls = tls_listener.filter_chains[0].transport_socket.typed_config.unpack()
    assert tls.require_client_certificate is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("normalize_path", "normalise_path"), "Unknown field 'normalise_path'"),
        (("TLSv1_3", "TLSv1_9"), "TLSv1_9"),
        (("rbac.v3.RBAC", "rbac.v3.RBACX"), "unregistered type"),
        (("filters.http.rbac.v3", "filters.http.nope.v3"), "unknown @type"),
        (("san_matcher:", "san_matchers:"), "Unknown field 'san_matchers'"),
        (("san_type: DNS", "san_type: DNZ"), "DNZ"),
    ],
)
def test_validator_refuses_unknown_fields_types_and_enum_values(
    change: tuple[str, str], message: str
) -> None:
    text = render_envoy(spec_for("envoy", load_file(EXAMPLE).access, "api"))
    validate_envoy(text)
    with pytest.raises(CommandFailed, match=message):
        validate_envoy(text.replace(*change))
