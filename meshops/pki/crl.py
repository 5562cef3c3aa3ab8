"""Certificate revocation lists: the root revokes the node CAs of removed nodes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshops.errors import MeshError
from meshops.pki._build import aki_for
from meshops.pki.keys import PrivateKey, keys_match, signature_hash
from meshops.pki.specs import utc


@dataclass(frozen=True)
class Revoked:
    """One revoked certificate: its serial and when it was revoked."""

    serial: int
    revoked_at: datetime


def build_crl(
    *,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    revoked: Sequence[Revoked],
    number: int,
    now: datetime,
    next_update_seconds: float,
) -> x509.CertificateRevocationList:
    """A CRL signed by `issuer_key`, with CRL number and AKI, sorted by serial.

    `number` must grow with every CRL the issuer publishes (RFC 5280 5.2.3); the caller
    keeps it in state.
    """
    if number < 0:
        raise MeshError(f"CRL number must not be negative, got {number}")
    if next_update_seconds <= 0:
        raise MeshError(f"CRL next update must be in the future, got {next_update_seconds:g}s")
    if not keys_match(issuer_key, issuer_cert):
        raise MeshError(
            f"the key given to sign the CRL of {issuer_cert.subject.rfc4514_string()} "
            "does not belong to that CA"
        )
    this_update = utc(now).replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(this_update)
        .next_update(this_update + timedelta(seconds=next_update_seconds))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(aki_for(issuer_cert), critical=False)
    )
    seen: set[int] = set()
    for entry in sorted(revoked, key=lambda r: r.serial):
        if entry.serial in seen:
            continue
        seen.add(entry.serial)
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(utc(entry.revoked_at).replace(microsecond=0))
            .build()
        )
    return builder.sign(issuer_key, signature_hash(issuer_key))


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def crl_number(crl: x509.CertificateRevocationList) -> int | None:
    """The CRL number extension, or None when the CRL has none."""
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None
