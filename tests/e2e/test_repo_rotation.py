"""Root rotation and CA import, end to end with the installed CLI.

Each phase is checked with stock openssl: every node CA chains to the trust bundle of
its phase, the CRL file holds one CRL per trusted root, and after retirement the old
root's chains no longer verify.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_repo_support import (
    KeyRing,
    MeshRepo,
    age_decrypt,
    check_consistent,
    keyring,
    new_repo,
    openssl,
    public_der_of_cert,
    public_der_of_private_pem,
)

pytestmark = pytest.mark.e2e
__all__ = ["keyring"]  # the session fixture, imported for pytest

HOLD = 600.0  # seconds each phase is held in these tests, on the test clock


@pytest.fixture
def test_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """meshops runs on MESHOPS_TEST_NOW, starting an hour ago: waiting out a hold
    moves it forward instead of sleeping (certificates stay valid for openssl now)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    monkeypatch.setenv("MESHOPS_TEST_NOW", start.isoformat())


def _advance(seconds: float) -> None:
    now = datetime.fromisoformat(os.environ["MESHOPS_TEST_NOW"])
    os.environ["MESHOPS_TEST_NOW"] = (now + timedelta(seconds=seconds)).isoformat()


def _certs(path: Path) -> list[str]:
    pattern = r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n"
    return re.findall(pattern, path.read_text(), re.S)


def _crls(path: Path) -> list[str]:
    pattern = r"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----\n"
    return re.findall(pattern, path.read_text(), re.S)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _verify(tmp: Path, cafile: Path, cert: Path) -> bool:
    return openssl("verify", "-CAfile", str(cafile), str(cert)).returncode == 0


def _crl_serials(tmp: Path, crl: str, root: str) -> set[str] | None:
    """Serials a CRL lists, or None if it is not signed by `root`."""
    crl_file, ca_file = _write(tmp / "one.crl", crl), _write(tmp / "one-ca.pem", root)
    checked = openssl("crl", "-noout", "-CAfile", str(ca_file), "-in", str(crl_file))
    if checked.returncode != 0:
        return None
    text = openssl("crl", "-noout", "-text", "-in", str(crl_file)).stdout
    return {s.lower().lstrip("0") for s in re.findall(r"Serial Number: ([0-9A-F]+)", text)}


def _status(repo: MeshRepo) -> dict[str, Any]:
    result = repo.meshops("status", "--format", "json")
    assert result.returncode == 0, str(result)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _wait_out_hold(repo: MeshRepo) -> None:
    """Plan shows nothing while the phase is held (a note says until when), then the
    next phase."""
    held = repo.plan()
    assert held.returncode == 0
    assert "Note: root rotation: next phase" in held.stdout and "held" in held.stdout
    _advance(HOLD + 1)


@pytest.mark.usefixtures("test_clock")
def test_rotation_moves_every_node_ca_to_the_new_root_in_three_held_phases(
    tmp_path: Path, keyring: KeyRing
) -> None:
    repo = new_repo(tmp_path / "mesh", keyring, nodes=3)
    repo.apply()
    ca = repo.state_dir / "ca"
    (old_root,) = _certs(ca / "root.crt")
    old_bundle = _write(tmp_path / "old-root.pem", old_root)

    staged = repo.meshops("ca", "rotate", "--hold", f"{HOLD:g}s", identity=True)
    assert staged.returncode == 0, str(staged)
    assert "staged" in staged.stdout and (ca / "root.next.crt").exists()
    assert "PRIVATE KEY" not in staged.output
    # the staged key opens with the root identity, as every sealed file does
    opened = age_decrypt(ca / "root.next.key.age", repo.root_key.private_file)
    assert public_der_of_private_pem(opened.stdout) == public_der_of_cert(
        (ca / "root.next.crt").read_bytes()
    )
    refused = repo.meshops("ca", "rotate")
    assert refused.returncode == 1 and "already under way" in refused.stderr
    rotation = _status(repo)["rotation"]
    assert rotation["phase"] == "staged" and rotation["next"].endswith("(1/3)")

    # phase 1: both roots trusted; a node added now is signed by the new root
    repo.set_node("node-4", keyring.ssh_hosts[3], 4)
    repo.write_mesh()
    actions = repo.actions()
    assert actions["ca.root"] == ["update"]
    assert not any(a.startswith("ca.node") and a != 'ca.node["node-4"]' for a in actions)
    shown = repo.plan().stdout
    assert "rotation 1/3" in shown
    repo.apply()
    old, new = _certs(ca / "root.crt")
    assert old == old_root
    new_only = _write(tmp_path / "new-root.pem", new)
    assert not (ca / "root.next.crt").exists()
    for node in ("node-1", "node-2", "node-3"):
        assert _verify(tmp_path, ca / "root.crt", repo.state_dir / "nodes" / node / "ca.crt")
        assert _verify(tmp_path, old_bundle, repo.state_dir / "nodes" / node / "ca.crt")
    assert _verify(tmp_path, new_only, repo.state_dir / "nodes/node-4/ca.crt")
    crls = _crls(ca / "crl.pem")
    assert len(crls) == 2
    assert _crl_serials(tmp_path, crls[0], old) == set()
    assert _crl_serials(tmp_path, crls[1], new) == set()
    check_consistent(repo)  # converged while held; root.previous.key.age opens
    status = _status(repo)
    assert len(status["roots"]) == 2 and status["rotation"]["phase"] == "added"
    assert status["rotation"]["next"] == "re-issue node CAs under the new root (2/3)"

    # a node removed while both roots are trusted is revoked by the root that signed it
    gone = repo.state()["nodes"]["node-3"]["ca"]["serial"]
    repo.remove_node("node-3")
    repo.write_mesh()
    repo.apply()
    crls = _crls(ca / "crl.pem")
    assert _crl_serials(tmp_path, crls[0], old) == {gone.lstrip("0")}
    assert _crl_serials(tmp_path, crls[1], new) == set()

    # phase 2, once the hold is over: node CAs under the old root are re-issued
    old_node_ca = _write(
        tmp_path / "old-node-ca.pem", (repo.state_dir / "nodes/node-1/ca.crt").read_text()
    )
    _wait_out_hold(repo)
    actions = repo.actions()
    assert actions["ca.root"] == ["update"]
    assert actions['ca.node["node-1"]'] == actions['ca.node["node-2"]'] == ["delete", "create"]
    assert 'ca.node["node-4"]' not in actions
    assert "rotation 2/3" in repo.plan().stdout
    repo.apply()
    for node in ("node-1", "node-2", "node-4"):
        assert _verify(tmp_path, new_only, repo.state_dir / "nodes" / node / "ca.crt")

    # phase 3: the old root leaves the bundle, its key and its CRL go
    _wait_out_hold(repo)
    assert "rotation 3/3" in repo.plan().stdout
    repo.apply()
    assert _certs(ca / "root.crt") == [new]
    assert not (ca / "root.previous.key.age").exists()
    crls = _crls(ca / "crl.pem")
    assert len(crls) == 1 and _crl_serials(tmp_path, crls[0], new) == set()
    assert "rotation" not in repo.state()["ca"]
    status = _status(repo)
    assert status["rotation"] is None and len(status["roots"]) == 1
    check_consistent(repo)
    # a chain under the old root no longer verifies against the bundle hosts get
    assert _verify(tmp_path, old_bundle, old_node_ca)
    assert not _verify(tmp_path, ca / "root.crt", old_node_ca)


def test_a_new_root_key_type_rotates_on_its_own_and_holds_the_next_phase(
    tmp_path: Path, keyring: KeyRing
) -> None:
    repo = new_repo(tmp_path / "mesh", keyring, nodes=2)
    repo.apply()
    repo.data["ca"]["key_type"] = "ecdsa-p384"
    repo.write_mesh()
    shown = repo.plan().stdout
    assert "rotation 1/3: root key type changed: ecdsa-p256 -> ecdsa-p384" in shown
    repo.apply()
    _old, new = _certs(repo.state_dir / "ca" / "root.crt")
    text = openssl("x509", "-noout", "-text", "-in", str(_write(tmp_path / "n.pem", new))).stdout
    assert "384 bit" in text
    # the node CAs changed key type too, so they were issued under the new root now
    new_only = _write(tmp_path / "new.pem", new)
    for node in ("node-1", "node-2"):
        assert _verify(tmp_path, new_only, repo.state_dir / "nodes" / node / "ca.crt")
    # retiring waits for the default hold (1h): nothing more to do now
    assert repo.plan().returncode == 0


def _openssl_ca(directory: Path, name: str, curve: str = "P-256") -> tuple[Path, Path]:
    """A CA made the way an operator would outside meshops (stock openssl)."""
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{curve}",
         "-keyout", str(key), "-out", str(cert), "-nodes", "-days", "3650",
         "-subj", f"/O=Corp/CN={name}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_an_imported_ca_becomes_the_root_of_a_new_mesh(tmp_path: Path, keyring: KeyRing) -> None:
    cert, key = _openssl_ca(tmp_path, "Corp Root")
    repo = new_repo(tmp_path / "mesh", keyring, nodes=2)
    imported = repo.meshops("ca", "import", "--cert", str(cert), "--key", str(key))
    assert imported.returncode == 0, str(imported)
    secret_line = next(ln for ln in key.read_text().splitlines() if "-----" not in ln)
    assert secret_line not in imported.output
    assert "adopts the imported CA" in repo.plan().stdout
    # the imported key is sealed: without an identity apply stops before any change
    before = repo.snapshot()
    refused = repo.meshops("apply", "--auto-approve")
    assert refused.returncode == 1 and "needs the root CA key" in refused.stderr, str(refused)
    assert repo.snapshot() == before
    repo.apply()
    assert _certs(repo.state_dir / "ca" / "root.crt") == _certs(cert)
    for node in ("node-1", "node-2"):
        assert _verify(tmp_path, cert, repo.state_dir / "nodes" / node / "ca.crt")
    check_consistent(repo)
    assert not any(p.name.startswith("root.next") for p in (repo.state_dir / "ca").iterdir())


def test_importing_into_a_running_mesh_starts_a_rotation(tmp_path: Path, keyring: KeyRing) -> None:
    repo = new_repo(tmp_path / "mesh", keyring, nodes=2)
    repo.apply()
    cert, key = _openssl_ca(tmp_path, "Corp Root 2")
    imported = repo.meshops("ca", "import", "--cert", str(cert), "--key", str(key), identity=True)
    assert imported.returncode == 0, str(imported)
    assert "rotation 1/3 (imported CA Corp Root 2.crt)" in repo.plan().stdout
    repo.apply()
    assert _certs(repo.state_dir / "ca" / "root.crt")[1] == _certs(cert)[0]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong-key", "does not belong to its certificate"),
        ("key-type", "mesh.yaml says ca.key_type: ecdsa-p256"),
        ("not-a-ca", "not a readable PEM certificate"),
    ],
)
def test_ca_import_refuses_what_it_cannot_use(
    tmp_path: Path, keyring: KeyRing, case: str, message: str
) -> None:
    repo = new_repo(tmp_path / "mesh", keyring, nodes=1)
    cert, key = _openssl_ca(tmp_path, "Corp Root")
    if case == "wrong-key":
        _, key = _openssl_ca(tmp_path, "Other")
    elif case == "key-type":
        cert, key = _openssl_ca(tmp_path, "Big", curve="P-384")
    else:
        cert = _write(tmp_path / "junk.crt", "not a certificate\n")
    result = repo.meshops("ca", "import", "--cert", str(cert), "--key", str(key))
    assert result.returncode == 1, str(result)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (repo.state_dir / "ca" / "root.next.crt").exists()
