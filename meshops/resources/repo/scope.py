"""Repo scope: compile mesh.yaml + state/ into resources, and what they share."""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshops.errors import MeshError
from meshops.model import Loaded
from meshops.model.types import SEALED_SUFFIX, Recipient, recipients_digest
from meshops.providers.files import TEMP_MARK, sync_filesystem, write_atomic
from meshops.resources.repo.ipam import allocate_all
from meshops.resources.repo.state import StateDoc, StateLayout, load_state, save_state

if TYPE_CHECKING:
    from meshops.engine.resource import Resource
    from meshops.engine.runtime import Runtime
    from meshops.enroll.request import Proven
    from meshops.resources.repo.rotation import RootStep

# test-only fault injection: SIGKILL the apply after its files are renamed into place and
# before the file system is synced (tests/e2e/test_repo_crash.py); never set it otherwise
KILL_BEFORE_SYNC_ENV = "MESHOPS_TEST_KILL_BEFORE_SYNC"
# the name `write_atomic` gives its temp files: `.<name>.meshops-tmp-<pid>`
TEMP_GLOB = f".*{TEMP_MARK}*"
ROOT_KEY_NEED = "root CA key (an identity among ca.recipients)"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def recipients_fingerprint(recipients: list[Recipient]) -> str:
    """The short form state.yaml records (16 hex digits) of a recipient set's digest."""
    return _short_digest(tuple(recipients))


@functools.lru_cache(maxsize=4096)
def _short_digest(recipients: tuple[Recipient, ...]) -> str:
    return recipients_digest(recipients)[: len("sha256:") + 16]


def suffix_for(fmt: str) -> str:
    return SEALED_SUFFIX[fmt]


@dataclass
class RepoScope:
    """What repo-scope resources share: the mesh, the state record, sealing."""

    loaded: Loaded
    layout: StateLayout
    state: StateDoc
    addresses: dict[str, IPv4Address]
    addresses6: dict[str, IPv6Address]
    removed: list[str]
    _sealer: Any = field(default=None, repr=False)
    _dirty: bool = field(default=False, repr=False)  # state.yaml must be written
    _unsynced: bool = field(default=False, repr=False)  # new files not yet synced
    _dirs: dict[Path, bool] = field(default_factory=dict, repr=False)  # existed before?
    _writer: Any = field(default=None, repr=False)  # a one-thread executor, when in use
    _pending: list[Any] = field(default_factory=list, repr=False)  # its futures
    _root_keys: dict[tuple[str, Path], Any] = field(default_factory=dict, repr=False)
    _rotation: tuple[datetime, RootStep] | None = field(default=None, repr=False)
    _roots: tuple[bytes, list[Any]] | None = field(default=None, repr=False)
    # the manifest is re-signed at the end of this apply (see resources/repo/manifest.py)
    sign_due: bool = field(default=False, repr=False)
    # state/ files known to be this machine's own uncommitted work; None: ask git
    local_override: set[str] | None = field(default=None, repr=False)
    # the verified enrolment requests of host-held nodes (enroll/<node>.yaml), by node
    enrolments: dict[str, Proven] = field(default_factory=dict, repr=False)

    @property
    def mesh(self) -> Any:
        return self.loaded.mesh

    @property
    def sealer(self) -> Any:
        if self._sealer is None:
            from meshops.secrets import sealer_for

            self._sealer = sealer_for(self.mesh.secrets.format, self.layout.repo_dir)
        return self._sealer

    # -- group commit ---------------------------------------------------------------------
    #
    # An apply writes every file of state/ first (atomic renames, no fsync each), then
    # syncs the file system once, then writes state.yaml: the commit point. state.yaml
    # only ever vouches (by sha256) for files already on disk, and a file it does not
    # vouch for is replaced by the next run, so a kill or a power loss at any point
    # converges; an fsync per file (two, with the directory) cost most of a 1,000-node
    # apply.

    def write(self, path: Path, data: bytes, *, mode: int) -> None:
        """Write one file of state/ for this apply's commit.

        A new file is renamed into place unsynced: `flush` syncs them all before
        state.yaml. A file that replaces one already there is made durable first, and
        everything written before it: an old file (the root key, before its rotation
        moved it aside) is only ever swapped for one that is on disk.

        A new node's files (nothing in this apply reads them back) are written by a
        thread while the next node's keys are made: creating 4,000 files is a third of
        a 1,000-node apply, and the system calls release the GIL. A failed write is
        raised before the next sync, naming the file.
        """
        parent = path.parent
        existed = self._dirs.get(parent)
        fresh = existed is None  # first write into this directory in this apply
        if existed is None:
            existed = self._dirs[parent] = os.path.isdir(parent)
        # nothing can be replaced in a directory this apply made (4,000 lstat calls fewer)
        replacing = existed and os.path.lexists(path)
        if replacing and self._unsynced:
            self._sync()
        self._unsynced = self._unsynced or not replacing
        # temp files a killed run left are swept from all of state/ when the apply is
        # recorded (`sweep_temp_files`)
        fresh = fresh and not existed
        if replacing or path.parent.parent != self.layout.dir / "nodes":
            write_atomic(path, data, mode=mode, fsync=replacing, make_dirs=fresh, sweep=False)
            return
        if self._writer is None:
            from concurrent.futures import ThreadPoolExecutor

            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-writer")
        self._pending.append(
            self._writer.submit(
                write_atomic, path, data, mode=mode, fsync=False, make_dirs=fresh, sweep=False
            )
        )
        self._unsynced = True

    def drain(self) -> None:
        """Wait for the files written in the background; raise the first failure."""
        pending, self._pending = self._pending, []
        failure: BaseException | None = None
        for future in pending:
            error = future.exception()
            failure = failure or error
        if failure is not None:
            raise failure

    def save(self) -> None:
        """Note a change to state.yaml's record: `flush` writes it, once per apply."""
        self._dirty = True

    def flush(self) -> None:
        """The commit point: sync the files this apply wrote, then write state.yaml."""
        if self._unsynced:
            self._sync()
        if not self._dirty:
            return
        self.state.mesh = self.mesh.mesh.name
        save_state(self.layout, self.state)
        self._dirty = False

    def _sync(self) -> None:
        self.drain()
        if os.environ.get(KILL_BEFORE_SYNC_ENV) == "1":
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        sync_filesystem(self.layout.repo_dir)
        self._unsynced = False

    def sweep_temp_files(self) -> list[Path]:
        """Remove temp files an apply killed mid-write left under state/.

        `write_atomic` renames its temp file into place, so one still present was never
        published; it holds at most a sealed secret. Call only under the repo lock.
        """
        from meshops.providers.files import prune_empty_dirs, remove

        self.drain()  # (a background write's temp file is not a leftover)
        swept: list[Path] = []
        if not self.layout.dir.is_dir():
            return swept
        for path in sorted(self.layout.dir.rglob(TEMP_GLOB)):
            if path.is_file() and remove(path):
                swept.append(path)
                prune_empty_dirs(path.parent, stop=self.layout.dir)
        return swept

    def local_state_changes(self) -> set[str] | None:
        """Paths under state/ that differ from the checkout's HEAD commit (modified,
        deleted or untracked): this machine's own work, such as an apply stopped before
        it signed. None when the repository is no git checkout (nothing is committed,
        so every difference is local)."""
        if self.local_override is not None:
            return self.local_override
        from meshops.providers.run import run

        state_dir = str(self.layout.dir)
        if not self.layout.dir.is_dir():
            return set()
        changed = run(
            ["git", "-C", state_dir, "diff", "--name-only", "--relative", "-z", "HEAD", "--", "."],
            check=False,
            what="git diff",
        )
        if changed.returncode != 0:
            return None  # not a git checkout, or no commit yet: nothing is committed
        untracked = run(
            ["git", "-C", state_dir, "ls-files", "--others", "-z", "--", "."],
            check=False,
            what="git ls-files",
        )
        names = changed.stdout.split(b"\0") + untracked.stdout.split(b"\0")
        return {n.decode(errors="replace") for n in names if n}

    def root_needs(self) -> tuple[str, ...]:
        """What signing needs: the root key, unless this apply makes the root (an
        imported one, staged, still has to be unsealed)."""
        return (ROOT_KEY_NEED,) if self.state.roots or self.adopts_staged_root else ()

    @property
    def adopts_staged_root(self) -> bool:
        """No root yet, and `meshops ca import` staged one: apply adopts it."""
        rotation = self.state.rotation
        return not self.state.roots and rotation is not None and rotation.phase == "staged"

    def overlay(self, node: str) -> list[IPv4Address | IPv6Address]:
        """The node's overlay address(es); a certificates-only node's published ones."""
        if node not in self.addresses:
            return list(self.mesh.underlay_ips(node))
        ips: list[IPv4Address | IPv6Address] = [self.addresses[node]]
        if node in self.addresses6:
            ips.append(self.addresses6[node])
        return ips

    def rotation_step(self, now: datetime) -> RootStep:
        """What this apply does about a root rotation (computed once per run)."""
        cached = self._rotation
        if cached is None or cached[0] != now:
            from meshops.resources.repo.rotation import plan_rotation

            cached = self._rotation = (now, plan_rotation(self, now))
        return cached[1]

    def root_certificates(self) -> list[Any]:
        """The roots in state/ca/root.crt, old first (two during a rotation)."""
        from meshops.pki.parse import load_certificates

        path = self.layout.root_cert
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise MeshError(f"{self.layout.relative(path)} is missing") from None
        if self._roots is None or self._roots[0] != data:
            self._roots = (data, load_certificates(data, what=self.layout.relative(path)))
        return list(self._roots[1])

    def root_material(self, rt: Runtime) -> tuple[Any, Any]:
        """The signing root (the newest) and its private key, unsealed in memory."""
        if self.adopts_staged_root and not self.layout.root_cert.exists():
            from meshops.pki.parse import load_certificates

            staged = self.layout.root_next_cert
            cert = load_certificates(staged.read_bytes(), what=self.layout.relative(staged))[0]
            return cert, self.root_key_for(rt, cert, self.layout.root_next_key)
        cert = self.root_certificates()[-1]
        path = self.layout.root_key
        if self.state.rotation is not None and self.state.roots:
            # a rotation's first phase, interrupted after the staged key took
            # root.key's place but before root.crt: the current key is the previous
            moved = self.layout.root_previous_key
            recorded = self.state.roots[-1].key_sha256
            if _file_sha256(path) != recorded and _file_sha256(moved) == recorded:
                path = moved
        return cert, self.root_key_for(rt, cert, path)

    def previous_root_material(self, rt: Runtime) -> tuple[Any, Any]:
        """During a rotation, the old root and its key (it signs the old root's CRL)."""
        cert = self.root_certificates()[0]
        return cert, self.root_key_for(rt, cert, self.layout.root_previous_key)

    def root_key_for(self, rt: Runtime, cert: Any, key_path: Path) -> Any:
        """The private key of root `cert`, unsealed from `key_path` once per run."""
        from meshops.pki import keys_match, load_private_pem
        from meshops.pki.parse import cert_fingerprint

        def unseal() -> bytes:
            try:
                sealed = key_path.read_bytes()
            except FileNotFoundError:
                raise MeshError(f"{self.layout.relative(key_path)} is missing") from None
            return bytes(
                self.sealer.unseal(sealed, rt.identities(), self.layout.relative(key_path))
            )

        name = f"root-key {cert_fingerprint(cert)}"
        cached = self._root_keys.get((name, key_path))
        if cached is not None and rt.has_secret(name):
            return cached  # parsed and checked once: a new mesh signs 2,000 times with it
        if not rt.has_secret(name) and not rt.identity_files:
            raise MeshError(
                "this change needs the root CA key, and no identity was given to unseal it",
                hint="pass --identity FILE (an age identity or SSH private key among "
                "ca.recipients), or set MESHOPS_IDENTITY",
            )
        key = load_private_pem(rt.secret(name, unseal))
        if not keys_match(key, cert):
            raise MeshError(
                f"{self.layout.relative(key_path)} does not hold the key of "
                f"{self.layout.relative(self.layout.root_cert)}; refusing to sign with it"
            )
        self._root_keys[(name, key_path)] = key
        return key


def open_repo_scope(loaded: Loaded, repo_dir: Path, now: datetime) -> RepoScope:
    mesh = loaded.mesh
    layout = StateLayout(repo_dir, suffix_for(mesh.secrets.format))
    state = load_state(layout)
    nowiso = now.isoformat(timespec="seconds")
    quarantined = [ip for ip, rel in state.released.items() if rel.until > nowiso]
    # certificates-only nodes (`wireguard: false`) get no overlay address
    pinned = {name: node.address for name, node in mesh.nodes.items() if mesh.wireguard_on(name)}
    recorded = {name: rec.address for name, rec in state.nodes.items()}
    addresses = allocate_all(mesh.wireguard.network, pinned, recorded, quarantined)
    addresses6 = _allocate6(mesh.wireguard.network6, mesh, addresses)
    removed = sorted((set(state.nodes) | _node_dirs(layout)) - set(mesh.nodes))
    scope = RepoScope(loaded, layout, state, addresses, addresses6, removed)
    scope.enrolments = _enrolments(loaded, repo_dir, state, now)
    return scope


def _enrolments(loaded: Loaded, repo_dir: Path, state: StateDoc, now: datetime) -> dict[str, Any]:
    """The requests of host-held nodes, each verified; ValidationFailed (located in the
    request file or mesh.yaml) when one does not hold: nothing is signed from it."""
    from meshops.enroll import load_enrolments

    shown = "" if str(repo_dir) in ("", ".") else f"{repo_dir}/"
    enrolments = load_enrolments(loaded, repo_dir, state, now=now, display_dir=shown)
    enrolments.raise_problems()
    return enrolments.proven


def _file_sha256(path: Path) -> str | None:
    try:
        return sha256_hex(path.read_bytes())
    except FileNotFoundError:
        return None


def _node_dirs(layout: StateLayout) -> set[str]:
    """Nodes with a directory under state/nodes/. Files of a node can exist before
    state.yaml records it (its writes are batched), so an apply killed after adding a
    node, followed by the node's removal, leaves files only this finds."""
    try:
        return {e.name for e in os.scandir(layout.nodes_dir) if e.is_dir()}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def _allocate6(
    net6: IPv6Network | None, mesh: Any, addresses: dict[str, IPv4Address]
) -> dict[str, IPv6Address]:
    """IPv6 overlay: explicit address6, else the IPv4 host part inside network6."""
    if net6 is None:
        return {}
    out = {}
    v4net = mesh.wireguard.network
    for name, node in mesh.nodes.items():
        if name not in addresses:
            continue  # no WireGuard, no overlay
        if node.address6 is not None:
            out[name] = node.address6
        else:
            host = int(addresses[name]) - int(v4net.network_address)
            out[name] = IPv6Address(int(net6.network_address) + host)
    return out


def compile_repo(scope: RepoScope) -> list[Resource[Any]]:
    """Desired resources for the repository, in a readable order."""
    from meshops.resources.repo.address import AddressResource
    from meshops.resources.repo.crl import CRLResource
    from meshops.resources.repo.node_ca import NodeCAResource
    from meshops.resources.repo.root import RootResource
    from meshops.resources.repo.wireguard_key import WireGuardKeyResource

    resources: list[Resource[Any]] = [RootResource(scope)]
    for name in sorted({*scope.mesh.nodes, *scope.removed}):
        resources.append(AddressResource(scope, name))
        resources.append(WireGuardKeyResource(scope, name))
        resources.append(NodeCAResource(scope, name))
    resources.append(CRLResource(scope))
    from meshops.resources.repo.manifest import ManifestResource

    resources.append(ManifestResource(scope, tuple(r.address for r in resources)))
    return resources
