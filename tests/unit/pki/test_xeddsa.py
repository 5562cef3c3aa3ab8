"""XEdDSA by WireGuard keys: the point arithmetic checked against OpenSSL (Ed25519 and
X25519 public keys) and libsodium (PyNaCl's Edwards -> Montgomery conversion); signatures
verify with OpenSSL's Ed25519 under the mapped key, and nothing else does."""

from __future__ import annotations

import hashlib
import os

import nacl.bindings
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from meshops.pki import xeddsa

keys = st.binary(min_size=32, max_size=32)
messages = st.binary(max_size=512)


@settings(max_examples=40, deadline=None)
@given(seed=keys)
def test_scalar_multiplication_agrees_with_openssls_ed25519_public_keys(seed: bytes) -> None:
    scalar = xeddsa.clamp(hashlib.sha512(seed).digest()[:32])
    mine = xeddsa.encode_point(xeddsa._multiply(scalar, xeddsa.BASE))
    theirs = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    assert mine == theirs


@settings(max_examples=40, deadline=None)
@given(private=keys)
def test_the_edwards_key_maps_to_the_x25519_public_key_as_libsodium_converts(
    private: bytes,
) -> None:
    public = X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
    assert xeddsa.public_key(private) == public
    edwards = xeddsa.montgomery_to_edwards(public)
    assert edwards is not None and edwards[31] & 0x80 == 0  # the sign bit is cleared
    assert nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(edwards) == public
    assert xeddsa.edwards_to_montgomery(edwards) == public


def test_signing_with_a_libsodium_converted_key_gives_its_sign_zero_edwards_key() -> None:
    """libsodium turns an Ed25519 key pair into an X25519 one; XEdDSA signs with that
    X25519 key as the Ed25519 key with the sign bit cleared (A or -A)."""
    for _ in range(8):
        ed_public, ed_secret = nacl.bindings.crypto_sign_keypair()
        x_private = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(ed_secret)
        x_public = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(ed_public)
        assert xeddsa.public_key(x_private) == x_public
        cleared = bytes([*ed_public[:31], ed_public[31] & 0x7F])
        assert xeddsa.montgomery_to_edwards(x_public) == cleared
        signature = xeddsa.sign(x_private, b"meshops")
        # libsodium's own Ed25519 verification (crypto_sign_open) accepts it too
        assert nacl.bindings.crypto_sign_open(signature + b"meshops", cleared) == b"meshops"


@settings(max_examples=30, deadline=None)
@given(private=keys, message=messages, other=messages)
def test_a_signature_verifies_for_its_key_and_message_only(
    private: bytes, message: bytes, other: bytes
) -> None:
    public = xeddsa.public_key(private)
    signature = xeddsa.sign(private, message)
    assert xeddsa.verify(public, message, signature)
    if other != message:
        assert not xeddsa.verify(public, other, signature)
    stranger = xeddsa.public_key(hashlib.sha256(private).digest())
    assert not xeddsa.verify(stranger, message, signature)


@settings(max_examples=30, deadline=None)
@given(private=keys, at=st.integers(0, 63), bit=st.integers(0, 7))
def test_any_flipped_bit_of_a_signature_fails(private: bytes, at: int, bit: int) -> None:
    signature = bytearray(xeddsa.sign(private, b"request"))
    signature[at] ^= 1 << bit
    assert not xeddsa.verify(xeddsa.public_key(private), b"request", bytes(signature))


def test_the_nonce_changes_with_the_random_input_and_both_signatures_verify() -> None:
    private = os.urandom(32)
    first = xeddsa.sign(private, b"m", random=bytes(64))
    second = xeddsa.sign(private, b"m", random=bytes([1]) * 64)
    assert first != second
    assert xeddsa.sign(private, b"m", random=bytes(64)) == first  # deterministic given Z
    for signature in (first, second):
        assert xeddsa.verify(xeddsa.public_key(private), b"m", signature)


SMALL_ORDER = [
    bytes(32),  # 0
    (1).to_bytes(32, "little"),  # 1
    (xeddsa.P - 1).to_bytes(32, "little"),  # -1: no Edwards point
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
]


def test_small_order_keys_are_refused_so_nobody_can_sign_for_them() -> None:
    for public in SMALL_ORDER:
        assert xeddsa.montgomery_to_edwards(public) is None
        assert not xeddsa.verify(public, b"m", bytes(64))


def test_malformed_inputs_are_refused_not_raised() -> None:
    public = xeddsa.public_key(os.urandom(32))
    assert not xeddsa.verify(public, b"m", b"short")
    assert not xeddsa.verify(b"short", b"m", bytes(64))
    assert not xeddsa.verify(public, b"m", b"\xff" * 64)  # s >= q


def test_x25519_public_keys_are_raw_bytes_of_the_openssl_key() -> None:
    private = X25519PrivateKey.generate()
    raw = private.private_bytes_raw()
    expected = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert xeddsa.public_key(raw) == expected
