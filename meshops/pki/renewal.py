"""When a certificate must be re-issued, and why, in words a plan line can show.

A certificate is re-issued when it no longer matches what is desired (issuer, key
type, names, lifetime) or when it enters its renewal window. The window opens
`renew_before` ahead of expiry plus a small per-certificate jitter, so a fleet issued
in the same second does not renew in the same second. The jitter only ever moves
renewal earlier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from ipaddress import IPv4Network, IPv6Network

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from meshops.errors import MeshError
from meshops.model.durations import RenewBefore, format_duration
from meshops.pki.keys import cert_public_key, key_type_of
from meshops.pki.specs import CLOCK_SKEW_SECONDS, LeafSpec, NodeCASpec, utc

# At most this fraction of renew_before is added as jitter.
JITTER_MAX_FRACTION = 0.05


def jitter_seconds(seed: bytes, before_seconds: float, ttl_seconds: float) -> float:
    """Extra lead time, in [0, 5% of renew_before), derived only from `seed`.

    It is also capped at half the time between issuance and the renewal point, so a
    renew_before close to the ttl cannot make a fresh certificate due at once.
    """
    fraction = int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") / 2.0**64
    room = max(0.0, ttl_seconds - before_seconds) / 2
    return min(before_seconds * JITTER_MAX_FRACTION * fraction, room)


def _seed(cert: x509.Certificate) -> bytes:
    serial = cert.serial_number
    return serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")


def renewal_time(cert: x509.Certificate, renew_before: RenewBefore, ttl: float) -> datetime:
    """When `cert` becomes due: `renew_before` ahead of expiry, minus its jitter."""
    before = renew_before.before_expiry(ttl)
    lead = before + jitter_seconds(_seed(cert), before, ttl)
    return cert.not_valid_after_utc - timedelta(seconds=lead)


def renewal_reason(
    cert: x509.Certificate,
    *,
    desired: LeafSpec | NodeCASpec,
    issuer_cert: x509.Certificate,
    renew_before: RenewBefore,
    now: datetime,
    ttl_seconds: float | None = None,
) -> str | None:
    """None if `cert` is fine at `now`, else why it must be re-issued.

    `ttl_seconds` defaults to the leaf spec's ttl and is required for a node CA.
    Mismatches are all reported, joined by "; ". A certificate that reaches its issuer's
    expiry (a clamped lifetime) is not renewed for time alone: a new one would end at
    the same moment; re-issuing the issuer is the fix, and that shows here as
    "issuer changed".
    """
    if ttl_seconds is None:
        if not isinstance(desired, LeafSpec):
            raise TypeError("ttl_seconds is required for a node CA")
        ttl_seconds = desired.ttl_seconds
    moment = utc(now)
    not_after = cert.not_valid_after_utc
    if moment >= not_after:
        return f"expired {_approx((moment - not_after).total_seconds())} ago"
    if moment < cert.not_valid_before_utc:
        wait = (cert.not_valid_before_utc - moment).total_seconds()
        return f"not valid yet (starts in {_approx(wait)}; check the clock)"
    mismatches = list(_mismatches(cert, desired, issuer_cert, ttl_seconds))
    if mismatches:
        return "; ".join(mismatches)
    if not_after >= issuer_cert.not_valid_after_utc:
        return None
    if moment < renewal_time(cert, renew_before, ttl_seconds):
        return None
    return _window_reason(cert, renew_before, ttl_seconds, moment)


def _mismatches(
    cert: x509.Certificate,
    desired: LeafSpec | NodeCASpec,
    issuer_cert: x509.Certificate,
    ttl_seconds: float,
) -> Iterable[str]:
    if not issued_by(cert, issuer_cert):
        yield "issuer changed"
    current_type = _key_type_or_none(cert)
    if current_type != desired.key_type:
        yield f"key type changed: {current_type or 'unsupported'} -> {desired.key_type}"
    if isinstance(desired, LeafSpec):
        changed = name_changes(leaf_names(cert), desired_leaf_names(desired))
        if changed:
            yield f"SANs changed: {changed}"
        if _common_name(cert) != desired.identity:
            yield f"subject changed: CN {_common_name(cert)!r} -> {desired.identity!r}"
    else:
        changed = name_changes(constraint_names(cert), desired.constraint_names())
        if changed:
            yield f"name constraints changed: {changed}"
    clamped = cert.not_valid_after_utc >= issuer_cert.not_valid_after_utc
    lifetime = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds()
    # Lifetime is ttl + skew when issued normally, down to ttl when the start was clamped
    # to the issuer's; anything else means the ttl was changed since.
    if not clamped and not ttl_seconds - 1 <= lifetime <= ttl_seconds + CLOCK_SKEW_SECONDS + 1:
        shown = format_duration(round(max(0.0, lifetime - CLOCK_SKEW_SECONDS)))
        yield f"ttl changed: {shown} -> {format_duration(ttl_seconds)}"


def _window_reason(
    cert: x509.Certificate, renew_before: RenewBefore, ttl: float, moment: datetime
) -> str:
    remaining = (cert.not_valid_after_utc - moment).total_seconds()
    before = renew_before.before_expiry(ttl)
    shown = str(renew_before)
    if renew_before.fraction is not None:
        shown += f" ({_approx(before)})"
    if remaining < before:
        return f"expires in {_approx(remaining)} < renew_before {shown}"
    jitter = jitter_seconds(_seed(cert), before, ttl)
    return f"expires in {_approx(remaining)} < renew_before {shown} + jitter {_approx(jitter)}"


def _approx(seconds: float) -> str:
    """Whole minutes above an hour, whole seconds below: plan lines stay readable."""
    if seconds >= 3600:
        return format_duration(round(seconds / 60) * 60)
    return format_duration(max(1, round(seconds)))


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer` (name and key) signed `cert`."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _key_type_or_none(cert: x509.Certificate) -> str | None:
    try:
        return key_type_of(cert_public_key(cert))
    except MeshError:
        return None


def _common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def _general_name(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return f"dns:{name.value}"
    if isinstance(name, x509.IPAddress):
        value = name.value
        if isinstance(value, IPv4Network | IPv6Network):
            if value.prefixlen == value.max_prefixlen:
                return f"ip:{value.network_address}"
            return f"ip:{value}"
        return f"ip:{value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"uri:{name.value}"
    return f"other:{name!r}"


def leaf_names(cert: x509.Certificate) -> list[str]:
    """A certificate's SANs as `dns:`, `ip:` and `uri:` strings."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [_general_name(n) for n in sans]


def desired_leaf_names(spec: LeafSpec) -> list[str]:
    return [
        f"uri:{spec.spiffe_id}",
        *(f"dns:{name}" for name in spec.dns_names),
        *(f"ip:{ip}" for ip in spec.ips),
    ]


def constraint_names(cert: x509.Certificate) -> list[str]:
    """A CA's permitted name-constraint subtrees as `dns:`, `ip:` and `uri:` strings."""
    try:
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return []
    return [_general_name(n) for n in nc.permitted_subtrees or []]


def name_changes(current: list[str], desired: list[str]) -> str:
    """`+dns:new, -ip:old`: what joins and what leaves, in the lists' order."""
    have, want = set(current), set(desired)
    added = [f"+{n}" for n in dict.fromkeys(desired) if n not in have]
    removed = [f"-{n}" for n in dict.fromkeys(current) if n not in want]
    return ", ".join(added + removed)
