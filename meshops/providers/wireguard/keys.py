"""WireGuard keys: generation, derivation and the base64/hex spellings.

The API speaks base64 (as `wg` and mesh state do); the UAPI socket speaks hex. Private
keys are `bytes` so they are never mistaken for printable text.
"""

from __future__ import annotations

import base64
import binascii

from meshops.errors import MeshError

KEY_LEN = 32
ZERO_KEY = bytes(KEY_LEN)


def generate_private_key() -> bytes:
    """A fresh Curve25519 private key: 32 random bytes, clamped as WireGuard stores it."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return clamp(X25519PrivateKey.generate().private_bytes_raw())


def clamp(raw: bytes) -> bytes:
    """Clamp a Curve25519 scalar (RFC 7748) so `wg show` and we agree on the bytes."""
    check_key_bytes(raw, what="private key")
    key = bytearray(raw)
    key[0] &= 248
    key[31] &= 127
    key[31] |= 64
    return bytes(key)


def public_key_of(private_key: bytes) -> str:
    """The base64 public key that belongs to a raw 32-byte private key.

    Derived by pyrage (rage's constant-time X25519): an age X25519 identity is a
    Curve25519 scalar, and its recipient that scalar times the base point, clamped as
    WireGuard clamps. Every host plan on wireguard-go derives its device's key, and
    pyrage loads in about a millisecond where cryptography takes over ten.
    """
    import pyrage

    from meshops.model.types import bech32_decode, bech32_encode

    check_key_bytes(private_key, what="private key")
    secret = bech32_encode("age-secret-key-", private_key).upper()
    identity = pyrage.x25519.Identity.from_str(secret)
    decoded = bech32_decode(str(identity.to_public()))
    if decoded is None or decoded[0] != "age" or len(decoded[1]) != KEY_LEN:
        raise MeshError("internal: pyrage gave no X25519 public key")
    return base64.b64encode(decoded[1]).decode("ascii")


def check_key_bytes(key: bytes, *, what: str = "key") -> bytes:
    if len(key) != KEY_LEN:
        raise MeshError(f"WireGuard {what} must be {KEY_LEN} bytes, got {len(key)}")
    return key


def b64_to_bytes(text: str, *, what: str = "public key") -> bytes:
    """Decode a base64 WireGuard key, with an error that names it (never its value
    when it is private)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MeshError(f"WireGuard {what} is not valid base64") from None
    return check_key_bytes(raw, what=what)


def bytes_to_b64(key: bytes) -> str:
    return base64.b64encode(check_key_bytes(key)).decode("ascii")


def b64_to_hex(text: str, *, what: str = "public key") -> str:
    return b64_to_bytes(text, what=what).hex()


def hex_to_b64(text: str, *, what: str = "public key") -> str:
    return bytes_to_b64(hex_to_bytes(text, what=what))


def hex_to_bytes(text: str, *, what: str = "key") -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise MeshError(f"WireGuard {what} is not valid hex") from None
    return check_key_bytes(raw, what=what)
