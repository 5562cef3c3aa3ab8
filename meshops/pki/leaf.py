"""Workload (leaf) certificates: SPIFFE X.509-SVIDs issued by a node CA."""

from __future__ import annotations

from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshops.pki._build import aki_for, serial_or_random, sign, ski_of, validity
from meshops.pki.keys import PrivateKey, PublicKey
from meshops.pki.specs import LeafSpec

# Built once: every leaf carries the same constraint, usage and EKU objects.
_NOT_CA = x509.BasicConstraints(ca=False, path_length=None)
_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


def _usage(key_encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
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


_USAGE = _usage(key_encipherment=False)
_USAGE_RSA = _usage(key_encipherment=True)  # RSA key exchange in TLS 1.2 needs it


def leaf_sans(spec: LeafSpec) -> list[x509.GeneralName]:
    """The SANs of a leaf, in order: the SPIFFE URI, DNS names, IP addresses."""
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spec.spiffe_id)]
    names += [x509.DNSName(name) for name in spec.dns_names]
    names += [x509.IPAddress(ip) for ip in _unique_ips(spec.ips)]
    return names


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
    not_before, not_after = validity(now, spec.ttl_seconds, node_ca_cert)
    return _sign_leaf(
        node_ca_cert=node_ca_cert,
        node_ca_key=node_ca_key,
        public_key=public_key,
        common_name=spec.identity,
        sans=leaf_sans(spec),
        not_before=not_before,
        not_after=not_after,
        serial=serial_or_random(serial),
    )


def _sign_leaf(
    *,
    node_ca_cert: x509.Certificate,
    node_ca_key: PrivateKey,
    public_key: PublicKey,
    common_name: str,
    sans: list[x509.GeneralName],
    not_before: datetime,
    not_after: datetime,
    serial: int,
) -> x509.Certificate:
    """Sign a leaf with exactly these names; tests use it to build forbidden leaves."""
    usage = _USAGE_RSA if isinstance(public_key, rsa.RSAPublicKey) else _USAGE
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(node_ca_cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_NOT_CA, critical=True)
        .add_extension(usage, critical=True)
        .add_extension(_EKU, critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(ski_of(public_key), critical=False)
        .add_extension(aki_for(node_ca_cert), critical=False)
    )
    return sign(builder, node_ca_key)


def _unique_ips(ips: tuple[IPv4Address | IPv6Address, ...]) -> list[IPv4Address | IPv6Address]:
    return list(dict.fromkeys(ips))
