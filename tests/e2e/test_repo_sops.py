"""sops mode: the same state, each secret a sops file that the stock `sops -d` opens."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from test_repo_support import (
    HostKey,
    KeyRing,
    keyring,
    new_repo,
    public_der_of_cert,
    public_der_of_private_pem,
    wg_pubkey,
)

pytestmark = pytest.mark.e2e
__all__ = ["keyring"]


def sops_decrypt(path: Path, key: HostKey) -> subprocess.CompletedProcess[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SOPS_AGE")},
        "SOPS_AGE_KEY_FILE": str(key.private_file),
        "SOPS_DISABLE_VERSION_CHECK": "1",
    }
    return subprocess.run(["sops", "-d", str(path)], capture_output=True, env=env)


def test_sops_mode_apply_seals_files_the_stock_sops_opens(tmp_path: Path, keyring: KeyRing) -> None:
    # sops' SSH recipient support is partial, so the nodes use age X25519 recipients
    repo = new_repo(
        tmp_path / "mesh", keyring, nodes=3, host_kind="age", secrets={"format": "sops"}
    )
    first = repo.plan()
    assert first.returncode == 2, str(first)
    repo.apply()
    assert repo.plan().returncode == 0

    state = repo.state()
    ca = repo.state_dir / "ca"
    assert not list(repo.state_dir.rglob("*.age"))
    root = sops_decrypt(ca / "root.key.sops", repo.operator)
    assert root.returncode == 0, root.stderr
    assert public_der_of_private_pem(root.stdout) == public_der_of_cert(
        (ca / "root.crt").read_bytes()
    )
    for name in sorted(repo.data["nodes"]):
        node_dir = repo.state_dir / "nodes" / name
        host = repo.host_keys[name]
        sealed = json.loads((node_dir / "ca.key.sops").read_text())
        assert "sops" in sealed and "PRIVATE KEY" not in json.dumps(sealed)
        key = sops_decrypt(node_dir / "ca.key.sops", host)
        assert key.returncode == 0, key.stderr
        assert public_der_of_private_pem(key.stdout) == public_der_of_cert(
            (node_dir / "ca.crt").read_bytes()
        )
        wg = sops_decrypt(node_dir / "wg.key.sops", host)
        assert wg.returncode == 0, wg.stderr
        assert wg_pubkey(wg.stdout.decode()) == state["nodes"][name]["wireguard"]["public_key"]
        other = next(k for n, k in repo.host_keys.items() if n != name)
        assert sops_decrypt(node_dir / "wg.key.sops", other).returncode != 0
        assert sops_decrypt(node_dir / "ca.key.sops", repo.operator).returncode != 0

    # a node's keys re-sealed to its new recipient, still opened by stock sops
    repo.set_node("node-2", keyring.age_hosts[6], 2)
    repo.write_mesh()
    repo.apply()
    assert repo.plan().returncode == 0
    node_dir = repo.state_dir / "nodes/node-2"
    assert sops_decrypt(node_dir / "wg.key.sops", keyring.age_hosts[6]).returncode == 0
    assert sops_decrypt(node_dir / "wg.key.sops", keyring.age_hosts[1]).returncode != 0


def test_sops_mode_root_rotation_keeps_every_root_key_openable_by_stock_sops(
    tmp_path: Path, keyring: KeyRing
) -> None:
    repo = new_repo(
        tmp_path / "mesh", keyring, nodes=2, host_kind="age", secrets={"format": "sops"}
    )
    repo.apply()
    ca = repo.state_dir / "ca"
    assert repo.meshops("ca", "rotate", "--hold", "0s", identity=True).returncode == 0
    staged = sops_decrypt(ca / "root.next.key.sops", repo.operator)
    assert public_der_of_private_pem(staged.stdout) == public_der_of_cert(
        (ca / "root.next.crt").read_bytes()
    )
    repo.apply()  # 1/3: both roots trusted, each key in its sops file
    roots = (ca / "root.crt").read_bytes()
    for name, index in (("root.key.sops", -1), ("root.previous.key.sops", 0)):
        opened = sops_decrypt(ca / name, repo.operator)
        assert opened.returncode == 0, opened.stderr
        assert public_der_of_private_pem(opened.stdout) == public_der_of_cert(roots, index)
    repo.apply()  # 2/3
    repo.apply()  # 3/3
    assert repo.plan().returncode == 0
    assert not (ca / "root.previous.key.sops").exists()
    assert (ca / "root.crt").read_bytes().count(b"BEGIN CERTIFICATE") == 1
    opened = sops_decrypt(ca / "root.key.sops", repo.operator)
    assert public_der_of_private_pem(opened.stdout) == public_der_of_cert(
        (ca / "root.crt").read_bytes()
    )
