"""One front door: `sealer_for(format, repo_dir)` names files and round-trips secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KeyPair

from meshops.secrets import AgeSealer, SopsSealer, load_identities, recipients_of, sealer_for


@pytest.mark.parametrize(("fmt", "suffix"), [("age", ".age"), ("sops", ".sops")])
def test_sealer_names_files_and_round_trips(
    fmt: str, suffix: str, age_key: KeyPair, ed25519_key: KeyPair, tmp_path: Path
) -> None:
    sealer = sealer_for(fmt, tmp_path)  # type: ignore[arg-type]
    target = Path(f"state/nodes/web-1/ca.key{sealer.suffix}")
    recipients = [age_key.recipient, ed25519_key.recipient]

    sealed = sealer.seal(b"node-ca-key", recipients, target)

    assert sealer.suffix == suffix
    assert b"node-ca-key" not in sealed
    identities = load_identities([ed25519_key.path])
    assert sealer.unseal(sealed, identities, str(target)) == b"node-ca-key"
    assert recipients_of(sealed).format == fmt


def test_sealer_for_picks_the_implementation(tmp_path: Path) -> None:
    assert isinstance(sealer_for("age", tmp_path), AgeSealer)
    assert sealer_for("sops", tmp_path) == SopsSealer(tmp_path)


def test_age_unseal_of_a_sops_file_says_which_format_it_is(
    age_key: KeyPair, tmp_path: Path
) -> None:
    sops_file = sealer_for("sops", tmp_path).seal(b"x", [age_key.recipient], Path("a.sops"))

    with pytest.raises(Exception, match="is a sops file, not an age file"):
        sealer_for("age", tmp_path).unseal(sops_file, load_identities([age_key.path]), "a.age")


def test_sops_files_know_exactly_whether_recipients_changed(
    age_key: KeyPair, other_age_key: KeyPair, tmp_path: Path
) -> None:
    sealed = sealer_for("sops", tmp_path).seal(b"x", [age_key.recipient], Path("a.sops"))
    info = recipients_of(sealed)

    assert info.matches([age_key.recipient]) is True
    assert info.matches([other_age_key.recipient]) is False


def test_importing_secrets_loads_neither_pyrage_nor_cryptography() -> None:
    code = (
        "import sys, meshops.secrets\n"
        "heavy = [m for m in ('pyrage', 'cryptography') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert out.stdout.decode().strip() == ""
