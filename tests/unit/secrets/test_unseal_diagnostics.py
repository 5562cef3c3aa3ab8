"""A failed unseal says what was tried and what the file expects, never a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import KeyPair

from meshops.errors import SecretError
from meshops.secrets import UnsealFailed, load_identities, seal_age, unseal_age
from meshops.secrets.sshkeys import recipient_tag

SECRET = b"the-root-key-material"


def test_wrong_identity_lists_identities_tried_and_what_the_file_expects(
    age_key: KeyPair, ed25519_key: KeyPair, other_age_key: KeyPair, rsa_key: KeyPair
) -> None:
    sealed = seal_age(SECRET, [age_key.recipient, ed25519_key.recipient])
    tried = load_identities([other_age_key.path, rsa_key.path])

    with pytest.raises(UnsealFailed) as caught:
        unseal_age(sealed, tried, target_name="state/ca/root.key.age")

    message = str(caught.value)
    tag = recipient_tag(ed25519_key.recipient)
    assert "cannot unseal state/ca/root.key.age: none of the 2 identities given opens it" in message
    assert f"sealed to 1 X25519 recipient and 1 SSH ed25519 key (tag {tag})" in message
    assert f"{other_age_key.path}:3: age X25519 identity for {other_age_key.recipient.text}" in (
        message
    )
    assert f"{rsa_key.path}: SSH rsa key" in message
    assert "tag matches no stanza" in message
    assert isinstance(caught.value, SecretError)
    assert caught.value.identities == tuple(tried)


def test_ssh_key_given_for_a_file_sealed_to_age_x25519_says_so(
    age_key: KeyPair, ed25519_key: KeyPair
) -> None:
    sealed = seal_age(SECRET, [age_key.recipient])

    with pytest.raises(UnsealFailed) as caught:
        unseal_age(sealed, load_identities([ed25519_key.path]))

    assert "you gave only SSH keys, but the file is sealed only to age X25519" in str(caught.value)


def test_age_identity_given_for_a_file_sealed_to_an_ssh_key_says_so(
    age_key: KeyPair, ed25519_key: KeyPair
) -> None:
    sealed = seal_age(SECRET, [ed25519_key.recipient])

    with pytest.raises(UnsealFailed) as caught:
        unseal_age(sealed, load_identities([age_key.path]))

    message = str(caught.value)
    assert "you gave only age X25519 identities, but the file is sealed only to SSH keys" in (
        message
    )
    assert "the file has no X25519 recipient" in message


def test_other_ssh_key_of_the_same_kind_is_told_apart_by_tag(
    ed25519_key: KeyPair, other_ed25519_key: KeyPair
) -> None:
    sealed = seal_age(SECRET, [ed25519_key.recipient])
    (other,) = load_identities([other_ed25519_key.path])

    with pytest.raises(UnsealFailed) as caught:
        unseal_age(sealed, [other])

    message = str(caught.value)
    assert f"(tag {recipient_tag(ed25519_key.recipient)})" in message
    assert f"(tag {other.tag}) - tag matches no stanza" in message


def test_no_identity_at_all_says_how_to_give_one(age_key: KeyPair) -> None:
    with pytest.raises(UnsealFailed, match="no identity was given") as caught:
        unseal_age(seal_age(SECRET, [age_key.recipient]), [])
    assert "--identity" in str(caught.value)


def test_failure_messages_never_contain_secret_material(
    age_key: KeyPair, other_age_key: KeyPair, ed25519_key: KeyPair
) -> None:
    sealed = seal_age(SECRET, [other_age_key.recipient])
    tried = load_identities([age_key.path, ed25519_key.path])

    with pytest.raises(UnsealFailed) as caught:
        unseal_age(sealed, tried)

    shown = str(caught.value) + repr(caught.value) + (caught.value.detail or "")
    assert "AGE-SECRET-KEY" not in shown
    assert "PRIVATE KEY" not in shown
    assert SECRET.decode() not in shown


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not an age file"),
        (b"hello, this is not sealed\n", "does not start with 'age-encryption.org/v1'"),
        (b"\x00\x01\x02\xff" * 50, "not an age file"),
        (b"-----BEGIN AGE ENCRYPTED FILE-----\n!!!!\n", "no END line"),
        (b"age-encryption.org/v1\n-> X25519 abc\nAAAA\n", "no '---' MAC line"),
        (b"age-encryption.org/v1\n--- abc\n", "names no recipient"),
    ],
)
def test_garbage_input_is_a_clear_error(data: bytes, message: str, age_key: KeyPair) -> None:
    with pytest.raises(SecretError, match=message):
        unseal_age(data, load_identities([age_key.path]), target_name="wg.key.age")


def test_truncated_file_is_reported_as_damaged_not_as_wrong_key(age_key: KeyPair) -> None:
    sealed = seal_age(b"x" * 5000, [age_key.recipient])
    from meshops.secrets.agefile import dearmor

    binary = dearmor(sealed)
    with pytest.raises(SecretError, match="damaged or truncated") as caught:
        unseal_age(binary[:-100], load_identities([age_key.path]), target_name="t.age")
    assert not isinstance(caught.value, UnsealFailed)


def test_flipped_byte_in_payload_is_reported_as_damaged(age_key: KeyPair, tmp_path: Path) -> None:
    from meshops.secrets.agefile import dearmor

    binary = bytearray(dearmor(seal_age(b"y" * 100, [age_key.recipient])))
    binary[-5] ^= 0xFF
    with pytest.raises(SecretError, match="damaged"):
        unseal_age(bytes(binary), load_identities([age_key.path]))
