"""Loading identities: age identity files and OpenSSH keys, with clear errors."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from conftest import KeyPair
from secrets_helpers import stock, write_private

from meshops.errors import SecretError
from meshops.secrets import (
    default_identity_paths,
    generate_age_identity,
    load_identities,
    seal_age,
    unseal_age,
)


def test_age_identity_public_form_matches_age_keygen(age_key: KeyPair) -> None:
    (identity,) = load_identities([age_key.path])

    assert identity.kind == "age"
    assert identity.public == age_key.recipient.text
    assert identity.source == f"{age_key.path}:3"  # after age-keygen's two comment lines
    assert identity.path == age_key.path


def test_age_file_with_comments_blank_lines_and_several_keys(
    age_key: KeyPair, other_age_key: KeyPair, tmp_path: Path
) -> None:
    lines = [
        "# team keys",
        "",
        *age_key.path.read_text().splitlines(),
        "   ",
        *other_age_key.path.read_text().splitlines(),
    ]
    path = write_private(tmp_path / "keys.txt", "\n".join(lines).encode())

    identities = load_identities([path])

    assert [i.public for i in identities] == [
        age_key.recipient.text,
        other_age_key.recipient.text,
    ]


@pytest.mark.parametrize("key_name", ["ed25519_key", "rsa_key"])
def test_ssh_identity_public_form_is_the_pub_file_without_comment(
    key_name: str, request: pytest.FixtureRequest
) -> None:
    key: KeyPair = request.getfixturevalue(key_name)
    (identity,) = load_identities([key.path])

    assert identity.kind == key.recipient.kind
    assert identity.public == key.recipient.text
    assert identity.recipient == key.recipient
    assert identity.source == str(key.path)


def test_pem_rsa_key_loads_with_the_same_public_key(rsa_key: KeyPair, tmp_path: Path) -> None:
    pem = write_private(tmp_path / "id_rsa_pem", rsa_key.path.read_bytes())
    subprocess.run(
        ["ssh-keygen", "-q", "-p", "-N", "", "-P", "", "-m", "PEM", "-f", str(pem)],
        check=True,
        capture_output=True,
    )
    assert pem.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")

    (identity,) = load_identities([pem])

    assert identity.public == rsa_key.recipient.text
    assert unseal_age(seal_age(b"pem", [rsa_key.recipient]), [identity]) == b"pem"


def test_identities_from_several_files_keep_order(
    ed25519_key: KeyPair, age_key: KeyPair, rsa_key: KeyPair
) -> None:
    identities = load_identities([ed25519_key.path, age_key.path, rsa_key.path])

    assert [i.kind for i in identities] == ["ssh-ed25519", "age", "ssh-rsa"]


def test_identity_repr_and_str_never_show_the_secret(
    age_key: KeyPair, ed25519_key: KeyPair
) -> None:
    for identity in load_identities([age_key.path, ed25519_key.path]):
        shown = repr(identity) + str(identity) + identity.describe()
        assert "AGE-SECRET-KEY" not in shown
        assert "PRIVATE KEY" not in shown
        assert identity.secret  # held, just never shown


def test_passphrase_protected_ssh_key_is_a_clear_error(encrypted_ssh_key: Path) -> None:
    with pytest.raises(SecretError, match="passphrase-protected") as caught:
        load_identities([encrypted_ssh_key])
    assert str(encrypted_ssh_key) in str(caught.value)
    assert "ssh-ed25519 AAAA" in str(caught.value)  # its public key, to tell which one


def test_ecdsa_ssh_key_is_refused_naming_the_supported_kinds(ecdsa_key: Path) -> None:
    with pytest.raises(SecretError, match="ecdsa-sha2-nistp256; age supports only"):
        load_identities([ecdsa_key])


def test_missing_identity_file_says_how_to_pass_one(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="does not exist") as caught:
        load_identities([tmp_path / "nope"])
    assert "--identity" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello world\n", r"garbage:1: not an age identity"),
        (b"# only a comment\n\n", "holds no age identity"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "is not text"),
        (
            b"AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\n",
            "damaged",
        ),
        (b"AGE-PLUGIN-YUBIKEY-1QQQQQQ\n", "plugin identities are not supported"),
        (
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
            "damaged",
        ),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "CERTIFICATE"),
        (
            b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n",
            "itself age-encrypted",
        ),
    ],
)
def test_garbage_identity_file_is_a_clear_error_without_echoing_it(
    content: bytes, message: str, tmp_path: Path
) -> None:
    path = write_private(tmp_path / "garbage", content)

    with pytest.raises(SecretError, match=message) as caught:
        load_identities([path])
    assert "QQQQQQQQQQ" not in str(caught.value)


def test_generated_age_identity_works_with_stock_age(tmp_path: Path) -> None:
    text, recipient = generate_age_identity()
    path = write_private(tmp_path / "host.key", text.encode())

    assert recipient.kind == "age"
    assert stock(["age-keygen", "-y", str(path)]).decode().strip() == recipient.text
    sealed = write_private(tmp_path / "s.age", seal_age(b"hi", [recipient]))
    assert stock(["age", "-d", "-i", str(path), str(sealed)]) == b"hi"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert generate_age_identity()[1] != recipient


def test_default_identity_is_the_ssh_host_key_under_root(tmp_path: Path) -> None:
    assert default_identity_paths(tmp_path) == [tmp_path / "etc/ssh/ssh_host_ed25519_key"]
    assert default_identity_paths(Path("/")) == [Path("/etc/ssh/ssh_host_ed25519_key")]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620])
@pytest.mark.parametrize("key_name", ["age_key", "ed25519_key"])
def test_an_identity_others_may_read_is_refused_with_the_fix(
    key_name: str, mode: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """As ssh refuses an unprotected private key file (issue 14)."""
    key: KeyPair = request.getfixturevalue(key_name)
    path = tmp_path / "identity"
    path.write_bytes(key.path.read_bytes())
    path.chmod(mode)
    with pytest.raises(SecretError) as caught:
        load_identities([path])
    assert f"mode {mode:04o}" in caught.value.message
    assert caught.value.hint is not None and f"chmod 600 {path}" in caught.value.hint
    path.chmod(0o600)
    assert load_identities([path])[0].public == key.recipient.text
    path.chmod(0o400)
    assert load_identities([path])[0].public == key.recipient.text
