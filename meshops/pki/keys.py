"""Private keys: generate, identify, encode, load, and check against a certificate."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from meshops.errors import MeshError
from meshops.model.types import KeyType

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

SignatureHash = hashes.SHA256 | hashes.SHA384 | None

_RSA_BITS = 3072
_RSA_EXPONENT = 65537


def generate_key(key_type: KeyType) -> PrivateKey:
    """A fresh private key of `key_type` (from the operating system's random source)."""
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "rsa-3072":
        return rsa.generate_private_key(public_exponent=_RSA_EXPONENT, key_size=_RSA_BITS)
    raise MeshError(f"unknown key type {key_type!r}")


def key_type_of(key: PrivateKey | PublicKey | object) -> KeyType:
    """The mesh.yaml key type of a private or public key; MeshError for anything else."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ecdsa-p256"
        if isinstance(key.curve, ec.SECP384R1):
            return "ecdsa-p384"
        raise MeshError(
            f"unsupported elliptic curve {key.curve.name}",
            hint="meshops supports ecdsa-p256, ecdsa-p384, ed25519 and rsa-3072",
        )
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size == _RSA_BITS:
            return "rsa-3072"
        raise MeshError(
            f"unsupported RSA key size {key.key_size} bits",
            hint="meshops supports RSA keys of 3072 bits (rsa-3072)",
        )
    raise MeshError(
        f"unsupported key type {type(key).__name__}",
        hint="meshops supports ecdsa-p256, ecdsa-p384, ed25519 and rsa-3072",
    )


def signature_hash(key: PrivateKey) -> SignatureHash:
    """The digest a key signs certificates with (None for Ed25519, which hashes itself)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        return hashes.SHA384()
    return hashes.SHA256()


def private_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the caller seals it (age or sops) before it is stored."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_pem(data: bytes, *, what: str = "private key") -> PrivateKey:
    """Load an unencrypted PEM private key of a supported type; MeshError otherwise.

    `what` names the key in messages ("node CA key of web-1").
    """
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise MeshError(
            f"{what} is encrypted with a passphrase",
            hint="meshops expects an unencrypted PEM key; it seals keys itself",
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MeshError(
            f"{what} is not a readable PEM private key",
            hint="expected PEM text starting with -----BEGIN PRIVATE KEY-----",
            detail=str(exc),
        ) from None
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    ):
        raise MeshError(
            f"{what} is a {type(key).__name__}, which meshops does not support",
            hint="meshops supports ecdsa-p256, ecdsa-p384, ed25519 and rsa-3072",
        )
    key_type_of(key)  # rejects unsupported curves and RSA sizes with a clear message
    return key


def public_der(public_key: PublicKey) -> bytes:
    """The DER SubjectPublicKeyInfo of a public key."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_fingerprint(public_key: PublicKey) -> str:
    """`sha256:<hex>` of the DER SubjectPublicKeyInfo: stable across encodings."""
    return "sha256:" + hashlib.sha256(public_der(public_key)).hexdigest()


def cert_public_key(cert: x509.Certificate) -> PublicKey:
    """A certificate's public key, narrowed to the types meshops supports."""
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        return key
    raise MeshError(
        f"certificate {cert.subject.rfc4514_string()} holds an unsupported {type(key).__name__}",
        hint="meshops supports ecdsa-p256, ecdsa-p384, ed25519 and rsa-3072",
    )


def csr_public_key(csr: x509.CertificateSigningRequest) -> PublicKey:
    """A CSR's public key, narrowed to the types meshops supports (MeshError otherwise)."""
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        key_type_of(key)  # an unsupported curve or RSA size, in words
        return key
    raise MeshError(
        f"the CSR holds an unsupported {type(key).__name__}",
        hint="meshops supports ecdsa-p256, ecdsa-p384, ed25519 and rsa-3072",
    )


def keys_match(private_key: PrivateKey, certificate: x509.Certificate) -> bool:
    """Whether `private_key` is the key of `certificate`.

    age files are not authenticated, so every unsealed key is checked against its
    certificate before it signs anything.
    """
    return public_der(private_key.public_key()) == public_der(cert_public_key(certificate))
