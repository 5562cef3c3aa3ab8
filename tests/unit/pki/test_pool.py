"""Caddy's trust pool: the current node CAs, and earlier ones only while still good."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from pki_factories import DAY, NOW, Pki, make_pki

from meshops.pki import build_crl, issue_node_ca
from meshops.pki.crl import Revoked
from meshops.pki.pool import node_ca_pool, node_of
from meshops.pki.specs import node_ca_common_name

NODES = ("web-1", "web-2")


def _reissued(pki: Pki, node: str) -> x509.Certificate:
    """`node`'s CA issued again (a renewal: new serial, same key), a day later."""
    from pki_factories import node_ca_spec

    return issue_node_ca(
        root_cert=pki.root.cert,
        root_key=pki.root.key,
        public_key=pki.node_cas[node].key.public_key(),
        spec=node_ca_spec(node),
        now=NOW + timedelta(days=1),
        ttl_seconds=30 * DAY,
    )


def _pool(pki: Pki, current: list[x509.Certificate], previous: list[x509.Certificate],
          **kw: object) -> list[x509.Certificate]:  # fmt: skip
    args: dict[str, object] = {"roots": [pki.root.cert], "crls": [], "nodes": NODES,
                               "now": NOW + timedelta(days=2)}  # fmt: skip
    args.update(kw)
    return node_ca_pool(current=current, previous=previous, **args)  # type: ignore[arg-type]


def test_a_node_ca_names_its_node() -> None:
    pki = make_pki("ecdsa-p256", nodes=NODES)
    assert [node_of(ca.cert) for ca in pki.node_cas.values()] == list(NODES)
    assert node_of(pki.root.cert) is None
    assert node_ca_common_name("web-1") == "web-1 node CA"


def test_the_pool_is_the_current_node_cas_without_the_root() -> None:
    pki = make_pki("ecdsa-p256", nodes=NODES)
    current = [ca.cert for ca in pki.node_cas.values()]
    assert _pool(pki, current, []) == current
    assert _pool(pki, current, current) == current  # no duplicates


def test_a_renewed_node_ca_keeps_its_predecessor_until_that_expires() -> None:
    pki = make_pki("ecdsa-p256", nodes=NODES)
    old = [ca.cert for ca in pki.node_cas.values()]
    renewed = _reissued(pki, "web-1")
    current = [renewed, old[1]]
    assert _pool(pki, current, old) == [old[0], renewed, old[1]]
    expired = NOW + timedelta(days=31)
    assert _pool(pki, current, old, now=expired) == [renewed, old[1]]


def test_a_removed_nodes_ca_leaves_the_pool_at_once() -> None:
    pki = make_pki("ecdsa-p256", nodes=NODES)
    old = [ca.cert for ca in pki.node_cas.values()]
    assert _pool(pki, [old[0]], old, nodes=["web-1"]) == [old[0]]


def test_a_revoked_node_ca_leaves_the_pool() -> None:
    pki = make_pki("ecdsa-p256", nodes=NODES)
    old = [ca.cert for ca in pki.node_cas.values()]
    renewed = _reissued(pki, "web-1")
    crl = build_crl(issuer_cert=pki.root.cert, issuer_key=pki.root.key,
                    revoked=[Revoked(old[0].serial_number, NOW)], number=2, now=NOW,
                    next_update_seconds=30 * DAY)  # fmt: skip
    assert _pool(pki, [renewed, old[1]], old, crls=[crl]) == [renewed, old[1]]


def test_a_certificate_the_current_roots_did_not_sign_never_enters() -> None:
    pki = make_pki("ecdsa-p256", nodes=NODES)
    stranger = make_pki("ecdsa-p256", nodes=NODES, mesh_name="someone else's")
    current = [ca.cert for ca in pki.node_cas.values()]
    forged = [ca.cert for ca in stranger.node_cas.values()]
    assert _pool(pki, current, forged) == current
    # and a CRL the roots did not sign revokes nothing
    crl = build_crl(issuer_cert=stranger.root.cert, issuer_key=stranger.root.key,
                    revoked=[Revoked(current[0].serial_number, NOW)], number=1, now=NOW,
                    next_update_seconds=DAY)  # fmt: skip
    assert _pool(pki, [current[1]], current, crls=[crl]) == current


def test_proxies_name_a_node_ca_as_openssl_and_go_print_it() -> None:
    """nginx ($ssl_client_i_dn) and Caddy ({tls.client.issuer}) see a leaf's issuer as
    RFC 2253 text; the renderers write `node_ca_subject(node)`: it must be the subject
    meshops gives each node CA (and unique per node)."""
    from meshops.pki.specs import node_ca_subject

    pki = make_pki("ecdsa-p256", nodes=NODES)
    for node, ca in pki.node_cas.items():
        assert ca.cert.subject.rfc4514_string() == node_ca_subject(node)
    assert len({node_ca_subject(n) for n in NODES}) == len(NODES)
