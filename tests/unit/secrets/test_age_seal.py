"""age sealing interoperates with the stock Debian `age` both ways."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import KeyPair
from secrets_helpers import stock, write_private

from meshops.secrets import load_identities, seal_age, unseal_age

PLAINTEXT = (
    b"-----BEGIN PRIVATE KEY-----\n"
    b"MC4CAQAwBQYDK2VwBCIEIPretendThisIsAKey\n"
    b"-----END PRIVATE KEY-----\n"
)


@pytest.mark.parametrize("key_name", ["age_key", "ed25519_key", "rsa_key"])
def test_sealed_file_opens_with_stock_age_for_each_identity_kind(
    key_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    key: KeyPair = request.getfixturevalue(key_name)
    sealed = write_private(tmp_path / "root.key.age", seal_age(PLAINTEXT, [key.recipient]))

    assert stock(["age", "-d", "-i", str(key.path), str(sealed)]) == PLAINTEXT


def test_one_file_sealed_to_three_kinds_opens_with_each(
    age_key: KeyPair, ed25519_key: KeyPair, rsa_key: KeyPair, tmp_path: Path
) -> None:
    recipients = [age_key.recipient, ed25519_key.recipient, rsa_key.recipient]
    sealed = write_private(tmp_path / "wg.key.age", seal_age(PLAINTEXT, recipients))

    for key in (age_key, ed25519_key, rsa_key):
        assert stock(["age", "-d", "-i", str(key.path), str(sealed)]) == PLAINTEXT
        assert unseal_age(sealed.read_bytes(), load_identities([key.path])) == PLAINTEXT


def test_sealed_output_is_ascii_armor_without_the_plaintext(age_key: KeyPair) -> None:
    sealed = seal_age(PLAINTEXT, [age_key.recipient])

    assert sealed.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----\n")
    assert sealed.rstrip().endswith(b"-----END AGE ENCRYPTED FILE-----")
    sealed.decode("ascii")  # text, so git diffs it line by line
    assert b"PRIVATE KEY-----\nMC4C" not in sealed
    assert b"PretendThisIsAKey" not in sealed


def test_sealing_twice_gives_different_files(age_key: KeyPair) -> None:
    assert seal_age(PLAINTEXT, [age_key.recipient]) != seal_age(PLAINTEXT, [age_key.recipient])


@pytest.mark.parametrize("armor", [True, False])
@pytest.mark.parametrize("key_name", ["age_key", "ed25519_key", "rsa_key"])
def test_file_from_stock_age_encrypt_unseals(
    key_name: str, armor: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    key: KeyPair = request.getfixturevalue(key_name)
    plain = write_private(tmp_path / "plain", PLAINTEXT)
    argv = ["age", "-e", "-r", key.recipient.text, *(["-a"] if armor else []), str(plain)]
    sealed = stock(argv)

    assert unseal_age(sealed, load_identities([key.path])) == PLAINTEXT


def test_stock_age_file_sealed_with_recipients_file_and_ssh_pub(
    ed25519_key: KeyPair, tmp_path: Path
) -> None:
    plain = write_private(tmp_path / "plain", b"\x00\xff binary \n\r\n")
    pub = Path(f"{ed25519_key.path}.pub")
    sealed = stock(["age", "-e", "-R", str(pub), str(plain)])

    assert unseal_age(sealed, load_identities([ed25519_key.path])) == b"\x00\xff binary \n\r\n"


def test_empty_and_large_plaintexts_round_trip(age_key: KeyPair) -> None:
    identities = load_identities([age_key.path])
    for size in (0, 1, 64 * 1024 + 17):
        data = os.urandom(size)
        assert unseal_age(seal_age(data, [age_key.recipient]), identities) == data


def test_files_written_by_tests_are_private(age_key: KeyPair, tmp_path: Path) -> None:
    sealed = write_private(tmp_path / "x.age", seal_age(b"x", [age_key.recipient]))

    assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
    assert stat.S_IMODE(age_key.path.stat().st_mode) == 0o600
