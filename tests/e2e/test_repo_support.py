"""Helpers for the repo-scope end-to-end tests (no tests here).

`MeshRepo` is a fresh git repository holding a mesh.yaml whose recipients are real keys
made for the test session: the operator's age identity (ca.recipients) and one SSH
ed25519 host key (or age identity) per node. Private halves live in a temporary
directory outside the mesh repository. Every `meshops` run goes through
`MeshRepo.meshops`, which records the output so `assert_no_secret_leaked` can scan all
of it, together with plan files and the committed state, for private material.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from factories import endpoint, make_mesh, to_yaml

MESHOPS = os.environ.get("MESHOPS_BIN", "meshops")
pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class HostKey:
    """A node's (or operator's) key pair: the recipient line and the private key file."""

    recipient: str
    private_file: Path


def make_ssh_key(directory: Path, name: str) -> HostKey:
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    public = path.with_suffix(".pub").read_text().split()
    return HostKey(f"{public[0]} {public[1]}", path)


def make_age_key(directory: Path, name: str) -> HostKey:
    import pyrage

    ident = pyrage.x25519.Identity.generate()
    path = directory / name
    path.write_text(f"# {name}\n{ident}\n")
    path.chmod(0o600)
    return HostKey(str(ident.to_public()), path)


@dataclass
class KeyRing:
    """Session keys: operators (age) and hosts (SSH ed25519 and age)."""

    directory: Path
    operators: list[HostKey] = field(default_factory=list)
    ssh_hosts: list[HostKey] = field(default_factory=list)
    age_hosts: list[HostKey] = field(default_factory=list)

    @classmethod
    def make(cls, directory: Path, *, hosts: int = 8) -> KeyRing:
        ring = cls(directory)
        ring.operators = [make_age_key(directory, f"operator-{i}") for i in range(2)]
        ring.ssh_hosts = [make_ssh_key(directory, f"host-ssh-{i}") for i in range(hosts)]
        ring.age_hosts = [make_age_key(directory, f"host-age-{i}") for i in range(hosts)]
        return ring

    def private_texts(self) -> list[str]:
        """The age secret keys of the ring, for leak scans (SSH private keys are caught
        by their PEM marker: their base64 lines also embed the public key)."""
        out = []
        for key in [*self.operators, *self.age_hosts]:
            text = key.private_file.read_text()
            out += [line for line in text.splitlines() if line.startswith("AGE-SECRET-KEY-")]
        return out


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"$ {' '.join(self.argv)} -> {self.returncode}\n{self.stdout}{self.stderr}"


class MeshRepo:
    """A mesh repository in a temp dir, driven through the installed CLI."""

    def __init__(self, path: Path, keys: KeyRing, data: dict[str, Any]):
        self.path = path
        self.keys = keys
        self.data = data
        self.host_keys: dict[str, HostKey] = {}
        self.root_key = keys.operators[0]  # the identity ca.recipients names
        self.outputs: list[str] = []
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", str(path)], check=True)
        self.write_mesh()

    # -- mesh.yaml -------------------------------------------------------------------

    def write_mesh(self) -> None:
        (self.path / "mesh.yaml").write_text(to_yaml(self.data))

    def set_node(self, name: str, key: HostKey, index: int) -> None:
        self.data["nodes"][name] = {"endpoint": endpoint(index), "recipient": key.recipient}
        self.host_keys[name] = key

    def remove_node(self, name: str) -> None:
        del self.data["nodes"][name]

    # -- running meshops -------------------------------------------------------------

    @property
    def operator(self) -> HostKey:
        return self.keys.operators[0]

    def meshops(
        self, *args: str, identity: bool | list[Path] = False, timeout: float = 120
    ) -> Result:
        argv = [MESHOPS, "--no-color", "-C", str(self.path)]
        files = (
            [k.private_file for k in self.keys.operators] if identity is True else identity or []
        )
        for f in files:
            argv += ["--identity", str(f)]
        argv += list(args)
        env = {**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"}
        env.pop("MESHOPS_IDENTITY", None)
        env.pop("MESHOPS_NODE", None)
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
        result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
        self.outputs.append(result.output)
        return result

    def plan(self, *args: str) -> Result:
        return self.meshops("plan", "--detailed-exitcode", *args)

    def apply(self, *args: str) -> Result:
        result = self.meshops("apply", "--auto-approve", *args, identity=True)
        assert result.returncode == 0, str(result)
        return result

    def plan_json(self) -> dict[str, Any]:
        result = self.meshops("plan", "--format", "json")
        assert result.returncode == 0, str(result)
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def actions(self) -> dict[str, list[str]]:
        """address -> terraform actions, for every actionable change of a fresh plan."""
        return {
            rc["address"]: rc["change"]["actions"]
            for rc in self.plan_json()["resource_changes"]
            if rc["change"]["actions"] != ["no-op"]
        }

    # -- state -----------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.path / "state"

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load((self.state_dir / "state.yaml").read_text())
        return data

    def snapshot(self) -> dict[str, bytes]:
        """Every file under state/ (path -> bytes), to prove nothing changed."""
        if not self.state_dir.exists():
            return {}
        return {
            str(p.relative_to(self.path)): p.read_bytes()
            for p in sorted(self.state_dir.rglob("*"))
            if p.is_file()
        }

    def commit(self, message: str = "state") -> None:
        subprocess.run(["git", "-C", str(self.path), "add", "-A"], check=True)
        who = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run(
            ["git", "-C", str(self.path), *who, "commit", "-q", "--allow-empty", "-m", message],
            check=True,
        )


@pytest.fixture(scope="session")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return KeyRing.make(tmp_path_factory.mktemp("keys"))


def new_repo(
    path: Path, keys: KeyRing, *, nodes: int = 3, host_kind: str = "ssh", **sections: Any
) -> MeshRepo:
    """A fresh mesh repository: node-1..node-N sealed to fresh host keys."""
    data = make_mesh(nodes=0, **sections)
    data["ca"]["recipients"] = [keys.operators[0].recipient]
    data["nodes"] = {}
    repo = MeshRepo(path, keys, data)
    pool = keys.ssh_hosts if host_kind == "ssh" else keys.age_hosts
    for i in range(1, nodes + 1):
        repo.set_node(f"node-{i}", pool[(i - 1) % len(pool)], i)
    repo.write_mesh()
    return repo


# -- stock tools -----------------------------------------------------------------------


def age_decrypt(path: Path, identity: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["age", "-d", "-i", str(identity), str(path)], capture_output=True)


def openssl(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *args], capture_output=True, text=True, input=None if input is None else input
    )


def wg_pubkey(private_b64: str) -> str:
    proc = subprocess.run(
        ["wg", "pubkey"], input=private_b64.strip() + "\n", capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def public_der_of_private_pem(pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_der_of_cert(pem: bytes, index: int = 0) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificates(pem)[index]
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- whole-repository checks -------------------------------------------------------------


@dataclass
class Unsealed:
    """Plaintext secrets opened by a consistency check, to scan outputs for them."""

    texts: list[str] = field(default_factory=list)


def check_consistent(repo: MeshRepo, unsealed: Unsealed | None = None) -> None:
    """The repository is converged and every sealed file matches its public half.

    - `plan --detailed-exitcode` exits 0;
    - the root key opens with the operator identity (stock age) and matches the signing
      root in root.crt (and during a rotation, root.previous.key.age the old one);
    - per node: ca.key.age opens with the host key and matches ca.crt, which chains to
      the root; crl.pem is signed by that node CA; wg.key.age opens and its public key
      equals state.yaml's; another node's host key does not open them;
    - nothing but what the contract lists lives under state/ (no leftover temp files).
    """
    result = repo.plan()
    assert result.returncode == 0, str(result)
    state = repo.state()
    ca_dir = repo.state_dir / "ca"
    roots = (ca_dir / "root.crt").read_bytes()
    expected = {"state/state.yaml", "state/ca/root.crt", "state/ca/root.key.age"}
    expected.add("state/ca/crl.pem")
    # the signing root (last in root.crt); during a rotation also the old one (first)
    keys = [("root.key.age", -1)]
    if (state.get("ca") or {}).get("rotation"):
        keys.append(("root.previous.key.age", 0))
        expected.add("state/ca/root.previous.key.age")
    for name, index in keys:
        root_pem = age_decrypt(ca_dir / name, repo.root_key.private_file)
        assert root_pem.returncode == 0, root_pem.stderr
        assert public_der_of_private_pem(root_pem.stdout) == public_der_of_cert(roots, index), (
            f"{name} does not hold the key of root #{index} in root.crt"
        )
        if unsealed is not None:
            unsealed.texts.append(_pem_body(root_pem.stdout))
    nodes = sorted(repo.data["nodes"])
    for name in nodes:
        node_dir = repo.state_dir / "nodes" / name
        host = repo.host_keys[name]
        key = age_decrypt(node_dir / "ca.key.age", host.private_file)
        assert key.returncode == 0, f"{name}: {key.stderr!r}"
        cert = (node_dir / "ca.crt").read_bytes()
        assert public_der_of_private_pem(key.stdout) == public_der_of_cert(cert), (
            f"{name}: ca.key.age does not hold the key of ca.crt"
        )
        chain = openssl("verify", "-CAfile", str(ca_dir / "root.crt"), str(node_dir / "ca.crt"))
        assert chain.returncode == 0, f"{name}: {chain.stdout}{chain.stderr}"
        crl = openssl("crl", "-noout", "-CAfile", str(node_dir / "ca.crt"),
                      "-in", str(node_dir / "crl.pem"))  # fmt: skip
        assert crl.returncode == 0, f"{name}: node CA's CRL: {crl.stderr}"
        wg = age_decrypt(node_dir / "wg.key.age", host.private_file)
        assert wg.returncode == 0, f"{name}: {wg.stderr!r}"
        assert len(base64.b64decode(wg.stdout.strip())) == 32
        assert wg_pubkey(wg.stdout.decode()) == state["nodes"][name]["wireguard"]["public_key"]
        if unsealed is not None:
            unsealed.texts += [_pem_body(key.stdout), wg.stdout.decode().strip()]
        node_files = ("ca.crt", "ca.key.age", "crl.pem", "wg.key.age")
        expected |= {f"state/nodes/{name}/{f}" for f in node_files}
    expected |= {"state/manifest.yaml", "state/manifest.sig"}
    if (ca_dir / "transitions.yaml").exists():  # a root rotation happened
        expected.add("state/ca/transitions.yaml")
    present = {str(p.relative_to(repo.path)) for p in repo.state_dir.rglob("*") if p.is_file()}
    assert present == expected, f"unexpected files: {sorted(present ^ expected)}"
    assert sorted(state["nodes"]) == nodes
    check_manifest(repo)


def check_manifest(repo: MeshRepo) -> dict[str, str]:
    """state/manifest.sig verifies with stock `openssl dgst` against the signing root's
    public key, and the manifest lists every other state/ file with its sha256 and size
    (checked with hashlib). Returns the manifest's header fields."""
    import hashlib
    import tempfile

    manifest = (repo.state_dir / "manifest.yaml").read_text()
    sig = dict(
        line.split(": ", 1)
        for line in (repo.state_dir / "manifest.sig").read_text().splitlines()
        if line and not line.startswith("#")
    )
    head = dict(
        line.split(": ", 1)
        for line in manifest.split("files:")[0].splitlines()
        if line and not line.startswith("#")
    )
    signer = sig["signer"].strip('"')
    assert head["signer"].strip('"') == signer
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    roots = x509.load_pem_x509_certificates((repo.state_dir / "ca/root.crt").read_bytes())
    by_fp = {"sha256:" + c.fingerprint(hashes.SHA256()).hex(): c for c in roots}
    assert signer in by_fp, f"manifest signed by {signer}, not a root in root.crt"
    with tempfile.TemporaryDirectory() as tmp:
        pub = Path(tmp) / "root.pub"
        pub.write_bytes(
            by_fp[signer]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        der = Path(tmp) / "sig.der"
        der.write_bytes(base64.b64decode(sig["signature"]))
        digest = {"ecdsa-p384-sha384": ["-sha384"], "ed25519": []}.get(
            sig["algorithm"], ["-sha256"]
        )
        if sig["algorithm"] == "ed25519":
            argv = [
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                str(pub),
                "-rawin",
                "-in",
                str(repo.state_dir / "manifest.yaml"),
                "-sigfile",
                str(der),
            ]
        else:
            argv = [
                "dgst",
                *digest,
                "-verify",
                str(pub),
                "-signature",
                str(der),
                str(repo.state_dir / "manifest.yaml"),
            ]
        checked = openssl(*argv)
        assert checked.returncode == 0, f"manifest signature: {checked.stdout}{checked.stderr}"
    listed = {}
    for line in manifest.split("files:\n", 1)[1].splitlines():
        path, _, rest = line.strip().partition(": ")
        listed[path] = tuple(rest.split())
    actual = {}
    for path in repo.state_dir.rglob("*"):
        rel = str(path.relative_to(repo.state_dir))
        if path.is_file() and rel not in ("manifest.yaml", "manifest.sig"):
            data = path.read_bytes()
            actual[rel] = (hashlib.sha256(data).hexdigest(), str(len(data)))
    assert listed == actual, f"manifest differs: {sorted(set(listed) ^ set(actual))}"
    return head


def _pem_body(pem: bytes) -> str:
    """The longest base64 line of a PEM: a needle that identifies this key."""
    lines = [line for line in pem.decode().splitlines() if "-----" not in line]
    return max(lines, key=len)


SECRET_MARKERS = re.compile(r"PRIVATE KEY-----|AGE-SECRET-KEY-1|OPENSSH PRIVATE")


def assert_no_secret_leaked(
    repo: MeshRepo, unsealed: Unsealed, *, extra_files: Iterable[Path] = ()
) -> None:
    """No private key text in any recorded output, plan file or public state file."""
    haystacks = list(repo.outputs)
    for path in extra_files:
        haystacks.append(path.read_text())
    for path in repo.state_dir.rglob("*"):
        if path.is_file() and not path.name.endswith((".age", ".sops")):
            haystacks.append(path.read_text())
    needles = [*unsealed.texts, *repo.keys.private_texts()]
    assert all(len(n) >= 40 for n in needles)
    for text in haystacks:
        assert not SECRET_MARKERS.search(text), f"secret marker in output: {text[:400]}"
        for needle in needles:
            assert needle not in text, "a private key appeared in an output or file"


# -- applies killed mid-way ----------------------------------------------------------------

PLAN_CHANGE_LINE = re.compile(r"\s*(\+|~|-/\+|-) \S")  # a change in the printed plan
CHANGE_MADE_LINE = re.compile(r": (created|replaced|updated|destroyed)$")  # one per change


def kill_mid_apply(
    proc: subprocess.Popen[str], rng: random.Random, *, jitter: float, changes: int | None = None
) -> bool:
    """SIGKILL a running `meshops apply` at a random point of its work; True when killed.

    The point is counted in progress lines (one per change made, stdout unbuffered), not
    in seconds, so a loaded machine still gets kills inside the apply: after the k-th
    change (k = 0: once the plan is printed, before any change), plus up to `jitter`
    seconds. k is drawn below `changes`, or, without it, below the number of changes
    the printed plan lists.
    """
    assert proc.stdout is not None
    k = None if changes is None else rng.randrange(0, changes)
    planned = made = 0
    in_plan = True
    for line in proc.stdout:
        if in_plan:
            if line.startswith("Plan:"):
                in_plan = False
                k = rng.randrange(0, max(planned, 1)) if k is None else k
                if k == 0:
                    break
            elif PLAN_CHANGE_LINE.match(line):
                planned += 1
        elif CHANGE_MADE_LINE.search(line):
            made += 1
            if made >= (k or 0):
                break
    time.sleep(rng.uniform(0.0, jitter))
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    return True
