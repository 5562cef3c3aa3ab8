"""Detached signatures by a root CA key over bytes (the manifest, a root transition).

The algorithm follows the key, as certificate signatures do: ECDSA P-256 with SHA-256,
ECDSA P-384 with SHA-384, Ed25519, and RSA-3072 with PKCS#1 v1.5 and SHA-256. Stock
tools check them too: `openssl dgst -sha256 -verify root.pub -signature sig.der FILE`
(`-sha384` for P-384; `openssl pkeyutl -verify -rawin` for Ed25519).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from meshops.pki.keys import PrivateKey, PublicKey, cert_public_key, key_type_of

ALGORITHMS = {
    "ecdsa-p256": "ecdsa-p256-sha256",
    "ecdsa-p384": "ecdsa-p384-sha384",
    "ed25519": "ed25519",
    "rsa-3072": "rsa-pkcs1-sha256",
}


def algorithm_of(key: PrivateKey | PublicKey) -> str:
    """The signature algorithm name a key signs with (as written in signature files)."""
    return ALGORITHMS[key_type_of(key)]


def sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    """The raw signature of `data` (DER for ECDSA)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(_ec_hash(key.curve)))
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def verify_bytes(cert: x509.Certificate, data: bytes, signature: bytes, algorithm: str) -> bool:
    """Whether `signature` over `data` was made by the key of `cert` with `algorithm`.

    The algorithm must be the one the certificate's key signs with: a signature file
    cannot talk a verifier into another algorithm.
    """
    key = cert_public_key(cert)
    if algorithm != algorithm_of(key):
        return False
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(_ec_hash(key.curve)))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:  # pragma: no cover - cert_public_key admits nothing else
            return False
    except InvalidSignature:
        return False
    return True


def _ec_hash(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    return hashes.SHA384() if isinstance(curve, ec.SECP384R1) else hashes.SHA256()
