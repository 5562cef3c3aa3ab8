"""sops mode never writes an identity to disk (issue 14): the age key goes to sops in its
environment, an SSH key through a pipe; a meshops killed mid-decrypt leaves nothing
behind, and what an older meshops left (keys.txt in a temp directory) is swept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import KeyPair

from meshops.secrets import load_identities, seal_sops, unseal_sops
from meshops.secrets.sops import sweep_stale_temp_dirs


def _sealed(tmp_path: Path, key: KeyPair) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    target = Path("state/ca/root.key.sops")
    sealed = seal_sops(b"the root key", [key.recipient], repo_dir=repo, target=target)
    path = tmp_path / "root.key.sops"
    path.write_bytes(sealed)
    return path


def _secrets_in(directory: Path, secrets: list[bytes]) -> list[Path]:
    found = []
    for parent, _, files in os.walk(directory):
        for name in files:
            path = Path(parent) / name
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(s in data for s in secrets):
                found.append(path)
    return found


@pytest.mark.parametrize("key_name", ["age_key", "ed25519_key"])
def test_a_decrypt_killed_at_random_points_leaves_no_key_on_disk(
    key_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    key: KeyPair = request.getfixturevalue(key_name)
    sealed = _sealed(tmp_path, key)
    temp = tmp_path / "tmp"
    temp.mkdir()
    (identity,) = load_identities([key.path])
    secret_lines = [ln.encode() for ln in key.path.read_text().splitlines() if "SECRET" in ln]
    secrets = secret_lines or [identity.secret[40:90]]  # a slice of an OpenSSH key body
    child = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from meshops.secrets import load_identities, unseal_sops
        ids = load_identities([Path({str(key.path)!r})])
        data = Path({str(sealed)!r}).read_bytes()
        print("ready", flush=True)
        while True:
            assert unseal_sops(data, ids) == b"the root key"
        """
    )
    env = {**os.environ, "TMPDIR": str(temp), "SOPS_DISABLE_VERSION_CHECK": "1"}
    for delay in (0.3, 0.5, 0.8, 1.2):
        proc = subprocess.Popen([sys.executable, "-c", child], env=env, stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:  # watch while it decrypts, again and again
            assert _secrets_in(temp, secrets) == []
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _secrets_in(temp, secrets) == [], "a killed decrypt left its key behind"
        assert [p.name for p in temp.iterdir()] == []


def test_stale_temp_directories_of_dead_runs_are_swept(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = tmp_path / f"meshops-sops-{dead.pid}-x1y2"
    leftover.mkdir()
    (leftover / "keys.txt").write_text("AGE-SECRET-KEY-1...\n")
    older = tmp_path / "meshops-sops-ab12cd34"  # an older meshops' name: no pid
    older.mkdir()
    (older / "keys.txt").write_text("AGE-SECRET-KEY-1...\n")
    os.utime(older, (time.time() - 3600, time.time() - 3600))
    live = tmp_path / f"meshops-sops-{os.getpid()}-live"
    live.mkdir()
    other = tmp_path / "not-ours"
    other.mkdir()
    assert sorted(sweep_stale_temp_dirs(tmp_path)) == sorted([leftover, older])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_unsealing_works_with_an_identity_that_is_not_a_file(
    ed25519_key: KeyPair, tmp_path: Path
) -> None:
    from dataclasses import replace

    sealed = _sealed(tmp_path, ed25519_key)
    (identity,) = load_identities([ed25519_key.path])
    in_memory = replace(identity, path=None)  # sops reads it from a pipe
    assert unseal_sops(sealed.read_bytes(), [in_memory]) == b"the root key"
