"""Pieces shared by root, node CA and leaf issuance: validity windows, key ids, signing."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID

from meshops.errors import MeshError
from meshops.pki.keys import PrivateKey, PublicKey, signature_hash
from meshops.pki.specs import CLOCK_SKEW_SECONDS, utc

SKEW = timedelta(seconds=CLOCK_SKEW_SECONDS)


def validity(
    now: datetime, ttl_seconds: float, issuer: x509.Certificate | None = None
) -> tuple[datetime, datetime]:
    """`now - skew` .. `now + ttl`, whole seconds, never outside the issuer's window."""
    now = utc(now).replace(microsecond=0)
    not_before = now - SKEW
    not_after = now + timedelta(seconds=ttl_seconds)
    if issuer is not None:
        not_before = max(not_before, issuer.not_valid_before_utc)
        not_after = min(not_after, issuer.not_valid_after_utc)
    if ttl_seconds <= 0 or not_after <= now:
        raise MeshError(
            f"cannot issue a certificate valid after {now:%Y-%m-%d %H:%M:%SZ}: "
            + (
                f"ttl must be positive, got {ttl_seconds:g}s"
                if ttl_seconds <= 0
                else f"its issuer {issuer_name(issuer)} expired {issuer_expiry(issuer)}"
            ),
            hint=None if ttl_seconds <= 0 else "re-issue the issuing CA first",
        )
    return not_before, not_after


def issuer_name(cert: x509.Certificate | None) -> str:
    return cert.subject.rfc4514_string() if cert is not None else "(none)"


def issuer_expiry(cert: x509.Certificate | None) -> str:
    return f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}" if cert is not None else "(never)"


def ski_digest(public_key: PublicKey) -> bytes:
    """RFC 5280 method 1: SHA-1 of the subjectPublicKey bits.

    The same value as `SubjectKeyIdentifier.from_public_key`, taken straight from the
    key's raw encoding instead of re-parsing its DER SubjectPublicKeyInfo.
    """
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        raw = public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    else:
        raw = public_key.public_bytes(Encoding.DER, PublicFormat.PKCS1)
    return hashlib.sha1(raw, usedforsecurity=False).digest()


def ski_of(public_key: PublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier(ski_digest(public_key))


def encoded(value: x509.ExtensionType, *, critical: bool) -> x509.Extension[x509.ExtensionType]:
    """An extension encoded to DER once, so that signing copies bytes.

    `cryptography` encodes extension objects on every signature by reading their
    attributes back from Python; a pre-encoded value is byte-for-byte the same
    certificate for a fraction of the cost.
    """
    raw = x509.UnrecognizedExtension(value.oid, value.public_bytes())
    return x509.Extension(value.oid, critical, raw)


def encoded_ski(public_key: PublicKey) -> x509.Extension[x509.ExtensionType]:
    """The SKI extension, DER-encoded directly (an OCTET STRING of the 20-byte digest)."""
    raw = x509.UnrecognizedExtension(
        ExtensionOID.SUBJECT_KEY_IDENTIFIER, b"\x04\x14" + ski_digest(public_key)
    )
    return x509.Extension(ExtensionOID.SUBJECT_KEY_IDENTIFIER, False, raw)


@lru_cache(maxsize=64)
def aki_for(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI pointing at `issuer`: its SKI when it has one, else computed from its key.

    Cached per issuer: every leaf of a node shares it, and parsing the issuer's
    extensions on each issuance would be wasted work.
    """
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    return builder.sign(key, signature_hash(key))


def serial_or_random(serial: int | None) -> int:
    """The given serial, or a random 159-bit one (RFC 5280: positive, at most 20 octets)."""
    return serial if serial is not None else x509.random_serial_number()
