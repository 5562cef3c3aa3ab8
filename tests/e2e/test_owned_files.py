"""meshops owns only the files it writes (issue 14): pointed at a directory it did not
create (`outputs.dir: /etc/ssl`, a `proxy.config` next to other configs, a TLS dir an
admin set up), it writes and removes its own files one by one, and leaves every other
entry, and the directory's owner, mode and inode, exactly as they were: after an
apply, a renewal, outputs switched off, and the identity's removal."""

from __future__ import annotations

import copy
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mesh_fixtures import BedMesh, clean_failure, leftover_files, one_host_mesh
from test_repo_support import KeyRing, keyring
from testbed import unavailable_reason

pytestmark = [pytest.mark.e2e, pytest.mark.netns]
__all__ = ["keyring"]

NODE = "node-1"
IDENTITIES = {"api": {"nodes": [NODE]}, "web": {"nodes": [NODE]}}
OURS = {"cert.pem", "key.pem", "ca.pem", "combined.pem", "bundle.p12", "truststore.p12"}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, keyring: KeyRing) -> Iterator[BedMesh]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    tmp_path = tmp_path_factory.mktemp("owned")
    with one_host_mesh(tmp_path, keyring, peers=1, identities=copy.deepcopy(IDENTITIES)) as built:
        built.apply_repo("initial state")
        built.apply(NODE)
        yield built


def populate(directory: Path) -> None:
    """What an admin's directory holds: subdirectories, symlinks (to a file, to a
    directory, dangling), a FIFO, files with their own owners and modes."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "certs").mkdir()
    (directory / "certs" / "local-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (directory / "openssl.cnf").write_text("[ req ]\n")
    (directory / "private").mkdir(mode=0o710)
    (directory / "private" / "host.key").write_text("secret of someone else\n")
    os.chmod(directory / "private" / "host.key", 0o640)
    (directory / "ca-bundle.crt").symlink_to("certs/local-ca.pem")
    (directory / "certs-link").symlink_to("certs")
    (directory / "dangling").symlink_to("nowhere")
    os.mkfifo(directory / "fifo")
    for path in (directory, directory / "openssl.cnf", directory / "private"):
        os.chown(path, 1234, 5678, follow_symlinks=False)
    os.chown(directory / "private" / "host.key", 0, 5678)
    os.chmod(directory, 0o751)


def snapshot(directory: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry but meshops' own files: type, mode, owner, inode, content."""
    out: dict[str, tuple[Any, ...]] = {}
    for parent, dirs, files in os.walk(directory, followlinks=False):
        for name in ["", *dirs, *files]:
            path = Path(parent) / name
            rel = str(path.relative_to(directory))
            if rel in OURS:
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                content: str = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = ""
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                        st.st_gid, st.st_ino, content)  # fmt: skip
    return out


def ours(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.name in OURS}


def test_outputs_in_a_directory_meshops_did_not_create_touch_nothing_else(
    mesh: BedMesh,
) -> None:
    ssl = mesh.host_path(NODE, "/etc/ssl")
    populate(ssl)
    before = snapshot(ssl)
    api = mesh.repo.data["identities"]["api"]

    api["outputs"] = {"dir": "/etc/ssl", "p12": True, "combined_pem": True}
    mesh.repo.write_mesh()
    mesh.apply(NODE)
    assert snapshot(ssl) == before
    assert ours(ssl) == OURS
    assert stat.S_IMODE((ssl / "key.pem").stat().st_mode) == 0o600
    assert (ssl / "cert.pem").read_bytes() == (mesh.tls_dir(NODE, "api") / "cert.pem").read_bytes()
    assert mesh.plan(NODE).returncode == 0

    api["dns"] = ["api.example.test"]  # a new leaf: every output is rewritten
    mesh.repo.write_mesh()
    mesh.apply(NODE)
    assert snapshot(ssl) == before
    assert b"api.example.test" in _sans(ssl / "cert.pem")

    del api["outputs"]  # switched off: meshops' files go, nothing else does
    mesh.repo.write_mesh()
    result = mesh.apply(NODE)
    assert "files.stale" in result.stdout
    assert snapshot(ssl) == before
    assert ours(ssl) == set()

    api["outputs"] = {"dir": "/etc/ssl", "combined_pem": True}
    mesh.repo.write_mesh()
    mesh.apply(NODE)
    assert ours(ssl) == {"cert.pem", "key.pem", "ca.pem", "combined.pem"}
    removed = mesh.repo.data["identities"].pop("api")  # the identity leaves the node
    mesh.repo.write_mesh()
    mesh.apply(NODE)
    assert snapshot(ssl) == before
    assert ours(ssl) == set()
    assert not mesh.tls_dir(NODE, "api").exists()  # meshops created that one: gone
    assert leftover_files(mesh.roots[NODE]) == []
    mesh.repo.data["identities"]["api"] = {k: v for k, v in removed.items() if k != "outputs"}
    mesh.repo.write_mesh()
    mesh.apply(NODE)


def test_a_file_meshops_did_not_write_is_never_replaced(mesh: BedMesh) -> None:
    shared = mesh.host_path(NODE, "/srv/shared")
    populate(shared)
    (shared / "cert.pem").write_text("an admin's own certificate\n")
    os.chown(shared / "cert.pem", 1234, 5678)
    nginx = mesh.host_path(NODE, "/etc/nginx/nginx.conf")
    nginx.parent.mkdir(parents=True, exist_ok=True)
    nginx.write_text("events {}\n")
    before, conf = snapshot(shared), nginx.read_bytes()

    web, api = mesh.repo.data["identities"]["web"], mesh.repo.data["identities"]["api"]
    web["outputs"] = {"dir": "/srv/shared"}
    api["proxy"] = {"kind": "nginx", "listen": 7443, "upstream": "127.0.0.1:8080",
                    "config": "/etc/nginx/nginx.conf"}  # fmt: skip
    mesh.repo.write_mesh()
    planned = mesh.meshops(NODE, "plan", check=False).stdout  # said before apply tries it
    for path in (shared / "cert.pem", nginx):
        assert (
            f"Note: apply will stop at this: {path} already exists and meshops did not "
            "write it" in planned
        ), planned
    result = mesh.meshops(NODE, "apply", "--auto-approve", check=False)
    first = clean_failure(result)
    assert "did not write it; refusing to replace it" in result.stderr, first
    assert str(shared / "cert.pem") in result.stderr
    assert str(nginx) in result.stderr
    assert nginx.read_bytes() == conf
    assert (shared / "cert.pem").read_text() == "an admin's own certificate\n"
    assert (shared / "cert.pem").stat().st_uid == 1234
    assert snapshot(shared) == before

    del web["outputs"], api["proxy"]
    mesh.repo.write_mesh()
    mesh.apply(NODE)
    assert (shared / "cert.pem").read_text() == "an admin's own certificate\n"
    assert nginx.read_bytes() == conf
    assert mesh.plan(NODE).returncode == 0


def test_a_tls_directory_set_up_by_an_admin_keeps_its_owner_and_extra_entries(
    mesh: BedMesh,
) -> None:
    tls = mesh.tls_dir(NODE, "web")
    (tls / "extra").mkdir()
    (tls / "extra" / "note.txt").write_text("kept\n")
    (tls / "fullchain.pem").symlink_to("cert.pem")
    os.chown(tls, 0, 5678)
    os.chmod(tls, 0o750)
    before = snapshot(tls)
    old_cert = (tls / "cert.pem").read_bytes()

    mesh.repo.data["identities"]["web"]["dns"] = ["web.example.test"]
    mesh.repo.write_mesh()
    mesh.apply(NODE)
    assert (tls / "cert.pem").read_bytes() != old_cert
    assert snapshot(tls) == before  # same inode, owner, mode; the extras untouched
    assert mesh.plan(NODE).returncode == 0


def _sans(cert_pem: Path) -> bytes:
    from cryptography import x509

    cert = x509.load_pem_x509_certificates(cert_pem.read_bytes())[0]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return " ".join(san.get_values_for_type(x509.DNSName)).encode()
