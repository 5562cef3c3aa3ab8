"""The fast PEM fingerprint used by the node CA's plan equals the parsed one."""

from __future__ import annotations

from datetime import UTC, datetime

from meshops.pki import cert_pem, generate_key, issue_root
from meshops.pki.parse import cert_fingerprint
from meshops.resources.repo.node_ca import pem_fingerprint


def test_pem_fingerprint_matches_the_parsed_certificate_fingerprint() -> None:
    cert = issue_root(
        mesh_name="t", key=generate_key("ecdsa-p256"), now=datetime.now(UTC), ttl_seconds=3600
    )
    pem = cert_pem(cert)
    assert pem_fingerprint(pem) == cert_fingerprint(cert)
    assert pem_fingerprint(b"junk" + pem + pem) == cert_fingerprint(cert)


def test_pem_fingerprint_of_garbage_is_empty() -> None:
    assert pem_fingerprint(b"") == ""
    assert pem_fingerprint(b"-----BEGIN CERTIFICATE-----\n@@@\n") == ""
    assert pem_fingerprint(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n") in (
        "",
        pem_fingerprint(b"-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n"),
    )
