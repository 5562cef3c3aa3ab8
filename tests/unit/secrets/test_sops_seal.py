"""sops mode: what meshops seals opens with the stock `sops -d`, and the reverse."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import KeyPair
from secrets_helpers import stock, write_private

from meshops.errors import SecretError
from meshops.model.types import Recipient
from meshops.secrets import (
    SOPS_SUFFIX,
    UnsealFailed,
    load_identities,
    recipients_of,
    seal_sops,
    unseal_sops,
)
from meshops.secrets.sops import _check_sealed, merged_config

ROOT_KEY = Path("state/ca/root.key.sops")
WG_KEY = Path("state/nodes/web-1/wg.key.sops")


def sops_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment for stock sops that sees only the keys a test names."""
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home), "SOPS_DISABLE_VERSION_CHECK": "1"}
    env.update(extra)
    return env


def stock_sops_decrypt(path: Path, home: Path, **keys: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    env.update(sops_env(home, **keys))
    return subprocess.run(["sops", "-d", str(path)], capture_output=True, env=env, check=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    directory = tmp_path / "mesh-repo"
    (directory / "state").mkdir(parents=True)
    return directory


def seal_into(repo: Path, target: Path, plaintext: bytes, recipients: list[Recipient]) -> Path:
    sealed = seal_sops(plaintext, recipients, repo_dir=repo, target=target)
    return write_private(repo / target, sealed)


def test_stock_sops_decrypt_gives_the_original_bytes(
    repo: Path, age_key: KeyPair, tmp_path: Path
) -> None:
    plaintext = os.urandom(300) + b"\n-----END PRIVATE KEY-----\n"
    path = seal_into(repo, ROOT_KEY, plaintext, [age_key.recipient])

    proc = stock_sops_decrypt(path, tmp_path, SOPS_AGE_KEY_FILE=str(age_key.path))

    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == plaintext
    assert path.name.endswith(SOPS_SUFFIX)


@pytest.mark.parametrize("key_name", ["ed25519_key", "rsa_key"])
def test_stock_sops_opens_files_sealed_to_ssh_keys(
    key_name: str, request: pytest.FixtureRequest, repo: Path, tmp_path: Path
) -> None:
    key: KeyPair = request.getfixturevalue(key_name)
    path = seal_into(repo, WG_KEY, b"wg-private-key=", [key.recipient])

    proc = stock_sops_decrypt(path, tmp_path, SOPS_AGE_SSH_PRIVATE_KEY_FILE=str(key.path))

    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"wg-private-key="


def test_sealed_file_is_json_text_without_the_plaintext(repo: Path, age_key: KeyPair) -> None:
    sealed = seal_sops(b"very-secret-value", [age_key.recipient], repo_dir=repo, target=ROOT_KEY)

    assert b"very-secret-value" not in sealed
    assert sealed.decode().lstrip().startswith("{")
    assert recipients_of(sealed).known_recipients == (age_key.recipient.text,)


@pytest.mark.parametrize("key_name", ["age_key", "ed25519_key", "rsa_key"])
def test_file_from_stock_sops_encrypt_unseals(
    key_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    key: KeyPair = request.getfixturevalue(key_name)
    plain = write_private(tmp_path / "root.key", b"\x00binary\xffsecret\n")
    sealed = stock(
        ["sops", "-e", "--age", key.recipient.text, str(plain)],
        env=sops_env(tmp_path / "home"),
    )

    assert unseal_sops(sealed, load_identities([key.path])) == b"\x00binary\xffsecret\n"


def test_meshops_unseals_what_it_sealed_with_each_identity(
    repo: Path, age_key: KeyPair, ed25519_key: KeyPair, rsa_key: KeyPair
) -> None:
    keys = [age_key, ed25519_key, rsa_key]
    sealed = seal_sops(b"s3cret", [k.recipient for k in keys], repo_dir=repo, target=ROOT_KEY)

    for key in keys:
        assert unseal_sops(sealed, load_identities([key.path])) == b"s3cret"
    both_ssh = load_identities([rsa_key.path, ed25519_key.path])
    assert unseal_sops(sealed, both_ssh) == b"s3cret"


def write_sops_config(repo: Path, rules: list[dict[str, object]]) -> None:
    text = yaml.safe_dump({"creation_rules": rules})
    write_private(repo / ".sops.yaml", text.encode())


def test_sops_yaml_rule_recipient_is_added_to_the_mesh_recipients(
    repo: Path, age_key: KeyPair, other_age_key: KeyPair, ed25519_key: KeyPair, tmp_path: Path
) -> None:
    write_sops_config(repo, [{"path_regex": r"^state/ca/", "age": other_age_key.recipient.text}])
    path = seal_into(repo, ROOT_KEY, b"root", [ed25519_key.recipient])

    assert set(recipients_of(path.read_bytes()).known_recipients) == {
        other_age_key.recipient.text,
        ed25519_key.recipient.text,
    }
    by_rule = stock_sops_decrypt(path, tmp_path, SOPS_AGE_KEY_FILE=str(other_age_key.path))
    assert by_rule.stdout == b"root", by_rule.stderr.decode()
    by_mesh = stock_sops_decrypt(
        path, tmp_path, SOPS_AGE_SSH_PRIVATE_KEY_FILE=str(ed25519_key.path)
    )
    assert by_mesh.stdout == b"root", by_mesh.stderr.decode()
    assert (repo / ".sops.yaml").read_text().count("age1") == 1  # never rewritten


def test_sops_yaml_rule_for_another_path_does_not_apply(
    repo: Path, other_age_key: KeyPair, ed25519_key: KeyPair, tmp_path: Path
) -> None:
    write_sops_config(repo, [{"path_regex": r"^state/ca/", "age": other_age_key.recipient.text}])
    path = seal_into(repo, WG_KEY, b"wg", [ed25519_key.recipient])

    assert recipients_of(path.read_bytes()).known_recipients == (ed25519_key.recipient.text,)
    refused = stock_sops_decrypt(path, tmp_path, SOPS_AGE_KEY_FILE=str(other_age_key.path))
    assert refused.returncode != 0


def test_sops_yaml_key_groups_each_get_the_mesh_recipients(
    repo: Path, age_key: KeyPair, other_age_key: KeyPair, ed25519_key: KeyPair
) -> None:
    write_sops_config(
        repo,
        [
            {
                "path_regex": r"\.sops$",
                "shamir_threshold": 2,
                "key_groups": [
                    {"age": [other_age_key.recipient.text]},
                    {"age": [age_key.recipient.text]},
                ],
            }
        ],
    )
    sealed = seal_sops(b"split", [ed25519_key.recipient], repo_dir=repo, target=ROOT_KEY)

    # The mesh recipient sits in both groups, so it alone recovers both shares.
    assert unseal_sops(sealed, load_identities([ed25519_key.path])) == b"split"


def test_sops_yaml_encrypted_regex_cannot_leave_the_value_in_clear(
    repo: Path, age_key: KeyPair
) -> None:
    # sops ignores (un)encrypted_regex for the binary store: the one value is encrypted.
    write_sops_config(repo, [{"age": age_key.recipient.text, "unencrypted_regex": "^data$"}])

    sealed = seal_sops(b"leaky-secret", [age_key.recipient], repo_dir=repo, target=ROOT_KEY)

    assert b"leaky-secret" not in sealed
    assert unseal_sops(sealed, load_identities([age_key.path])) == b"leaky-secret"


def test_output_with_the_value_in_clear_is_refused(age_key: KeyPair) -> None:
    leaked = json.dumps(
        {"data": "leaky-secret", "sops": {"age": [{"recipient": age_key.recipient.text}]}}
    ).encode()

    with pytest.raises(SecretError, match="unencrypted") as caught:
        _check_sealed(leaked, [age_key.recipient], ROOT_KEY)
    assert "leaky-secret" not in str(caught.value)


def test_output_missing_a_mesh_recipient_is_refused(
    age_key: KeyPair, other_age_key: KeyPair
) -> None:
    document = {
        "data": "ENC[AES256_GCM,data:AA==]",
        "sops": {"age": [{"recipient": other_age_key.recipient.text}]},
    }

    with pytest.raises(SecretError, match="without 1 of the mesh recipients"):
        _check_sealed(json.dumps(document).encode(), [age_key.recipient], ROOT_KEY)


def test_broken_sops_yaml_is_a_clear_error(repo: Path, age_key: KeyPair) -> None:
    write_private(repo / ".sops.yaml", b"creation_rules: [unclosed\n")

    with pytest.raises(SecretError, match=r"\.sops\.yaml is not valid YAML"):
        seal_sops(b"x", [age_key.recipient], repo_dir=repo, target=ROOT_KEY)


def test_environment_recipients_do_not_leak_into_sealing(
    repo: Path, age_key: KeyPair, other_age_key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOPS_AGE_RECIPIENTS", other_age_key.recipient.text)

    sealed = seal_sops(b"x", [age_key.recipient], repo_dir=repo, target=ROOT_KEY)

    assert recipients_of(sealed).known_recipients == (age_key.recipient.text,)


def test_inherited_sops_key_settings_do_not_break_or_widen_unsealing(
    repo: Path,
    age_key: KeyPair,
    other_age_key: KeyPair,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sealed = seal_sops(b"x", [age_key.recipient], repo_dir=repo, target=ROOT_KEY)
    monkeypatch.setenv("SOPS_AGE_SSH_PRIVATE_KEY_FILE", str(tmp_path / "missing"))
    monkeypatch.setenv("SOPS_AGE_KEY_CMD", "false")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(tmp_path / "missing-too"))

    assert unseal_sops(sealed, load_identities([age_key.path])) == b"x"


def test_absolute_target_inside_the_repo_is_accepted(repo: Path, age_key: KeyPair) -> None:
    sealed = seal_sops(b"x", [age_key.recipient], repo_dir=repo, target=repo / ROOT_KEY)
    assert unseal_sops(sealed, load_identities([age_key.path])) == b"x"

    with pytest.raises(SecretError, match="outside the mesh repository"):
        seal_sops(b"x", [age_key.recipient], repo_dir=repo, target=Path("/etc/elsewhere.sops"))


def test_wrong_identity_lists_the_file_recipients_and_what_was_tried(
    repo: Path, age_key: KeyPair, other_age_key: KeyPair, rsa_key: KeyPair
) -> None:
    sealed = seal_sops(b"x", [age_key.recipient], repo_dir=repo, target=ROOT_KEY)

    with pytest.raises(UnsealFailed) as caught:
        unseal_sops(
            sealed, load_identities([other_age_key.path, rsa_key.path]), target_name="root.key"
        )

    message = str(caught.value)
    assert "cannot unseal root.key: none of the 2 identities given opens it" in message
    assert f"    {age_key.recipient.text}" in message
    assert f"{other_age_key.recipient.text} - not a recipient" in message
    assert "AGE-SECRET-KEY" not in message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not valid JSON"),
        (b"not json at all", "not valid JSON"),
        (b'{"data": "x"}', "no 'sops' metadata"),
        (b'{"password": "ENC[...]", "sops": {"age": []}}', "not a single sealed value"),
    ],
)
def test_garbage_input_is_a_clear_error(data: bytes, message: str, age_key: KeyPair) -> None:
    with pytest.raises(SecretError, match=message):
        unseal_sops(data, load_identities([age_key.path]), target_name="root.key.sops")


def test_tampered_value_is_reported_as_damaged(repo: Path, age_key: KeyPair) -> None:
    sealed = seal_sops(b"abcdef", [age_key.recipient], repo_dir=repo, target=ROOT_KEY)
    tampered = sealed.replace(b'"data": "ENC[AES256_GCM,data:', b'"data": "ENC[AES256_GCM,data:A')

    with pytest.raises(SecretError) as caught:
        unseal_sops(tampered, load_identities([age_key.path]), target_name="root.key.sops")
    assert "abcdef" not in str(caught.value)


def test_merged_config_adds_mesh_recipients_to_every_rule_and_a_catch_all() -> None:
    user = {
        "stores": {"json": {"indent": 2}},
        "creation_rules": [
            {"path_regex": "^a/", "age": "age1aaa, age1bbb"},
            {"path_regex": "^b/", "age": ["age1ccc"], "pgp": "FINGERPRINT"},
            {"path_regex": "^c/", "key_groups": [{"pgp": ["F"]}, {"age": ["age1ddd"]}]},
        ],
    }
    mesh = [Recipient.parse("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")]
    m = mesh[0].text

    config = merged_config(user, mesh)

    assert config["stores"] == {"json": {"indent": 2}}
    assert config["creation_rules"] == [
        {"path_regex": "^a/", "age": ["age1aaa", "age1bbb", m]},
        {"path_regex": "^b/", "age": ["age1ccc", m], "pgp": "FINGERPRINT"},
        {"path_regex": "^c/", "key_groups": [{"pgp": ["F"], "age": [m]}, {"age": ["age1ddd", m]}]},
        {"age": [m]},
    ]
    assert merged_config(None, mesh) == {"creation_rules": [{"age": [m]}]}
