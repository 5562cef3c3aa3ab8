"""XEdDSA: signatures by a WireGuard (X25519) key, so an enrolment request proves that
its sender holds the private half of the WireGuard key it names (docs/keys.md).

The scheme is Signal's XEdDSA (https://signal.org/docs/specifications/xeddsa/): the
X25519 private scalar `k` signs as an Ed25519 key whose public point `A` is the
Edwards form of the Montgomery public key `u` with its sign bit cleared. A verifier
maps `u` to `A` (y = (u - 1) / (u + 1)) and runs plain Ed25519 verification, which
`cryptography` (OpenSSL) does. Signing needs the scalar `k` itself, which no Ed25519
API takes (they hash a seed), so the point arithmetic is here: twisted Edwards
extended coordinates, the formulas of RFC 8032 section 5.1.4.

Python's integers are not constant-time, so signing leaks timing about `k`. It runs
once per key, on the host that owns it, when `meshops host init|rotate-keys` makes the
request; nothing remote can ask for a signature or time one.
"""

from __future__ import annotations

import hashlib
import os

P = 2**255 - 19
Q = 2**252 + 27742317777372353535851937790883648493  # the order of the base point
D = (-121665 * pow(121666, -1, P)) % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)

SIGNATURE_SIZE = 64
KEY_SIZE = 32

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z
_IDENTITY: Point = (0, 1, 1, 0)


def _recover_x(y: int, sign: int) -> int | None:
    """The x with x^2 = (y^2 - 1) / (d y^2 + 1) and parity `sign`, or None."""
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, -1, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * _SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if x & 1 != sign:
        x = P - x
    return x


_BASE_Y = 4 * pow(5, -1, P) % P
_BASE_X = _recover_x(_BASE_Y, 0)
assert _BASE_X is not None
BASE: Point = (_BASE_X, _BASE_Y, 1, _BASE_X * _BASE_Y % P)


def _add(p: Point, q: Point) -> Point:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * t1 * t2 * D % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _multiply(scalar: int, point: Point) -> Point:
    """`scalar` * `point`, one addition and one doubling per bit, whatever the bit."""
    result, addend = _IDENTITY, point
    for bit in range(256):
        added = _add(result, addend)
        result = added if (scalar >> bit) & 1 else result
        addend = _add(addend, addend)
    return result


def _affine(point: Point) -> tuple[int, int]:
    x, y, z, _ = point
    inverse = pow(z, -1, P)
    return x * inverse % P, y * inverse % P


def encode_point(point: Point) -> bytes:
    """RFC 8032 encoding: y little-endian, the sign (parity) of x in the top bit."""
    x, y = _affine(point)
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def decode_point(data: bytes) -> Point | None:
    if len(data) != 32:
        return None
    value = int.from_bytes(data, "little")
    y, sign = value & ((1 << 255) - 1), value >> 255
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def clamp(private: bytes) -> int:
    """The X25519 scalar of a 32-byte private key (RFC 7748 decodeScalar25519)."""
    if len(private) != KEY_SIZE:
        raise ValueError(f"an X25519 private key is {KEY_SIZE} bytes, got {len(private)}")
    raw = bytearray(private)
    raw[0] &= 248
    raw[31] &= 127
    raw[31] |= 64
    return int.from_bytes(raw, "little")


def montgomery_to_edwards(public: bytes) -> bytes | None:
    """The Ed25519 public key (sign bit 0) of an X25519 public key `u`, or None when `u`
    has no such point or is of small order (anyone could sign for such a key)."""
    if len(public) != KEY_SIZE:
        return None
    u = int.from_bytes(public, "little") & ((1 << 255) - 1)
    if u >= P or (u + 1) % P == 0:
        return None
    y = (u - 1) * pow(u + 1, -1, P) % P
    encoded = y.to_bytes(32, "little")
    point = decode_point(encoded)
    if point is None or _small_order(point):
        return None
    return encoded


def _small_order(point: Point) -> bool:
    """Whether 8 * point (three doublings: the cofactor) is the identity."""
    for _ in range(3):
        point = _add(point, point)
    x, y = _affine(point)
    return x == 0 and y == 1


def edwards_to_montgomery(public: bytes) -> bytes:
    """u = (1 + y) / (1 - y) of an Ed25519 public key (the inverse mapping)."""
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)
    return ((1 + y) * pow(1 - y, -1, P) % P).to_bytes(32, "little")


def _hash_int(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little") % Q


# hash_1 of the spec: SHA-512 prefixed with 2^256 - 2 in 32 bytes, little-endian
_HASH1_PREFIX = b"\xfe" + b"\xff" * 31


def sign(private: bytes, message: bytes, *, random: bytes | None = None) -> bytes:
    """The XEdDSA signature (64 bytes) of `message` by X25519 private key `private`.

    `random` is the 64 bytes Z of the spec (fresh from the OS unless a test fixes it);
    the nonce also hashes the key and the message, so a poor Z does not leak the key.
    """
    z = os.urandom(64) if random is None else random
    if len(z) != 64:
        raise ValueError("XEdDSA needs 64 random bytes")
    k = clamp(private)
    edwards = _multiply(k, BASE)
    x, _ = _affine(edwards)
    a = (Q - k % Q) % Q if x & 1 else k % Q  # the scalar of the sign-0 point
    public = encode_point(edwards if not x & 1 else _negate(edwards))
    a_bytes = a.to_bytes(32, "little")
    r = _hash_int(_HASH1_PREFIX, a_bytes, message, z)
    big_r = encode_point(_multiply(r, BASE))
    h = _hash_int(big_r, public, message)
    s = (r + h * a) % Q
    return big_r + s.to_bytes(32, "little")


def _negate(point: Point) -> Point:
    x, y, z, t = point
    return ((P - x) % P, y, z, (P - t) % P)


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is an XEdDSA signature of `message` by the X25519 public key
    `public`: Ed25519 verification (OpenSSL's) under the mapped Edwards key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if len(signature) != SIGNATURE_SIZE:
        return False
    edwards = montgomery_to_edwards(public)
    if edwards is None:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(edwards).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def public_key(private: bytes) -> bytes:
    """The X25519 public key of `private` (what `wg pubkey` prints, before base64)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = X25519PrivateKey.from_private_bytes(private)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
