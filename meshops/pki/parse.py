"""Reading certificates and CRLs back from PEM, and their public fingerprints."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshops.errors import MeshError


def load_certificates(data: bytes, *, what: str = "certificate file") -> list[x509.Certificate]:
    """Every certificate in a PEM file, in order; a clear error when there is none."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise MeshError(f"{what}: not a PEM certificate ({exc})") from None
    if not certs:
        raise MeshError(f"{what}: holds no certificate")
    return certs


def cert_fingerprint(cert: x509.Certificate) -> str:
    """`sha256:<hex>` of the DER certificate, as `openssl x509 -fingerprint -sha256` shows."""
    return "sha256:" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_crl(data: bytes, *, what: str = "CRL") -> x509.CertificateRevocationList:
    try:
        return x509.load_pem_x509_crl(data)
    except ValueError as exc:
        raise MeshError(f"{what}: not a PEM CRL ({exc})") from None


def load_crls(data: bytes, *, what: str = "CRL") -> list[x509.CertificateRevocationList]:
    """Every CRL in a PEM file, in order (one per root during a root rotation)."""
    marker = b"-----BEGIN X509 CRL-----"
    blocks = [marker + part for part in data.split(marker)[1:]]
    return [load_crl(block, what=what) for block in blocks]
