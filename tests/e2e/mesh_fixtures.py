"""A mesh repository wired to a namespace test bed, for host-scope end-to-end tests.

    with bed_mesh(tmp, keyring, ["node-1", "node-2"], identities={...}) as mesh:
        mesh.apply_repo()             # repo scope with the operator key, then commit
        mesh.apply_all()              # `meshops apply --node N` inside every host
        mesh.host("node-1").ping(mesh.overlay_ip("node-2"))

Each node runs on a test-bed host of the same name; its endpoint is the host's
underlay address, its recipient a fresh SSH ed25519 host key from the session key
ring, and its `--root` a directory of its own under the test's temporary directory.
All `meshops` runs go through the installed CLI inside the host's namespaces (so
WireGuard is the host's own wireguard-go) and are recorded on `MeshRepo.outputs` for
leak scans. Private keys live in the key ring's temporary directory, never in the repo.
"""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from test_repo_support import MESHOPS, HostKey, KeyRing, MeshRepo, Result, new_repo
from testbed import Host, TestBed

WG_PORT = 51820
IFACE = "wg-mesh"
# meshops reads these; an operator's shell must not leak into the hosts' runs
CLEAN_ENV = {"MESHOPS_IDENTITY": "", "MESHOPS_NODE": "", "SOPS_DISABLE_VERSION_CHECK": "1"}


@dataclass
class BedMesh:
    """A mesh repository whose nodes are the hosts of a running test bed."""

    repo: MeshRepo
    bed: TestBed
    roots: dict[str, Path]
    keys: dict[str, HostKey] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # added to every meshops run (PATH)

    # -- where things are ----------------------------------------------------------------

    def host(self, node: str) -> Host:
        return self.bed[node]

    @property
    def nodes(self) -> list[str]:
        """The nodes in mesh.yaml now (a removed node's host may still be running)."""
        return sorted(self.repo.data["nodes"])

    @property
    def domain(self) -> str:
        return str(self.repo.data["mesh"]["domain"])

    @property
    def trust_domain(self) -> str:
        return str(self.repo.data["mesh"]["trust_domain"])

    def overlay_ip(self, node: str) -> str:
        return str(self.repo.state()["nodes"][node]["address"])

    def public_key(self, node: str) -> str:
        return str(self.repo.state()["nodes"][node]["wireguard"]["public_key"])

    def node_of_key(self, key: str) -> str:
        for name, rec in self.repo.state()["nodes"].items():
            if rec.get("wireguard", {}).get("public_key") == key:
                return str(name)
        raise KeyError(key)

    def host_path(self, node: str, path: str) -> Path:
        """`path` under the node's --root (the files meshops manages there)."""
        return self.roots[node] / path.lstrip("/")

    def tls_dir(self, node: str, identity: str) -> Path:
        return self.host_path(node, f"/etc/meshops/tls/{identity}")

    # -- changing mesh.yaml ------------------------------------------------------------

    def set_endpoint(self, node: str, ip: str, port: int = WG_PORT) -> None:
        self.repo.data["nodes"][node]["endpoint"] = f"{ip}:{port}"
        self.repo.write_mesh()

    def apply_repo(self, message: str = "mesh change") -> Result:
        """Repo scope apply with the operator's key, then commit mesh.yaml and state/."""
        self.repo.write_mesh()
        result = self.repo.apply()
        self.repo.commit(message)
        return result

    # -- running meshops on a host -----------------------------------------------------

    def meshops(
        self,
        node: str,
        *args: str,
        identity: bool = True,
        check: bool = True,
        timeout: float = 120,
    ) -> Result:
        """`meshops -C REPO <args> --node NODE --root ROOT [--identity KEY]` inside the
        node's host (a node without a key-ring key uses its host.yaml identity). With
        `check`, a non-zero exit fails the test (exit 2 too)."""
        argv = [MESHOPS, "--no-color", "-C", str(self.repo.path)]
        if identity and node in self.keys:
            argv += ["--identity", str(self.keys[node].private_file)]
        argv += [*args, "--node", node, "--root", str(self.roots[node])]
        env = {**CLEAN_ENV, **self.env}
        proc = self.host(node).run(argv, env=env, check=False, timeout=timeout)
        result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
        self.repo.outputs.append(result.output)
        if check:
            assert result.returncode == 0, f"[{node}] {result}"
        return result

    def apply(self, node: str) -> Result:
        return self.meshops(node, "apply", "--auto-approve")

    def apply_all(self) -> dict[str, Result]:
        return {node: self.apply(node) for node in self.nodes}

    def plan(self, node: str, *args: str) -> Result:
        """`plan --detailed-exitcode`: exit 0 no changes, 2 changes (not checked here)."""
        result = self.meshops(node, "plan", "--detailed-exitcode", *args, check=False)
        assert result.returncode in (0, 2), f"[{node}] {result}"
        return result

    def status(self, node: str) -> dict[str, Any]:
        result = self.meshops(node, "status", "--format", "json", identity=False)
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    # -- WireGuard as the stock `wg` tool sees it --------------------------------------

    def wg(self, node: str, *what: str) -> str:
        return self.host(node).run(["wg", "show", IFACE, *what]).stdout

    def wg_table(self, node: str, what: str) -> dict[str, str]:
        """`wg show wg-mesh <what>` (peers, endpoints, latest-handshakes, transfer...) as
        public key -> the rest of the line."""
        table = {}
        for line in self.wg(node, what).splitlines():
            key, _, rest = line.partition("\t")
            table[key] = rest
        return table

    def wg_peers(self, node: str) -> set[str]:
        return set(self.wg(node, "peers").split())

    def traffic(self) -> None:
        """Ping every pair over the overlay (makes handshakes); fail if one cannot.

        One echo each: a first handshake takes milliseconds; a miss is retried."""
        failed = [
            (src, dst)
            for src in self.nodes
            for dst in self.nodes
            if src != dst
            and not self.host(src).ping(self.overlay_ip(dst))
            and not self.host(src).ping(self.overlay_ip(dst), count=3)
        ]
        assert not failed, f"no overlay connectivity for {failed}"


def host_key_pool(keyring: KeyRing) -> list[HostKey]:
    return list(keyring.ssh_hosts)


@contextlib.contextmanager
def bed_mesh(
    directory: Path,
    keyring: KeyRing,
    nodes: Sequence[str],
    *,
    identities: dict[str, Any] | None = None,
    groups: dict[str, list[str]] | None = None,
    policies: list[dict[str, Any]] | None = None,
    spare: Sequence[str] = (),
    **sections: Any,
) -> Iterator[BedMesh]:
    """A started test bed (one host per node) and a mesh repository for it.

    `spare` hosts are started (with a root directory each) but are not in mesh.yaml:
    room for a node that joins later. Nothing is applied yet; the bed is torn down
    (every process killed) on exit.
    """
    pool = host_key_pool(keyring)
    if len(nodes) > len(pool):
        raise ValueError(f"the key ring has {len(pool)} host keys, {len(nodes)} nodes asked")
    with TestBed(len(nodes) + len(spare), names=[*nodes, *spare]) as bed:
        repo = new_repo(directory / "mesh", keyring, nodes=0, **sections)
        roots = {}
        for name in spare:
            roots[name] = directory / f"root-{name}"
            roots[name].mkdir(parents=True)
        for index, (node, host) in enumerate(zip(nodes, bed.hosts, strict=False)):
            repo.host_keys[node] = pool[index]
            repo.data["nodes"][node] = {
                "endpoint": f"{host.underlay_ip}:{WG_PORT}",
                "recipient": pool[index].recipient,
            }
            roots[node] = directory / f"root-{node}"
            roots[node].mkdir(parents=True)
        # deep copies: a test that edits its mesh must not edit a module's constant
        repo.data["identities"] = copy.deepcopy(dict(identities or {}))
        repo.data["groups"] = dict(groups or {})
        repo.data["policies"] = list(policies or [])
        repo.write_mesh()
        yield BedMesh(repo, bed, roots, dict(repo.host_keys))


def converged(mesh: BedMesh) -> BedMesh:
    """Apply at repo scope, then on every host; the mesh is up when this returns."""
    mesh.apply_repo("initial state")
    mesh.apply_all()
    return mesh


# -- waiting for servers ---------------------------------------------------------------


def wait_for_port(host: Host, port: int, *, timeout: float = 20.0, proc: Any = None) -> None:
    """Wait until something listens on TCP `port` inside `host` (or `proc` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server on port {port} exited with {proc.returncode}")
        listening = host.run(["ss", "-Htln", f"sport = :{port}"], check=False).stdout
        if listening.strip():
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} in {host.name} after {timeout}s")


def start_caddy(host: Host, config: Path, directory: Path, port: int) -> subprocess.Popen[bytes]:
    """`caddy run` of a rendered Caddyfile inside `host`, its state under
    `directory`/caddy-home and its log in `directory`/caddy.log; returns once it listens
    on `port` (the test bed kills it with the host)."""
    home = directory / "caddy-home"
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home / "data"),
           "XDG_CONFIG_HOME": str(home / "config")}  # fmt: skip
    with open(directory / "caddy.log", "wb") as log:
        caddy = host.popen(["caddy", "run", "--config", str(config), "--adapter", "caddyfile"],
                           env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    wait_for_port(host, port, proc=caddy)
    return caddy


def openssl(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, input=input)


# -- hosts that pull: each node's checkout is its own clone of the mesh repository ------


@dataclass
class PullHost:
    """A node whose checkout is a clone of the mesh repository (the "remote": commits in
    `MeshRepo.path` are what a push would bring), under the node's --root, named by its
    host.yaml together with `pull:` settings."""

    mesh: BedMesh
    node: str
    checkout: Path

    def write_host_yaml(self, **pull: Any) -> None:
        """host.yaml: node, repo (this checkout) and `pull:` settings."""
        import yaml

        config = {"node": self.node, "repo": str(self.checkout), "pull": dict(pull)}
        path = self.mesh.host_path(self.node, "/etc/meshops/host.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))

    def argv(self, *args: str) -> list[str]:
        """`meshops -C CHECKOUT --identity KEY <args> --node N --root ROOT`."""
        argv = [MESHOPS, "--no-color", "-C", str(self.checkout)]
        if self.node in self.mesh.keys:
            argv += ["--identity", str(self.mesh.keys[self.node].private_file)]
        return [*argv, *args, "--node", self.node, "--root", str(self.mesh.roots[self.node])]

    def meshops(self, *args: str, check: bool = True, timeout: float = 120) -> Result:
        """Run meshops on this node against its own checkout (recorded for leak scans)."""
        argv = self.argv(*args)
        proc = self.mesh.host(self.node).run(argv, env=CLEAN_ENV, check=False, timeout=timeout)
        result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
        self.mesh.repo.outputs.append(result.output)
        if check:
            assert result.returncode == 0, f"[{self.node}] {result}"
        return result

    def start(self, log: Path, *args: str) -> subprocess.Popen[bytes]:
        """Start `meshops <args>` (a `watch`) in the background inside the node's host,
        stdout and stderr into `log`. The caller stops it by PID (nsenter execs meshops,
        so the PID is meshops itself); the bed's teardown kills it too."""
        with log.open("ab") as out:
            return self.mesh.host(self.node).popen(
                self.argv(*args), env=CLEAN_ENV, stdout=out, stderr=subprocess.STDOUT
            )

    def head(self) -> str:
        return git_head(self.checkout)

    def applied_revision(self) -> str | None:
        last = json.loads(self.mesh.host_path(self.node, "/var/lib/meshops/last-applied.json")
                          .read_text())  # fmt: skip
        revision = last.get("last_apply", {}).get("revision")
        return str(revision) if revision else None


def git_head(repo: Path) -> str:
    proc = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return proc.stdout.strip()


def pull_host(mesh: BedMesh, node: str, **pull: Any) -> PullHost:
    """Clone the mesh repository to `<root>/srv/mesh` for `node` and write its host.yaml
    with these `pull:` settings (host paths, e.g. allowed_signers, are under --root)."""
    checkout = mesh.roots[node] / "srv" / "mesh"
    checkout.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", str(mesh.repo.path), str(checkout)],
                   check=True, capture_output=True)  # fmt: skip
    host = PullHost(mesh, node, checkout)
    host.write_host_yaml(**pull)
    return host


# -- fault and hostile-path tests: one host, peers that exist only in mesh.yaml ------------

GHOST_UNDERLAY = "198.51.100."  # documentation range: peers nobody answers for


@contextlib.contextmanager
def one_host_mesh(
    directory: Path,
    keyring: KeyRing,
    *,
    peers: int = 3,
    identities: dict[str, Any] | None = None,
    **sections: Any,
) -> Iterator[BedMesh]:
    """One test-bed host, `node-1`, and `peers` more nodes (node-2...) that exist only in
    mesh.yaml (endpoints in 198.51.100.0/24): WireGuard configures them as peers, so a
    host apply has real peer work without more hosts. Nothing is applied yet."""
    with bed_mesh(directory, keyring, ["node-1"], identities=identities, **sections) as mesh:
        for i in range(2, peers + 2):
            mesh.repo.set_node(f"node-{i}", keyring.ssh_hosts[i - 1], i)
            mesh.repo.data["nodes"][f"node-{i}"]["endpoint"] = f"{GHOST_UNDERLAY}{10 + i}:{WG_PORT}"
        mesh.repo.write_mesh()
        yield mesh


LEFTOVER_MARKS = (".meshops-tmp-", ".meshops-next")


def tree_digests(directory: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `directory` (a symlink -> its target)."""
    import hashlib

    out = {}
    for path in sorted(Path(directory).rglob("*")):
        key = str(path.relative_to(directory))
        if path.is_symlink():
            out[key] = "-> " + str(path.readlink())
        elif path.is_file():
            out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def leftover_files(directory: Path) -> list[str]:
    """Temp files and staged directories an apply left under `directory`."""
    return sorted(
        str(p.relative_to(directory))
        for p in Path(directory).rglob("*")
        if any(mark in p.name for mark in LEFTOVER_MARKS)
    )


def clean_failure(result: Result) -> str:
    """Assert a failed run as a user should see it (exit 1, no traceback, no internal
    error); return the first stderr line, which must say what failed and where."""
    assert result.returncode == 1, str(result)
    assert "Traceback" not in result.output, str(result)
    assert "internal error" not in result.stderr, str(result)
    lines = result.stderr.strip().splitlines()
    assert lines, str(result)
    return lines[0].removeprefix("error: ")


# -- git: commits signed with SSH keys (trusted pulls) -------------------------------------


@dataclass(frozen=True)
class Signer:
    """An SSH ed25519 key made by `ssh-keygen` that signs commits as `email`."""

    email: str
    key: Path  # private key file; key.pub beside it

    @property
    def allowed_line(self) -> str:
        """This key's line in a git allowed-signers file."""
        kind, body = Path(f"{self.key}.pub").read_text().split()[:2]
        return f"{self.email} {kind} {body}\n"


def make_signer(directory: Path, name: str) -> Signer:
    """A fresh key pair `<directory>/<name>` (no passphrase) for `<name>@example.com`."""
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True, capture_output=True)  # fmt: skip
    return Signer(f"{name}@example.com", key)


def git(repo: Path, *args: str) -> str:
    """`git -C repo ...`; its stdout, stripped (CalledProcessError when git fails)."""
    proc = subprocess.run(["git", "-C", str(repo), *args],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return proc.stdout.strip()


def git_commit(repo: Path, message: str, signer: Signer | None) -> str:
    """Commit what is staged, SSH-signed by `signer` (None: explicitly unsigned); the
    new HEAD."""
    who = ["-c", "user.name=Dev", "-c", f"user.email={signer.email if signer else 'u@x'}"]
    if signer is None:
        git(repo, *who, "commit", "-q", "--no-gpg-sign", "-m", message)
    else:
        sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={signer.key}"]
        git(repo, *who, *sign, "commit", "-q", "-S", "-m", message)
    return git(repo, "rev-parse", "HEAD")
