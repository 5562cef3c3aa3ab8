"""`outputs: {p12: true}` read by the tools that consume it (issue 15): Java's keytool
and `KeyStore.load` (a tiny program compiled here with javac), and `openssl pkcs12`.

The host applies are certificates-only and unprivileged (no capability at all), so
this needs neither root nor WireGuard.
"""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_repo_support import KeyRing, MeshRepo, keyring, new_repo, openssl
from unprivileged import host_meshops

pytestmark = pytest.mark.e2e
__all__ = ["keyring"]

NODE = "node-1"
JAVA_SOURCE = Path(__file__).with_name("java") / "LoadKeyStore.java"
PASSWORD_FILE = "/etc/meshops/p12.pass"


@pytest.fixture(scope="module")
def java_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LoadKeyStore.class, compiled by javac (Debian default-jdk-headless)."""
    out = tmp_path_factory.mktemp("java")
    done = subprocess.run(["javac", "-d", str(out), str(JAVA_SOURCE)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def java_entries(classes: Path, store: Path, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["java", "-cp", str(classes), "LoadKeyStore", str(store), password],
                          capture_output=True, text=True, check=False, timeout=60)  # fmt: skip


def keytool_list(store: Path, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["keytool", "-list", "-keystore", str(store), "-storetype", "PKCS12",
                           "-storepass", password], capture_output=True, text=True,
                          check=False, timeout=60)  # fmt: skip


@pytest.fixture
def host(tmp_path: Path, keyring: KeyRing) -> Iterator[tuple[MeshRepo, Path]]:
    """A certificates-only mesh whose node-1 runs `api` (Java default password) and
    `billing` (password from a file on the host), applied at repo scope."""
    identities = {
        "api": {"nodes": [NODE], "outputs": {"p12": True, "combined_pem": True}},
        "billing": {"nodes": [NODE], "key_type": "rsa-3072",
                    "outputs": {"p12": True, "p12_password_file": PASSWORD_FILE,
                                "dir": "/srv/billing/tls"}},
    }  # fmt: skip
    repo = new_repo(tmp_path / "mesh", keyring, nodes=1, wireguard={"enabled": False},
                    identities=identities)  # fmt: skip
    repo.apply()
    repo.commit("initial state")
    root = tmp_path / "root"
    (root / "etc/meshops").mkdir(parents=True)
    (root / PASSWORD_FILE.lstrip("/")).write_text("s3cret billing\n")
    (root / PASSWORD_FILE.lstrip("/")).chmod(0o600)
    yield repo, root


def test_a_fresh_host_plans_its_outputs_as_new_files(host: tuple[MeshRepo, Path]) -> None:
    repo, root = host
    plan = host_meshops(repo, NODE, root, "plan")
    assert plan.returncode == 0, str(plan)
    assert '  + tls.outputs["api"]: new output files  (sensitive)' in plan.stdout
    assert "~ tls.outputs" not in plan.stdout


def test_java_reads_the_keystore_and_truststore_with_the_default_password(
    host: tuple[MeshRepo, Path], java_program: Path
) -> None:
    repo, root = host
    applied = host_meshops(repo, NODE, root, "apply", "--auto-approve")
    assert applied.returncode == 0, str(applied)
    tls = root / "etc/meshops/tls/api"
    listed = keytool_list(tls / "bundle.p12", "changeit")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "Your keystore contains 1 entry" in listed.stdout
    assert "api, " in listed.stdout and "PrivateKeyEntry" in listed.stdout

    loaded = java_entries(java_program, tls / "bundle.p12", "changeit")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.splitlines() == ["key api EC chain 2 CN=api"]
    trusted = java_entries(java_program, tls / "truststore.p12", "changeit")
    assert trusted.returncode == 0, trusted.stderr
    (line,) = trusted.stdout.splitlines()
    assert line.startswith("trusted root-1 CN=") and "root CA" in line
    assert "trustedCertEntry" in keytool_list(tls / "truststore.p12", "changeit").stdout

    assert stat.S_IMODE((tls / "bundle.p12").stat().st_mode) == 0o600
    assert stat.S_IMODE((tls / "truststore.p12").stat().st_mode) == 0o644
    assert stat.S_IMODE((tls / "combined.pem").stat().st_mode) == 0o600


def test_openssl_still_reads_the_keystore_and_finds_the_key_of_cert_pem(
    host: tuple[MeshRepo, Path],
) -> None:
    repo, root = host
    assert host_meshops(repo, NODE, root, "apply", "--auto-approve").returncode == 0
    tls = root / "etc/meshops/tls/api"
    opened = openssl("pkcs12", "-in", str(tls / "bundle.p12"), "-passin", "pass:changeit",
                     "-nodes")  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.count("BEGIN CERTIFICATE") == 2
    key = tls / "from-p12.key"
    key.write_text(opened.stdout[opened.stdout.index("-----BEGIN PRIVATE KEY") :])
    ours = openssl("pkey", "-in", str(tls / "key.pem"), "-pubout").stdout
    theirs = openssl("pkey", "-in", str(key), "-pubout").stdout
    assert ours and ours == theirs
    assert openssl("pkcs12", "-in", str(tls / "bundle.p12"), "-passin", "pass:wrong",
                   "-nokeys").returncode != 0  # fmt: skip


def test_a_password_file_sets_the_password_and_a_new_one_rewrites_the_stores(
    host: tuple[MeshRepo, Path], java_program: Path
) -> None:
    repo, root = host
    assert host_meshops(repo, NODE, root, "apply", "--auto-approve").returncode == 0
    tls = root / "srv/billing/tls"
    loaded = java_entries(java_program, tls / "bundle.p12", "s3cret billing")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.splitlines() == ["key billing RSA chain 2 CN=billing"]
    assert java_entries(java_program, tls / "bundle.p12", "changeit").returncode != 0
    assert {p.name for p in tls.iterdir()} >= {"bundle.p12", "truststore.p12", "cert.pem",
                                               "key.pem", "ca.pem"}  # fmt: skip

    (root / PASSWORD_FILE.lstrip("/")).write_text("rotated\n")
    plan = host_meshops(repo, NODE, root, "plan", "--detailed-exitcode")
    assert plan.returncode == 2, str(plan)
    assert f'~ tls.outputs["billing"]: {tls / "bundle.p12"} out of date' in plan.stdout
    assert "rotated" not in plan.output and "s3cret" not in plan.output
    assert host_meshops(repo, NODE, root, "apply", "--auto-approve").returncode == 0
    for store in ("bundle.p12", "truststore.p12"):
        assert java_entries(java_program, tls / store, "rotated").returncode == 0
    assert host_meshops(repo, NODE, root, "plan", "--detailed-exitcode").returncode == 0


def test_a_missing_password_file_is_named_with_what_to_do(host: tuple[MeshRepo, Path]) -> None:
    repo, root = host
    (root / PASSWORD_FILE.lstrip("/")).unlink()
    failed = host_meshops(repo, NODE, root, "apply", "--auto-approve")
    assert failed.returncode == 1 and "Traceback" not in failed.output, str(failed)
    assert (
        f"identities.billing.outputs.p12_password_file: cannot read {root}{PASSWORD_FILE}: "
        "No such file or directory"
    ) in failed.stderr
    assert "holding the PKCS#12 password" in failed.stderr
