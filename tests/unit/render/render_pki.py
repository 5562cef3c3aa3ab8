"""A throwaway PKI for proxy tests: root CA -> node CA -> SPIFFE leaf certificates.

Shaped like CONTRACT.md section 5 (one URI SAN, CN = identity, serverAuth+clientAuth,
cert.pem = leaf + node CA, ca.pem = root, crl.pem = a CRL from every CA in the chain,
because nginx and Envoy check CRLs for the whole chain). Test-only: keys are written
0600 into a temporary directory that the test owns.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(
    subject: str, issuer: x509.Name, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOW + dt.timedelta(hours=2))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def make_ca(cn: str, *, parent: Issued | None = None) -> Issued:
    """A root CA (no parent) or an intermediate node CA with path length 0."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = parent.cert.subject if parent else _name(cn)
    signing = parent.key if parent else key
    builder = (
        _builder(cn, issuer, key.public_key())
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=0 if parent else None), critical=True
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if parent:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
            critical=False,
        )
    return Issued(builder.sign(signing, hashes.SHA256()), key)


def make_leaf(issuer: Issued, identity: str, trust_domain: str = "demo.internal") -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [
            x509.UniformResourceIdentifier(f"spiffe://{trust_domain}/{identity}"),
            x509.DNSName(f"{identity}.mesh.{trust_domain}"),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
    )
    cert = (
        _builder(identity, issuer.cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(san, critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, hashes.SHA256())
    )
    return Issued(cert, key)


def make_crl(issuer: Issued) -> x509.CertificateRevocationList:
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(NOW - dt.timedelta(minutes=5))
        .next_update(NOW + dt.timedelta(hours=2))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, hashes.SHA256())
    )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path
    crl: Path


@dataclass(frozen=True)
class Mesh:
    """A root, one node CA, leaves per identity, and a foreign CA with its own leaf."""

    root: Issued
    node_ca: Issued
    foreign_root: Issued
    directory: Path

    def write_identity(self, identity: str, *, foreign: bool = False) -> TlsFiles:
        """cert.pem (leaf + issuer chain), key.pem 0600, ca.pem, crl.pem for `identity`."""
        directory = self.directory / ("foreign-" if foreign else "") / identity
        directory = self.directory / (f"foreign-{identity}" if foreign else identity)
        directory.mkdir(parents=True, exist_ok=True)
        issuer = self.foreign_root if foreign else self.node_ca
        leaf = make_leaf(issuer, identity)
        chain = pem(leaf.cert) + (b"" if foreign else pem(self.node_ca.cert))
        root = self.foreign_root if foreign else self.root
        crls = [make_crl(root)] + ([] if foreign else [make_crl(self.node_ca)])
        return TlsFiles(
            cert=_write(directory / "cert.pem", chain),
            key=_write(directory / "key.pem", key_pem(leaf.key), 0o600),
            ca=_write(directory / "ca.pem", pem(root.cert)),
            crl=_write(
                directory / "crl.pem",
                b"".join(c.public_bytes(serialization.Encoding.PEM) for c in crls),
            ),
        )


def make_mesh(directory: Path) -> Mesh:
    root = make_ca("meshops root demo")
    node_ca = make_ca("meshops node web-1", parent=root)
    foreign = make_ca("someone else's root")
    return Mesh(root, node_ca, foreign, directory)
