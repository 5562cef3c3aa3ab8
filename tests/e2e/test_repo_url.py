"""host.yaml `repo:` as a git URL: meshops clones the mesh repository into
/var/lib/meshops/repo on first use and applies from it; `apply --pull` moves it.
Certificates-only nodes, so the host runs unprivileged outside any namespace.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml
from test_certificates_only import repo
from test_repo_support import MESHOPS, MeshRepo, Result, keyring
from unprivileged import NO_CAPABILITIES

__all__ = ["keyring", "repo"]


def host(root: Path, *args: str) -> Result:
    """`meshops --root ROOT <args>`, every default from host.yaml, no capability."""
    argv = [MESHOPS, "--no-color", "--root", str(root), *args]
    wrapped = [*NO_CAPABILITIES, *argv] if os.geteuid() == 0 else argv
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHOPS_")}
    proc = subprocess.run(wrapped, capture_output=True, text=True, env=env, timeout=120)
    return Result(argv, proc.returncode, proc.stdout, proc.stderr)


def write_host_yaml(root: Path, repo: MeshRepo, url: str) -> None:
    config = root / "etc/meshops/host.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    identity = str(repo.host_keys["node-1"].private_file)
    config.write_text(yaml.safe_dump({"node": "node-1", "repo": url, "identity": identity}))


def test_a_repository_url_is_cloned_on_first_use_and_pulled_after(
    repo: MeshRepo, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    url = f"file://{repo.path}"
    write_host_yaml(root, repo, url)
    # host.yaml's identity is outside --root here: name it as the host sees it
    applied = host(root, "--identity", str(repo.host_keys["node-1"].private_file),
                   "apply", "--auto-approve")  # fmt: skip
    assert applied.returncode == 0, str(applied)
    clone = root / "var/lib/meshops/repo"
    assert (clone / "mesh.yaml").read_bytes() == (repo.path / "mesh.yaml").read_bytes()
    assert (root / "etc/meshops/tls/api/cert.pem").is_file()
    assert [p.name for p in clone.parent.iterdir() if p.name.startswith(".repo-clone")] == []

    repo.data["identities"]["api"]["dns"] = ["api.example.test"]
    repo.write_mesh()
    repo.apply()
    repo.commit("api gets a name")
    pulled = host(root, "--identity", str(repo.host_keys["node-1"].private_file),
                  "apply", "--pull", "--auto-approve")  # fmt: skip
    assert pulled.returncode == 0, str(pulled)
    sans = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                           str(root / "etc/meshops/tls/api/cert.pem")],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "DNS:api.example.test" in sans, sans


def test_a_clone_of_another_url_or_an_unreachable_one_is_a_clear_error(
    repo: MeshRepo, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    write_host_yaml(root, repo, f"file://{tmp_path}/nowhere")
    failed = host(root, "plan")
    assert failed.returncode == 1, str(failed)
    assert f"cannot clone file://{tmp_path}/nowhere" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    lib = root / "var/lib/meshops"
    assert not (lib / "repo").exists() and list(lib.iterdir()) == []  # nothing half made

    write_host_yaml(root, repo, f"file://{repo.path}")
    assert host(root, "plan").returncode == 0
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(repo.path), str(other)], check=True)
    write_host_yaml(root, repo, f"file://{other}")
    refused = host(root, "plan")
    assert refused.returncode == 1, str(refused)
    assert f"is a clone of file://{repo.path}, but host.yaml names file://{other}" in (
        refused.stderr
    ), refused.stderr
