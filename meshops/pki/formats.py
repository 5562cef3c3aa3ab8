"""Encodings for the files a host writes: PEM chains, trust bundles, PKCS#12, combined PEM."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12 as _pkcs12

from meshops.pki.keys import PrivateKey, private_pem

# Recent enough for Java 17+, browsers and OpenSSL 3, and not slow to open.
_P12_KDF_ROUNDS = 50_000


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certs_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(cert_pem(c) for c in certs)


def chain_pem(leaf: x509.Certificate, node_ca: x509.Certificate) -> bytes:
    """`cert.pem`: the leaf, then the node CA that signed it (never the root)."""
    return cert_pem(leaf) + cert_pem(node_ca)


def bundle_pem(roots: Sequence[x509.Certificate]) -> bytes:
    """`ca.pem`, the trust bundle: the root, or old and new roots during a rotation."""
    return certs_pem(roots)


def combined_pem(chain: Sequence[x509.Certificate], key: PrivateKey) -> bytes:
    """Certificate chain then private key in one file (HAProxy, some Envoy setups).

    It holds the private key: write it 0600 like `key.pem`.
    """
    return certs_pem(chain) + private_pem(key)


def _p12_encryption(password: bytes) -> serialization.KeySerializationEncryption:
    if not password:
        # PKCS#12 cannot encrypt with an empty passphrase: the key would sit in a plain
        # key bag, which Java's KeyStore does not even list
        raise ValueError("a PKCS#12 bundle needs a non-empty password")
    return (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(_P12_KDF_ROUNDS)
        .key_cert_algorithm(_pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password)
    )


def pkcs12(
    *,
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    name: str | None = None,
    password: bytes,
) -> bytes:
    """A PKCS#12 keystore (Java, browsers) of the key, its certificate and the chain.

    Encrypted with PBES2 (AES-256-CBC, SHA-256) and MAC'd with HMAC-SHA256, which
    Java 11.0.12+/17, OpenSSL 3 and browsers read. The password must not be empty.
    """
    return _pkcs12.serialize_key_and_certificates(
        name.encode() if name is not None else None,
        key,
        cert,
        list(chain) or None,
        _p12_encryption(password),
    )


def java_truststore(roots: Sequence[x509.Certificate], *, password: bytes) -> bytes:
    """A PKCS#12 truststore: each root as a trusted certificate entry, as Java's
    `keytool -importcert` writes them (aliases `root-1`, `root-2`...)."""
    entries = [
        _pkcs12.PKCS12Certificate(root, f"root-{i}".encode()) for i, root in enumerate(roots, 1)
    ]
    return _pkcs12.serialize_java_truststore(entries, _p12_encryption(password))
