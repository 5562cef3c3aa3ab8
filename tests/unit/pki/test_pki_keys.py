"""Keys: generation per type, PEM round trips, fingerprints, key/cert matching, bad input."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pki_factories import KEY_TYPES, Pki

from meshops.errors import MeshError
from meshops.model.types import KeyType
from meshops.pki import (
    generate_key,
    key_type_of,
    keys_match,
    load_private_pem,
    private_pem,
    public_fingerprint,
)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_generated_key_has_the_requested_type_and_round_trips_through_pem(
    key_type: KeyType,
) -> None:
    key = generate_key(key_type)
    assert key_type_of(key) == key_type
    assert key_type_of(key.public_key()) == key_type
    pem = private_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    again = load_private_pem(pem)
    assert public_fingerprint(again.public_key()) == public_fingerprint(key.public_key())


def test_fingerprint_is_sha256_hex_of_the_spki_and_differs_per_key() -> None:
    a, b = generate_key("ed25519"), generate_key("ed25519")
    fa = public_fingerprint(a.public_key())
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", fa)
    assert fa == public_fingerprint(a.public_key())
    assert fa != public_fingerprint(b.public_key())


def test_keys_match_its_own_certificate_only(pki: Pki) -> None:
    assert keys_match(pki.root.key, pki.root.cert)
    assert keys_match(pki.node_cas["web-1"].key, pki.node_cas["web-1"].cert)
    assert not keys_match(pki.node_cas["api-1"].key, pki.node_cas["web-1"].cert)
    assert not keys_match(generate_key("ed25519"), pki.root.cert)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
)
def test_garbage_is_a_clear_error_naming_the_key(garbage: bytes) -> None:
    with pytest.raises(MeshError, match="node CA key of web-1 is not a readable PEM") as info:
        load_private_pem(garbage, what="node CA key of web-1")
    assert "BEGIN PRIVATE KEY" in str(info.value)


def test_passphrase_protected_key_is_refused_clearly() -> None:
    pem = generate_key("ecdsa-p256").private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"hunter2"),
    )
    with pytest.raises(MeshError, match="encrypted with a passphrase"):
        load_private_pem(pem)


def test_unsupported_curve_and_rsa_size_are_refused_clearly() -> None:
    p521 = ec.generate_private_key(ec.SECP521R1())
    rsa2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(MeshError, match="unsupported elliptic curve secp521r1"):
        load_private_pem(private_pem(p521))  # type: ignore[arg-type]
    with pytest.raises(MeshError, match="unsupported RSA key size 2048"):
        load_private_pem(private_pem(rsa2048))


def test_unknown_key_type_is_a_clear_error() -> None:
    with pytest.raises(MeshError, match="unknown key type"):
        generate_key("dsa-1024")  # type: ignore[arg-type]
    with pytest.raises(MeshError, match="unsupported key type"):
        key_type_of(object())


def test_private_key_never_appears_in_a_load_error() -> None:
    pem = private_pem(generate_key("ecdsa-p256"))
    broken = pem.replace(b"PRIVATE KEY-----\n", b"PRIVATE KEY-----\n!!", 1)
    with pytest.raises(MeshError) as info:
        load_private_pem(broken)
    body = pem.splitlines()[1].decode()
    assert body not in str(info.value)
    assert body not in (info.value.detail or "")
