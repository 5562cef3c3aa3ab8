"""Symlinks and `..` under --root (issue 8): meshops never writes outside the root.

The rule (`meshops.providers.files.inside_root`): a path meshops manages must, with
every symlink on the way resolved, land inside --root. A symlink leading out is refused
by plan and apply alike, with an error naming it; nothing is written anywhere; removing
the symlink lets the next apply converge. Symlinks that stay inside the root are
followed. With the root `/` nothing is checked (unit-tested).
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from mesh_fixtures import BedMesh, clean_failure, leftover_files, one_host_mesh, tree_digests
from test_repo_support import KeyRing, keyring
from testbed import unavailable_reason

pytestmark = [pytest.mark.e2e, pytest.mark.netns]
__all__ = ["keyring"]

NODE = "node-1"
IDENTITIES = {"api": {"nodes": [NODE]}, "web": {"nodes": [NODE]}}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, keyring: KeyRing) -> Iterator[BedMesh]:
    """One converged host shared by the module; every test leaves it converged."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    tmp_path = tmp_path_factory.mktemp("hostile")
    with one_host_mesh(tmp_path, keyring, peers=2, identities=copy.deepcopy(IDENTITIES)) as built:
        built.apply_repo("initial state")
        built.apply(NODE)
        yield built


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside --root holding something to protect."""
    where = tmp_path / "outside"
    where.mkdir()
    (where / "hosts").write_text("127.0.0.1 localhost\n")
    (where / "key.pem").write_text("not yours\n")
    return where


def _replace_with_symlink(path: Path, target: Path | str) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.symlink_to(target)


def _refused(mesh: BedMesh, link: Path) -> None:
    """plan and apply both refuse, naming the symlink; the first line says it all."""
    for args in (("plan",), ("apply", "--auto-approve")):
        result = mesh.meshops(NODE, *args, check=False, timeout=60)
        first = clean_failure(result)
        assert first.startswith(f"{link} is a symlink to "), first
        assert "leads outside --root" in first, first


@pytest.mark.parametrize(
    "where",
    ["etc/meshops/tls/api", "etc/meshops", "etc/hosts", "var/lib/meshops", "var"],
)
def test_symlink_leading_outside_the_root_is_refused_and_nothing_is_written(
    mesh: BedMesh, outside: Path, where: str
) -> None:
    root = mesh.roots[NODE]
    link = root / where
    target = outside / "hosts" if where == "etc/hosts" else outside
    saved = root.parent / f"saved-{where.replace('/', '-')}"
    shutil.move(link, saved)  # keep what was there, to put back afterwards
    link.symlink_to(target)
    # work for an apply that went ahead: a new leaf, a new peer endpoint
    api = mesh.repo.data["identities"]["api"]
    api["dns"] = ["api-2.example.test" if api.get("dns") == ["api.example.test"] else
                  "api.example.test"]  # fmt: skip
    moved = (
        "198.51.100.89:51820" if _endpoint(mesh) == "198.51.100.88:51820" else "198.51.100.88:51820"
    )
    mesh.repo.data["nodes"]["node-2"]["endpoint"] = moved
    mesh.repo.write_mesh()
    before_out, before_root = tree_digests(outside), tree_digests(root)

    _refused(mesh, link)
    assert tree_digests(outside) == before_out
    assert tree_digests(root) == before_root
    assert _endpoint(mesh) != moved

    link.unlink()
    shutil.move(saved, link)
    mesh.apply(NODE)
    assert mesh.plan(NODE).returncode == 0
    assert tree_digests(outside) == before_out
    assert leftover_files(root) == []


def test_dot_dot_in_a_proxy_config_path_cannot_leave_the_root(mesh: BedMesh, outside: Path) -> None:
    escape = "/etc/../../outside/evil.conf"
    mesh.repo.data["identities"]["api"]["proxy"] = {
        "kind": "caddy", "listen": 8443, "upstream": "127.0.0.1:8080", "config": escape,
    }  # fmt: skip
    mesh.repo.write_mesh()
    before = tree_digests(outside)
    result = mesh.meshops(NODE, "apply", "--auto-approve", check=False, timeout=60)
    first = clean_failure(result)
    # refused when mesh.yaml is read: a path in mesh.yaml has no `..` segments at all
    assert "without '.' or '..' segments" in first and "evil.conf" in first, first
    assert tree_digests(outside) == before
    assert not (outside / "evil.conf").exists()
    del mesh.repo.data["identities"]["api"]["proxy"]
    mesh.repo.write_mesh()
    mesh.apply(NODE)


def test_symlinks_that_stay_inside_the_root_are_followed(mesh: BedMesh) -> None:
    root = mesh.roots[NODE]
    (root / "srv/tls-web").mkdir(parents=True)
    for name in ("cert.pem", "key.pem", "ca.pem", "crl.pem"):
        shutil.copy2(root / "etc/meshops/tls/web" / name, root / "srv/tls-web" / name)
    _replace_with_symlink(root / "etc/meshops/tls/web", "../../../srv/tls-web")
    mesh.repo.data["identities"]["web"]["dns"] = ["web.example.test"]
    mesh.repo.write_mesh()

    mesh.apply(NODE)
    assert (root / "etc/meshops/tls/web").is_symlink()
    assert b"web.example.test" in _san_text(root / "srv/tls-web/cert.pem")
    assert mesh.plan(NODE).returncode == 0
    assert leftover_files(root) == []
    (root / "etc/meshops/tls/web").unlink()
    shutil.move(root / "srv/tls-web", root / "etc/meshops/tls/web")
    assert mesh.plan(NODE).returncode == 0


def _endpoint(mesh: BedMesh) -> str:
    return mesh.wg_table(NODE, "endpoints")[mesh.public_key("node-2")]


def _san_text(cert_pem: Path) -> bytes:
    from cryptography import x509

    cert = x509.load_pem_x509_certificates(cert_pem.read_bytes())[0]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return " ".join(san.get_values_for_type(x509.DNSName)).encode()
