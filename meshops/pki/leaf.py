"""Workload (leaf) certificates: SPIFFE X.509-SVIDs issued by a node CA."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshops.pki._build import SKEW, aki_for, encoded, encoded_ski, serial_or_random, sign, validity
from meshops.pki.keys import PrivateKey, PublicKey
from meshops.pki.specs import LeafSpec, utc

# Encoded once: every leaf carries the same constraint, usage and EKU extensions.
_NOT_CA = encoded(x509.BasicConstraints(ca=False, path_length=None), critical=True)
_EKU = encoded(
    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
    critical=False,
)


def _usage(key_encipherment: bool) -> x509.Extension[x509.ExtensionType]:
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return encoded(usage, critical=True)


_USAGE = _usage(key_encipherment=False)
_USAGE_RSA = _usage(key_encipherment=True)  # RSA key exchange in TLS 1.2 needs it


def leaf_sans(spec: LeafSpec) -> list[x509.GeneralName]:
    """The SANs of a leaf, in order: the SPIFFE URI, DNS names, IP addresses."""
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spec.spiffe_id)]
    names += [x509.DNSName(name) for name in spec.dns_names]
    names += [x509.IPAddress(ip) for ip in _unique_ips(spec.ips)]
    return names


@dataclass(frozen=True)
class _Issuer:
    """What every leaf takes from its node CA, read once per node CA, not once per leaf."""

    subject: x509.Name
    aki: x509.Extension[x509.ExtensionType]
    not_before: datetime  # naive UTC, as CertificateBuilder stores times
    not_after: datetime


@lru_cache(maxsize=64)
def _issuer(cert: x509.Certificate) -> _Issuer:
    return _Issuer(
        cert.subject,
        encoded(aki_for(cert), critical=False),
        cert.not_valid_before_utc.replace(tzinfo=None),
        cert.not_valid_after_utc.replace(tzinfo=None),
    )


@lru_cache(maxsize=1024)
def _names(spec: LeafSpec) -> tuple[x509.Name, x509.Extension[x509.ExtensionType]]:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.identity)])
    return subject, encoded(x509.SubjectAlternativeName(leaf_sans(spec)), critical=False)


def issue_leaf(
    *,
    node_ca_cert: x509.Certificate,
    node_ca_key: PrivateKey,
    public_key: PublicKey,
    spec: LeafSpec,
    now: datetime,
    serial: int | None = None,
) -> x509.Certificate:
    """An X.509-SVID for `spec.identity` on `spec.node`, signed by the node CA.

    Exactly one URI SAN (`spiffe://<trust_domain>/<identity>`), CN the identity name,
    CA:false, EKU serverAuth+clientAuth, valid `now - 5min .. now + ttl` but never
    beyond the node CA.
    """
    issuer = _issuer(node_ca_cert)
    subject, sans = _names(spec)
    return _sign_leaf(
        issuer=issuer,
        node_ca_key=node_ca_key,
        public_key=public_key,
        subject=subject,
        sans=sans,
        window=_window(now, spec.ttl_seconds, issuer, node_ca_cert),
        serial=serial_or_random(serial),
    )


def _window(
    now: datetime, ttl_seconds: float, issuer: _Issuer, cert: x509.Certificate
) -> tuple[datetime, datetime]:
    """`now - skew .. now + ttl` inside the issuer's window, as naive UTC."""
    moment = utc(now).replace(microsecond=0, tzinfo=None)
    not_before = max(moment - SKEW, issuer.not_before)
    not_after = min(moment + timedelta(seconds=ttl_seconds), issuer.not_after)
    if ttl_seconds <= 0 or not_after <= moment:
        validity(now, ttl_seconds, cert)  # raises the error meant for the user
    return not_before, not_after


def _sign_leaf(
    *,
    issuer: _Issuer,
    node_ca_key: PrivateKey,
    public_key: PublicKey,
    subject: x509.Name,
    sans: x509.Extension[x509.ExtensionType],
    window: tuple[datetime, datetime],
    serial: int,
) -> x509.Certificate:
    """Sign a leaf with exactly these names.

    The builder is made in one step from prebuilt extensions: the step-by-step builder
    copies itself per call, which costs more than the signature on a busy host.
    """
    if not 0 < serial < 2**159:
        raise ValueError(f"serial must be positive and below 2**159, got {serial}")
    usage = _USAGE_RSA if isinstance(public_key, rsa.RSAPublicKey) else _USAGE
    builder = x509.CertificateBuilder(
        issuer_name=issuer.subject,
        subject_name=subject,
        public_key=public_key,
        serial_number=serial,
        not_valid_before=window[0],
        not_valid_after=window[1],
        extensions=[_NOT_CA, usage, _EKU, sans, encoded_ski(public_key), issuer.aki],
    )
    return sign(builder, node_ca_key)


def sign_leaf_with_names(
    *,
    node_ca_cert: x509.Certificate,
    node_ca_key: PrivateKey,
    public_key: PublicKey,
    common_name: str,
    sans: list[x509.GeneralName],
    now: datetime,
    ttl_seconds: float,
    serial: int,
) -> x509.Certificate:
    """A leaf with exactly these names, bypassing the spec (tests build forbidden ones)."""
    issuer = _issuer(node_ca_cert)
    return _sign_leaf(
        issuer=issuer,
        node_ca_key=node_ca_key,
        public_key=public_key,
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
        sans=encoded(x509.SubjectAlternativeName(sans), critical=False),
        window=_window(now, ttl_seconds, issuer, node_ca_cert),
        serial=serial,
    )


def _unique_ips(ips: tuple[IPv4Address | IPv6Address, ...]) -> list[IPv4Address | IPv6Address]:
    return list(dict.fromkeys(ips))
