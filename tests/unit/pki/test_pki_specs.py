"""Specs from a mesh, and the cheap import of meshops.pki."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import ip_address
from pathlib import Path

from meshops.model import load_file
from meshops.pki import LeafSpec, NodeCASpec

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "mesh.yaml"


def test_node_ca_spec_permits_the_node_and_its_identities_names() -> None:
    mesh = load_file(EXAMPLE).mesh
    spec = NodeCASpec.for_node(mesh, "web-1", overlay=["10.42.0.11"])
    assert spec.node == "web-1"
    assert spec.trust_domain == mesh.mesh.trust_domain
    assert spec.key_type == mesh.ca.key_type
    assert spec.permitted_dns[0] == f"web-1.{mesh.mesh.domain}"
    assert mesh.mesh.domain not in spec.permitted_dns  # never the whole mesh
    for identity in mesh.identities_on("web-1"):
        assert f"{identity}.{mesh.mesh.domain}" in spec.permitted_dns
    for name in mesh.nodes["web-1"].dns:
        assert name in spec.dns_names
    for identity in mesh.identities_on("web-1"):
        for name in mesh.identities[identity].dns:
            assert name in spec.dns_names
        for ip in mesh.identities[identity].ips:
            assert ip in spec.ips
    assert spec.ips[0] == ip_address("10.42.0.11")
    assert spec.common_name == "web-1 node CA"


def test_leaf_spec_follows_the_identity_then_the_cert_defaults() -> None:
    mesh = load_file(EXAMPLE).mesh
    spec = LeafSpec.for_identity(mesh, "api", "api-1", overlay=["10.42.0.21"])
    assert spec.spiffe_id == f"spiffe://{mesh.mesh.trust_domain}/api"
    assert spec.ttl_seconds == float(mesh.leaf_ttl("api"))
    assert spec.key_type == mesh.leaf_key_type("api")
    assert spec.dns_names[:2] == (f"api.{mesh.mesh.domain}", f"api-1.{mesh.mesh.domain}")
    assert spec.ips[0] == ip_address("10.42.0.21")


def test_names_inside_a_permitted_name_need_no_extra_subtree() -> None:
    spec = NodeCASpec(
        node="n",
        trust_domain="t.example",
        domain="mesh.example",
        identities=("api",),
        dns_names=(
            "x.n.mesh.example",
            "*.apps.example.org",
            "apps.example.org",
            "api.mesh.example",
        ),
    )
    assert spec.permitted_dns == ("n.mesh.example", "api.mesh.example", "apps.example.org")


def test_importing_meshops_pki_does_not_load_cryptography() -> None:
    code = "import sys, meshops.pki; assert 'cryptography' not in sys.modules, 'loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_exported_name_resolves() -> None:
    import meshops.pki as pki

    for name in pki.__all__:
        assert getattr(pki, name) is not None
