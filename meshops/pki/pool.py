"""The client trust pool of proxies that check no CRL (Caddy): node CAs, not the root.

Go accepts an intermediate as a trust anchor, so a Caddy whose pool lists the node CAs
instead of the root refuses a removed node's CA as soon as it reloads, whatever
`notAfter` its leaves carry. The pool holds the current node CA of every node, plus
node CAs an earlier pool held that are still good (signed by a current root, unexpired,
not revoked, of a node still in the mesh): a renewed node CA's host may apply after its
peers, and its leaves from the previous CA must keep working until then, as they do
with nginx and Envoy, which trust the root and check the CRL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from meshops.pki.specs import node_ca_common_name, utc

SUFFIX = node_ca_common_name("")  # " node CA"


def node_of(cert: x509.Certificate) -> str | None:
    """The node a node CA certificate was issued for (from its CN), or None."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        return None
    value = names[0].value
    text = value if isinstance(value, str) else value.decode(errors="replace")
    return text[: -len(SUFFIX)] if text.endswith(SUFFIX) and len(text) > len(SUFFIX) else None


def _issued_by(cert: x509.Certificate, roots: Sequence[x509.Certificate]) -> bool:
    for root in roots:
        try:
            cert.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _revoked(
    cert: x509.Certificate,
    crls: Iterable[x509.CertificateRevocationList],
    roots: Sequence[x509.Certificate],
) -> bool:
    for crl in crls:
        if crl.issuer != cert.issuer:
            continue
        signed = any(crl.is_signature_valid(root.public_key()) for root in roots)  # type: ignore[arg-type]
        if signed and crl.get_revoked_certificate_by_serial_number(cert.serial_number):
            return True
    return False


def node_ca_pool(
    *,
    current: Sequence[x509.Certificate],
    previous: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    nodes: Iterable[str],
    now: datetime,
) -> list[x509.Certificate]:
    """The pool: `current` node CAs, then those of `previous` that are still good, in
    a stable order (by node, then notAfter), without duplicates."""
    members = set(nodes)
    moment = utc(now)
    kept = [
        cert
        for cert in previous
        if node_of(cert) in members
        and cert.not_valid_before_utc <= moment < cert.not_valid_after_utc
        and _issued_by(cert, roots)
        and not _revoked(cert, crls, roots)
    ]
    seen: set[bytes] = set()
    pool: list[x509.Certificate] = []
    for cert in [*current, *kept]:
        der = cert.public_bytes(Encoding.DER)
        if der not in seen:
            seen.add(der)
            pool.append(cert)
    return sorted(pool, key=lambda c: (node_of(c) or "", c.not_valid_after_utc))
