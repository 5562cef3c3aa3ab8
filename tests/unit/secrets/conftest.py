"""Keys made with the stock tools (age-keygen, ssh-keygen), shared by the secrets tests."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshops.model.types import Recipient


@dataclass(frozen=True)
class KeyPair:
    """A private key file made by a stock tool, and its public recipient."""

    path: Path
    recipient: Recipient


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def _age_key(directory: Path, name: str) -> KeyPair:
    path = directory / name
    _run(["age-keygen", "-o", str(path)])
    public = _run(["age-keygen", "-y", str(path)]).stdout.decode().strip()
    return KeyPair(path, Recipient.parse(public))


def _ssh_key(directory: Path, name: str, kind: str, passphrase: str = "") -> KeyPair:
    path = directory / name
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "test@meshops", "-f", str(path)]
    if kind == "rsa":
        argv[4:4] = ["-b", "2048"]
    _run(argv)
    text = (directory / f"{name}.pub").read_text()
    recipient = Recipient.parse(text) if kind in ("ed25519", "rsa") else Recipient("age", "")
    return KeyPair(path, recipient)


@pytest.fixture(scope="session")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    os.chmod(directory, 0o700)
    return directory


@pytest.fixture(scope="session")
def age_key(keydir: Path) -> KeyPair:
    return _age_key(keydir, "age.txt")


@pytest.fixture(scope="session")
def other_age_key(keydir: Path) -> KeyPair:
    return _age_key(keydir, "other-age.txt")


@pytest.fixture(scope="session")
def ed25519_key(keydir: Path) -> KeyPair:
    return _ssh_key(keydir, "id_ed25519", "ed25519")


@pytest.fixture(scope="session")
def other_ed25519_key(keydir: Path) -> KeyPair:
    return _ssh_key(keydir, "other_ed25519", "ed25519")


@pytest.fixture(scope="session")
def rsa_key(keydir: Path) -> KeyPair:
    return _ssh_key(keydir, "id_rsa", "rsa")


@pytest.fixture(scope="session")
def encrypted_ssh_key(keydir: Path) -> Path:
    return _ssh_key(keydir, "id_encrypted", "ed25519", passphrase="correct horse").path


@pytest.fixture(scope="session")
def ecdsa_key(keydir: Path) -> Path:
    return _ssh_key(keydir, "id_ecdsa", "ecdsa").path
