"""Pieces shared by root, node CA and leaf issuance: validity windows, key ids, signing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cryptography import x509

from meshops.errors import MeshError
from meshops.pki.keys import PrivateKey, PublicKey, signature_hash
from meshops.pki.specs import CLOCK_SKEW_SECONDS

SKEW = timedelta(seconds=CLOCK_SKEW_SECONDS)


def utc(now: datetime) -> datetime:
    """`now` as an aware UTC datetime; naive values are taken to be UTC already."""
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


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


def ski_of(public_key: PublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


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
