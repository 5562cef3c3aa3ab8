"""CRLs: number, AKI, entries, signature, checked with `openssl crl`."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from pki_factories import DAY, NOW, Pki, write

from meshops.errors import MeshError
from meshops.pki import Revoked, build_crl, cert_pem, crl_number, crl_pem


def test_crl_carries_number_aki_and_sorted_unique_entries(pki: Pki, tmp_path: Path) -> None:
    crl = build_crl(
        issuer_cert=pki.root.cert,
        issuer_key=pki.root.key,
        revoked=[Revoked(30, NOW), Revoked(10, NOW - timedelta(days=1)), Revoked(30, NOW)],
        number=7,
        now=NOW,
        next_update_seconds=7 * DAY,
    )
    assert crl_number(crl) == 7
    assert [r.serial_number for r in crl] == [10, 30]
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NOW + timedelta(days=7)
    assert crl.is_signature_valid(pki.root.cert.public_key())  # type: ignore[arg-type]
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = pki.root.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest

    crl_file = write(tmp_path / "crl.pem", crl_pem(crl))
    ca_file = write(tmp_path / "ca.pem", cert_pem(pki.root.cert))
    proc = subprocess.run(
        ["openssl", "crl", "-in", str(crl_file), "-CAfile", str(ca_file), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "verify OK" in proc.stderr + proc.stdout
    assert "X509v3 CRL Number: \n                7" in proc.stdout
    assert "Serial Number: 0A" in proc.stdout


def test_empty_crl_is_valid(p256: Pki) -> None:
    crl = build_crl(
        issuer_cert=p256.root.cert,
        issuer_key=p256.root.key,
        revoked=[],
        number=0,
        now=NOW,
        next_update_seconds=DAY,
    )
    assert len(crl) == 0
    assert crl_number(crl) == 0


def test_crl_signed_with_the_wrong_key_is_refused(p256: Pki) -> None:
    with pytest.raises(MeshError, match="does not belong to that CA"):
        build_crl(
            issuer_cert=p256.root.cert,
            issuer_key=p256.node_cas["web-1"].key,
            revoked=[],
            number=1,
            now=NOW,
            next_update_seconds=DAY,
        )


@pytest.mark.parametrize(("number", "next_update"), [(-1, DAY), (1, 0.0)])
def test_negative_number_or_past_next_update_is_refused(
    p256: Pki, number: int, next_update: float
) -> None:
    with pytest.raises(MeshError):
        build_crl(
            issuer_cert=p256.root.cert,
            issuer_key=p256.root.key,
            revoked=[],
            number=number,
            now=NOW,
            next_update_seconds=next_update,
        )
