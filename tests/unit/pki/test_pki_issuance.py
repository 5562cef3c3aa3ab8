"""Root, node CA and leaf issuance, checked with the real `openssl verify` and `x509 -text`."""

from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pki_factories import (
    DAY,
    DOMAIN,
    HOUR,
    NOW,
    TRUST_DOMAIN,
    Pki,
    leaf_spec,
    make_pki,
    node_ca_spec,
    openssl_text,
    openssl_verify,
)

from meshops.errors import MeshError
from meshops.pki import (
    Revoked,
    build_crl,
    crl_pem,
    generate_key,
    issue_leaf,
    issue_node_ca,
    issue_root,
    key_type_of,
)
from meshops.pki.leaf import leaf_sans, sign_leaf_with_names


def _ext(
    cert: x509.Certificate, cls: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(cls)


# -- the happy path, every key type ---------------------------------------------------


@pytest.mark.parametrize("purpose", ["sslserver", "sslclient"])
def test_leaf_verifies_with_openssl_strict_for_server_and_client(
    pki: Pki, purpose: str, tmp_path: Path
) -> None:
    leaf = pki.leaf()
    verdict = openssl_verify(
        tmp_path,
        leaf.cert,
        roots=[pki.root.cert],
        untrusted=[pki.node_cas["web-1"].cert],
        purpose=purpose,
    )
    assert verdict.ok, verdict.output


def test_node_ca_verifies_against_root_with_openssl_strict(pki: Pki, tmp_path: Path) -> None:
    verdict = openssl_verify(
        tmp_path, pki.node_cas["api-1"].cert, roots=[pki.root.cert], purpose="any"
    )
    assert verdict.ok, verdict.output


def test_every_certificate_carries_the_requested_key_type(pki: Pki) -> None:
    leaf = pki.leaf()
    for cert in (pki.root.cert, pki.node_cas["web-1"].cert, leaf.cert):
        assert key_type_of(cert.public_key()) == pki.key_type  # type: ignore[arg-type]


def test_root_is_a_self_signed_critical_ca_with_key_ids(pki: Pki, tmp_path: Path) -> None:
    text = openssl_text(tmp_path, pki.root.cert)
    assert "X509v3 Basic Constraints: critical\n                CA:TRUE\n" in text
    assert "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign" in text
    assert "X509v3 Subject Key Identifier" in text
    assert "X509v3 Authority Key Identifier" in text
    root = pki.root.cert
    assert root.issuer == root.subject
    root.verify_directly_issued_by(root)
    assert root.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert root.not_valid_after_utc == NOW + timedelta(days=3650)


def test_node_ca_has_pathlen_zero_and_critical_name_constraints(pki: Pki, tmp_path: Path) -> None:
    text = openssl_text(tmp_path, pki.node_cas["web-1"].cert)
    assert "CA:TRUE, pathlen:0" in text
    assert "Certificate Sign, CRL Sign" in text
    assert "X509v3 Name Constraints: critical" in text
    assert f"DNS:web-1.{DOMAIN}\n" in text and f"DNS:api.{DOMAIN}\n" in text
    assert f"DNS:{DOMAIN}\n" not in text  # its own names, never the whole mesh domain
    assert "IP:10.42.0.11/255.255.255.255" in text
    assert "URI:" not in text  # no URI constraint: strict verifiers reject it
    subject = pki.node_cas["web-1"].cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web-1 node CA"


def test_node_ca_constraints_cover_extra_names_wildcards_and_ipv6() -> None:
    root_key = generate_key("ecdsa-p256")
    root = issue_root(mesh_name="demo", key=root_key, now=NOW, ttl_seconds=365 * DAY)
    spec = node_ca_spec(
        dns_names=("www.example.com", "*.apps.example.org", "api.mesh.demo.internal"),
        ips=(ip_address("10.42.0.11"), ip_address("fd42::11"), ip_address("198.51.100.7")),
    )
    cert = issue_node_ca(
        root_cert=root,
        root_key=root_key,
        public_key=generate_key("ecdsa-p256").public_key(),
        spec=spec,
        now=NOW,
        ttl_seconds=30 * DAY,
    )
    nc = _ext(cert, x509.NameConstraints).value
    assert isinstance(nc, x509.NameConstraints)
    permitted = [str(n.value) for n in nc.permitted_subtrees or []]
    assert permitted == [
        f"web-1.{DOMAIN}",
        f"api.{DOMAIN}",  # the identity on web-1; also the listed api.mesh.demo.internal
        "www.example.com",
        "apps.example.org",  # the parent of the wildcard
        "10.42.0.11/32",
        "fd42::11/128",
        "198.51.100.7/32",
    ]
    assert nc.excluded_subtrees is None


def test_leaf_is_an_x509_svid_with_exactly_one_uri_san(pki: Pki, tmp_path: Path) -> None:
    cert = pki.leaf().cert
    sans = _ext(cert, x509.SubjectAlternativeName).value
    assert isinstance(sans, x509.SubjectAlternativeName)
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://{TRUST_DOMAIN}/api"
    ]
    assert sans.get_values_for_type(x509.DNSName) == [
        f"api.{DOMAIN}",
        f"web-1.{DOMAIN}",
        "www.example.com",
    ]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ip_address("10.42.0.11"),
        ip_address("fd42::11"),
    ]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "api"
    text = openssl_text(tmp_path, cert)
    assert "X509v3 Basic Constraints: critical\n                CA:FALSE" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    usage = (
        "Digital Signature, Key Encipherment"
        if pki.key_type == "rsa-3072"
        else "Digital Signature\n"
    )
    assert f"X509v3 Key Usage: critical\n                {usage}" in text
    assert "X509v3 Subject Key Identifier" in text
    assert "X509v3 Authority Key Identifier" in text


def test_leaf_eku_is_exactly_server_and_client_auth(p256: Pki) -> None:
    eku = _ext(p256.leaf().cert, x509.ExtendedKeyUsage).value
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def test_leaf_aki_points_at_its_node_ca_ski(p256: Pki) -> None:
    leaf = p256.leaf().cert
    aki = _ext(leaf, x509.AuthorityKeyIdentifier).value
    ski = _ext(p256.node_cas["web-1"].cert, x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ski.digest


def test_leaf_validity_starts_five_minutes_early_and_lasts_the_ttl(p256: Pki) -> None:
    later = NOW + timedelta(hours=3)
    cert = p256.leaf(now=later).cert
    assert cert.not_valid_before_utc == later - timedelta(minutes=5)
    assert cert.not_valid_after_utc == later + timedelta(hours=48)


def test_leaf_never_outlives_its_node_ca(p256: Pki) -> None:
    ca = p256.node_cas["web-1"].cert
    late = ca.not_valid_after_utc - timedelta(hours=1)
    cert = p256.leaf(now=late).cert
    assert cert.not_valid_after_utc == ca.not_valid_after_utc


def test_node_ca_never_outlives_the_root() -> None:
    key = generate_key("ed25519")
    root = issue_root(mesh_name="demo", key=key, now=NOW, ttl_seconds=10 * DAY)
    ca = issue_node_ca(
        root_cert=root,
        root_key=key,
        public_key=generate_key("ed25519").public_key(),
        spec=node_ca_spec(key_type="ed25519"),
        now=NOW,
        ttl_seconds=30 * DAY,
    )
    assert ca.not_valid_after_utc == root.not_valid_after_utc


def test_issuing_under_an_expired_node_ca_is_a_clear_error(p256: Pki) -> None:
    ca = p256.node_cas["web-1"]
    with pytest.raises(MeshError, match="expired"):
        issue_leaf(
            node_ca_cert=ca.cert,
            node_ca_key=ca.key,
            public_key=generate_key("ecdsa-p256").public_key(),
            spec=leaf_spec(),
            now=ca.cert.not_valid_after_utc + timedelta(seconds=1),
        )


def test_given_serial_is_used(p256: Pki) -> None:
    ca = p256.node_cas["web-1"]
    cert = issue_leaf(
        node_ca_cert=ca.cert,
        node_ca_key=ca.key,
        public_key=generate_key("ecdsa-p256").public_key(),
        spec=leaf_spec(),
        now=NOW,
        serial=4242,
    )
    assert cert.serial_number == 4242


def test_duplicate_names_in_a_spec_appear_once(p256: Pki) -> None:
    spec = leaf_spec(
        dns=(f"api.{DOMAIN}", "www.example.com", "www.example.com"),
        ips=(ip_address("10.42.0.11"), ip_address("10.42.0.11")),
    )
    names = [str(n.value) for n in leaf_sans(spec)]
    assert len(names) == len(set(names))


# -- what must be rejected ------------------------------------------------------------


def test_leaf_of_node_a_does_not_verify_against_node_b_ca(pki: Pki, tmp_path: Path) -> None:
    leaf = pki.leaf(node="web-1")
    verdict = openssl_verify(
        tmp_path,
        leaf.cert,
        roots=[pki.root.cert],
        untrusted=[pki.node_cas["api-1"].cert],
    )
    assert not verdict.ok
    assert "unable to get local issuer certificate" in verdict.output


def test_leaf_of_node_a_is_rejected_when_node_b_ca_is_the_only_trust_anchor(
    p256: Pki, tmp_path: Path
) -> None:
    leaf = p256.leaf(node="web-1")
    verdict = openssl_verify(
        tmp_path, leaf.cert, roots=[p256.node_cas["api-1"].cert], extra=["-partial_chain"]
    )
    assert not verdict.ok


def _forbidden_leaf(pki: Pki, sans: list[x509.GeneralName], cn: str = "api") -> x509.Certificate:
    """A leaf built past issue_leaf's spec, to prove the node CA's constraints hold."""
    ca = pki.node_cas["web-1"]
    return sign_leaf_with_names(
        node_ca_cert=ca.cert,
        node_ca_key=ca.key,
        public_key=generate_key(pki.key_type).public_key(),
        common_name=cn,
        sans=sans,
        now=NOW,
        ttl_seconds=HOUR,
        serial=7,
    )


@pytest.mark.parametrize(
    "outside",
    [
        x509.DNSName("api.evil.example"),
        x509.DNSName("mesh.demo.internal.evil.example"),
        x509.IPAddress(ip_address("10.42.0.99")),
        x509.IPAddress(ip_address("fd42::99")),
        x509.DNSName(f"api-1.{DOMAIN}"),
        x509.DNSName(f"db.{DOMAIN}"),
    ],
    ids=[
        "dns-elsewhere",
        "dns-suffix-trick",
        "ip-other-node",
        "ipv6-other",
        "another-nodes-name",
        "identity-not-on-this-node",
    ],
)
def test_leaf_with_a_name_outside_the_node_ca_constraints_is_rejected(
    p256: Pki, outside: x509.GeneralName, tmp_path: Path
) -> None:
    sans: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(f"spiffe://{TRUST_DOMAIN}/api"),
        x509.DNSName(f"api.{DOMAIN}"),
        outside,
    ]
    if isinstance(outside, x509.UniformResourceIdentifier):
        sans = [*sans[1:], outside]
    cert = _forbidden_leaf(p256, sans)
    verdict = openssl_verify(
        tmp_path, cert, roots=[p256.root.cert], untrusted=[p256.node_cas["web-1"].cert]
    )
    assert not verdict.ok
    assert "name constraint" in verdict.output or "permitted subtree violation" in verdict.output


def test_same_leaf_names_inside_the_constraints_verify(p256: Pki, tmp_path: Path) -> None:
    cert = _forbidden_leaf(
        p256,
        [
            x509.UniformResourceIdentifier(f"spiffe://{TRUST_DOMAIN}/api"),
            x509.DNSName(f"deep.api.{DOMAIN}"),
            x509.IPAddress(ip_address("10.42.0.11")),
        ],
    )
    verdict = openssl_verify(
        tmp_path, cert, roots=[p256.root.cert], untrusted=[p256.node_cas["web-1"].cert]
    )
    assert verdict.ok, verdict.output


def test_leaf_verifies_only_while_its_node_ca_is_valid(p256: Pki, tmp_path: Path) -> None:
    ca = p256.node_cas["web-1"].cert
    leaf = p256.leaf(now=ca.not_valid_after_utc - timedelta(hours=2)).cert
    chain = {"roots": [p256.root.cert], "untrusted": [ca]}
    inside = openssl_verify(
        tmp_path, leaf, attime=ca.not_valid_after_utc - timedelta(hours=1), **chain
    )  # type: ignore[arg-type]
    assert inside.ok, inside.output
    after = openssl_verify(
        tmp_path, leaf, attime=ca.not_valid_after_utc + timedelta(hours=1), **chain
    )  # type: ignore[arg-type]
    assert not after.ok
    assert "expired" in after.output


def test_expired_node_ca_is_rejected(p256: Pki, tmp_path: Path) -> None:
    ca = p256.node_cas["web-1"].cert
    later = ca.not_valid_after_utc + timedelta(seconds=1)
    verdict = openssl_verify(tmp_path, ca, roots=[p256.root.cert], purpose="any", attime=later)
    assert not verdict.ok
    assert "certificate has expired" in verdict.output


def test_revoked_node_ca_is_rejected_with_the_root_crl(pki: Pki, tmp_path: Path) -> None:
    leaf = pki.leaf(node="web-1")
    revoked_ca = pki.node_cas["web-1"].cert
    crl = build_crl(
        issuer_cert=pki.root.cert,
        issuer_key=pki.root.key,
        revoked=[Revoked(revoked_ca.serial_number, NOW)],
        number=1,
        now=NOW,
        next_update_seconds=7 * DAY,
    )
    # -crl_check checks the leaf's issuer too, so a (empty) node CA CRL is also given.
    node_crl = build_crl(
        issuer_cert=revoked_ca,
        issuer_key=pki.node_cas["web-1"].key,
        revoked=[],
        number=1,
        now=NOW,
        next_update_seconds=7 * DAY,
    )
    at = NOW + timedelta(hours=1)
    revoked = openssl_verify(
        tmp_path,
        revoked_ca,
        roots=[pki.root.cert],
        purpose="any",
        crl=crl_pem(crl),
        attime=at,
    )
    assert not revoked.ok
    assert "certificate revoked" in revoked.output
    whole_chain = openssl_verify(
        tmp_path,
        leaf.cert,
        roots=[pki.root.cert],
        untrusted=[revoked_ca],
        extra=["-crl_check_all"],
        crl=crl_pem(crl) + crl_pem(node_crl),
        attime=at,
    )
    assert not whole_chain.ok
    assert "certificate revoked" in whole_chain.output


def test_unrevoked_node_ca_passes_the_crl_check(p256: Pki, tmp_path: Path) -> None:
    crl = build_crl(
        issuer_cert=p256.root.cert,
        issuer_key=p256.root.key,
        revoked=[Revoked(p256.node_cas["web-1"].cert.serial_number, NOW)],
        number=2,
        now=NOW,
        next_update_seconds=7 * DAY,
    )
    verdict = openssl_verify(
        tmp_path,
        p256.node_cas["api-1"].cert,
        roots=[p256.root.cert],
        purpose="any",
        crl=crl_pem(crl),
        attime=NOW + timedelta(hours=1),
    )
    assert verdict.ok, verdict.output


def test_leaf_of_one_mesh_does_not_verify_under_another_mesh_root(tmp_path: Path) -> None:
    ours, theirs = make_pki("ed25519", nodes=("web-1",)), make_pki("ed25519", nodes=("web-1",))
    leaf = ours.leaf()
    verdict = openssl_verify(
        tmp_path, leaf.cert, roots=[theirs.root.cert], untrusted=[ours.node_cas["web-1"].cert]
    )
    assert not verdict.ok


def test_zero_ttl_is_a_clear_error(p256: Pki) -> None:
    with pytest.raises(MeshError, match="ttl must be positive"):
        p256.leaf(leaf_spec(ttl_seconds=0.0))


def test_leaf_ttl_shorter_than_an_hour_is_honoured(p256: Pki) -> None:
    cert = p256.leaf(leaf_spec(ttl_seconds=0.5 * HOUR)).cert
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(minutes=35)


def test_fast_path_encodes_exactly_what_the_plain_builder_would(pki: Pki) -> None:
    """issue_leaf pre-encodes its extensions; the certificate must not differ by a byte."""
    from cryptography.x509.oid import ExtensionOID as OID

    ca = pki.node_cas["web-1"]
    spec = leaf_spec(key_type=pki.key_type, ips=(ip_address("10.42.0.11"), ip_address("fd42::11")))
    key = generate_key(pki.key_type).public_key()
    fast = issue_leaf(
        node_ca_cert=ca.cert, node_ca_key=ca.key, public_key=key, spec=spec, now=NOW, serial=99
    )
    parsed = fast.extensions
    builder = (
        x509.CertificateBuilder()
        .subject_name(fast.subject)
        .issuer_name(ca.cert.subject)
        .public_key(key)
        .serial_number(99)
        .not_valid_before(fast.not_valid_before_utc)
        .not_valid_after(fast.not_valid_after_utc)
    )
    for ext in parsed:
        builder = builder.add_extension(ext.value, ext.critical)
    plain = builder.sign(ca.key, fast.signature_hash_algorithm)  # type: ignore[arg-type]
    assert fast.tbs_certificate_bytes == plain.tbs_certificate_bytes
    assert [e.oid for e in parsed] == [
        OID.BASIC_CONSTRAINTS,
        OID.KEY_USAGE,
        OID.EXTENDED_KEY_USAGE,
        OID.SUBJECT_ALTERNATIVE_NAME,
        OID.SUBJECT_KEY_IDENTIFIER,
        OID.AUTHORITY_KEY_IDENTIFIER,
    ]
    ski = parsed.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key)


def test_out_of_range_serial_is_refused(p256: Pki) -> None:
    ca = p256.node_cas["web-1"]
    for serial in (0, -1, 2**159):
        with pytest.raises(ValueError, match="serial"):
            issue_leaf(
                node_ca_cert=ca.cert,
                node_ca_key=ca.key,
                public_key=generate_key("ecdsa-p256").public_key(),
                spec=leaf_spec(),
                now=NOW,
                serial=serial,
            )
