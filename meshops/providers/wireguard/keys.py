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
    """The base64 public key that belongs to a raw 32-byte private key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    check_key_bytes(private_key, what="private key")
    public = X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw()
    return base64.b64encode(public).decode("ascii")


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
