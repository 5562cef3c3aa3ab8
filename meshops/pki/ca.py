"""The mesh root CA and the per-node intermediate CAs (path length 0, name constraints)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from ipaddress import ip_network

from cryptography import x509
from cryptography.x509.oid import NameOID

from meshops.errors import MeshError
from meshops.pki._build import aki_for, serial_or_random, sign, ski_digest, ski_of, validity
from meshops.pki.keys import (
    PrivateKey,
    PublicKey,
    cert_public_key,
    key_type_of,
    keys_match,
    load_private_pem,
    signature_hash,
)
from meshops.pki.specs import IPAddress, NodeCASpec, node_ca_common_name, utc

_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def issue_root(
    *,
    mesh_name: str,
    key: PrivateKey,
    now: datetime,
    ttl_seconds: float,
    serial: int | None = None,
) -> x509.Certificate:
    """A self-signed root CA for the mesh.

    The subject carries the issue date and the start of the key id, so that during a
    rotation the old and new roots have different names, which keeps chain building
    (and CRL lookup by issuer name) unambiguous in every TLS stack.
    """
    not_before, not_after = validity(now, ttl_seconds)
    public_key = key.public_key()
    key_id = ski_of(public_key).digest[:4].hex()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshops"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"{mesh_name} root CA {utc(now):%Y-%m-%d %H:%M} {key_id}"
            ),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(serial_or_random(serial))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(ski_of(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
    )
    return sign(builder, key)


def node_ca_constraints(spec: NodeCASpec) -> x509.NameConstraints:
    """What the leaves of this node CA may carry, and nothing more: DNS the node's own
    names (`NodeCASpec.permitted_dns`), IP each of its addresses as a /32 or /128.

    No URI subtree: a URI constraint limits only the host part of `spiffe://...` (it
    cannot tie an identity to its nodes), and Rust/Python verifiers reject the chain
    over it ("unsupported name constraint"). Proxies bind identities to node CAs.
    """
    subtrees: list[x509.GeneralName] = [x509.DNSName(name) for name in spec.permitted_dns]
    subtrees += [x509.IPAddress(ip_network(ip)) for ip in spec.ips]
    return x509.NameConstraints(permitted_subtrees=subtrees, excluded_subtrees=None)


def issue_node_ca(
    *,
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    public_key: PublicKey,
    spec: NodeCASpec,
    now: datetime,
    ttl_seconds: float,
    serial: int | None = None,
) -> x509.Certificate:
    """A node's intermediate CA, signed by the root: pathlen 0, name-constrained.

    Its lifetime never exceeds the root's.
    """
    not_before, not_after = validity(now, ttl_seconds, root_cert)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name)]))
        .issuer_name(root_cert.subject)
        .public_key(public_key)
        .serial_number(serial_or_random(serial))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(ski_of(public_key), critical=False)
        .add_extension(aki_for(root_cert), critical=False)
        .add_extension(node_ca_constraints(spec), critical=True)
    )
    return sign(builder, root_key)


def import_ca(
    cert_pem: bytes, key_pem: bytes, *, now: datetime
) -> tuple[x509.Certificate, PrivateKey]:
    """Adopt an existing CA (e.g. from step-ca) as the mesh root, after checking it.

    It must be a CA that may sign intermediates, its key must match, and it must be
    valid at `now`.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise MeshError(
            "the CA certificate is not a readable PEM certificate",
            hint="expected PEM text starting with -----BEGIN CERTIFICATE-----",
            detail=str(exc),
        ) from None
    subject = cert.subject.rfc4514_string() or "(empty subject)"
    key = load_private_pem(key_pem, what=f"the key of CA {subject}")
    key_type_of(cert_public_key(cert))
    _check_can_sign_intermediates(cert, subject)
    if not keys_match(key, cert):
        raise MeshError(
            f"the key given for CA {subject} does not belong to its certificate",
            hint="pass the private key that was issued together with this certificate",
        )
    moment = utc(now)
    if moment >= cert.not_valid_after_utc:
        raise MeshError(
            f"CA {subject} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}",
            hint="import a CA that is still valid, or let meshops create a new root",
        )
    if moment < cert.not_valid_before_utc:
        raise MeshError(
            f"CA {subject} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%SZ}",
            hint="check this machine's clock, or import a CA that is valid now",
        )
    return cert, key


def _check_can_sign_intermediates(cert: x509.Certificate, subject: str) -> None:
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.ca:
        raise MeshError(
            f"certificate {subject} is not a CA (basicConstraints CA:TRUE is missing)",
            hint="import the CA certificate itself, not a leaf certificate issued by it",
        )
    if basic.path_length == 0:
        raise MeshError(
            f"CA {subject} has path length 0, so it cannot sign the node CAs meshops needs",
            hint="import a root or an intermediate without a path length limit of 0",
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        # RFC 5280 requires it of CAs, and strict verifiers (openssl -x509_strict) reject
        # every chain under a CA without it: refuse now rather than break TLS later.
        raise MeshError(
            f"CA {subject} has no keyUsage extension, which RFC 5280 requires of a CA",
            hint="re-issue the CA with keyUsage keyCertSign, cRLSign",
        ) from None
    if not usage.key_cert_sign:
        raise MeshError(
            f"CA {subject} may not sign certificates (keyUsage lacks keyCertSign)",
            hint="import a CA whose key usage includes keyCertSign",
        )


def node_ca_request(
    *, key: PrivateKey, node: str, dns: Sequence[str], ips: Sequence[IPAddress]
) -> x509.CertificateSigningRequest:
    """The CSR a host sends for its node CA (docs/keys.md): subject `CN=<node> node CA`,
    the names it knows it will be constrained to, self-signed (proof of possession).
    Repo scope takes only the public key from it; the names are its own."""
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    names += [x509.IPAddress(ip) for ip in ips]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_ca_common_name(node))])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, signature_hash(key))


def node_ca_empty_crl(
    *, key: PrivateKey, node: str, now: datetime, ttl_seconds: float
) -> x509.CertificateRevocationList:
    """The empty CRL a node CA publishes (nginx checks a CRL for every CA of a chain),
    signed on the host that holds the key: its issuer and key id are those repo scope
    gives the node CA certificate, whichever root signs it and however often."""
    this_update = utc(now).replace(microsecond=0)
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_ca_common_name(node))])
        )
        .last_update(this_update)
        .next_update(this_update + timedelta(seconds=ttl_seconds))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier(ski_digest(key.public_key()), None, None), critical=False
        )
        .sign(key, signature_hash(key))
    )
