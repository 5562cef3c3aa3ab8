"""Host scope: what one node's resources share (its view of the mesh, its secrets)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshops.errors import MeshError
from meshops.model import Loaded
from meshops.resources.host.local_keys import KeyStore
from meshops.resources.host.trust import HostTrust, Kept, StateFiles
from meshops.resources.repo.state import NodeRecord, StateDoc, StateLayout

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime
    from meshops.model.mesh import Mesh
    from meshops.policy.flows import Flows
    from meshops.providers.owned import Owned
    from meshops.providers.wireguard import DeviceState, LinkState

NODE_KEY_NEED = "this host's identity (to unseal its node CA and WireGuard keys)"
HOST_KEYS_NEED = "this host's own keys (/etc/meshops/keys, made by `meshops host init`)"
ROOT_NEED = "root privileges (network configuration)"
# a need only when it is unmet: apply refuses to start without it
WIREGUARD_NEED = "WireGuard: the kernel module or wireguard-go (neither is available here)"
TLS_DIR = "/etc/meshops/tls"
LIB_DIR = "/var/lib/meshops"


@dataclass(frozen=True)
class PoolBase:
    current: tuple[Any, ...]  # x509.Certificate: each node's node CA
    roots: tuple[Any, ...]


@dataclass
class HostScope:
    loaded: Loaded
    node: str
    layout: StateLayout
    state: StateDoc
    root: Path
    last: dict[str, Any]  # last-applied record
    files: StateFiles  # state/ as it verified (host/trust.py): read only through it
    trust: HostTrust = field(default_factory=lambda: HostTrust("unsigned"))
    # the pack and the checkout's record this run checked against (saved by the record)
    kept: Kept = field(default_factory=lambda: Kept())
    _device: Any = field(default=None, repr=False)
    _link: Any = field(default=None, repr=False)
    _read_done: bool = False
    _pool_base: PoolBase | None = field(default=None, repr=False)

    @property
    def mesh(self) -> Mesh:
        return self.loaded.mesh

    @cached_property
    def flows(self) -> Flows:
        """The access table as nodes: this node's openings and the peers it needs."""
        from meshops.policy.flows import Flows

        return Flows.of(self.mesh, self.loaded.access)

    @property
    def record(self) -> NodeRecord:
        return self.state.nodes[self.node]

    def state_bytes(self, path: Path | str) -> bytes | None:
        """A state/ file (a `layout` path, or a path under state/) as it verified, or
        None when there is none."""
        if isinstance(path, str):
            return self.files.read(path)
        return self.files.read(path.relative_to(self.layout.dir).as_posix())

    def host_path(self, path: str) -> Path:
        """`path` under `--root`; refused (MeshError naming the symlink) when a symlink
        or `..` on the way would make a write there land outside the root."""
        from meshops.providers.files import inside_root

        return inside_root(self.root / path.lstrip("/"), self.root)

    def tls_dir(self, identity: str) -> Path:
        return self.host_path(f"{TLS_DIR}/{identity}")

    @property
    def lib_dir(self) -> Path:
        return self.host_path(LIB_DIR)

    @cached_property
    def owned(self) -> Owned:
        """The files meshops wrote on this host (read once per run)."""
        from meshops.providers.owned import Owned

        return Owned(self.lib_dir, self.root)

    def tls_gid(self, identity: str) -> int | None:
        """The gid of the group that may read `identity`'s TLS files (mesh.yaml `tls:`),
        or None; a MeshError naming the field when this host has no such group."""
        name = self.mesh.tls_group(identity)
        if name is None:
            return None
        import grp

        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            own = self.mesh.identities[identity].tls
            field = f"identities.{identity}.tls.group" if own and own.group else "tls.group"
            raise MeshError(
                f"group {name!r} ({field} in mesh.yaml) does not exist on node {self.node}",
                hint=f"create it (groupadd {name}) or install the proxy that brings it "
                "(Debian's caddy package creates `caddy`; nginx workers run as `www-data`)",
            ) from None

    def pool_base(self) -> PoolBase:
        """The current node CAs and the roots from state/, parsed once per run."""
        if self._pool_base is None:
            from meshops.pki.parse import load_certificates

            current = []
            for node in sorted(self.mesh.nodes):
                path = self.layout.node_ca_cert(node)
                data = self.state_bytes(path)
                if data is not None:
                    current.append(load_certificates(data, what=str(path))[0])
            root = self.state_bytes(self.layout.root_cert)
            roots = load_certificates(root, what=str(self.layout.root_cert)) if root else []
            self._pool_base = PoolBase(tuple(current), tuple(roots))
        return self._pool_base

    @property
    def tunnelled(self) -> bool:
        """Whether this host runs WireGuard (else: certificates, proxies, hosts only)."""
        return self.mesh.wireguard_on(self.node)

    def overlay(self, node: str | None = None) -> list[IPv4Address | IPv6Address]:
        """The node's overlay address(es); a certificates-only node's published ones
        (what its certificates carry and the node CA permits)."""
        if not self.mesh.wireguard_on(node or self.node):
            return self.mesh.underlay_ips(node or self.node)
        rec = self.state.nodes.get(node or self.node)
        if rec is None or not rec.address:
            return []
        ips: list[IPv4Address | IPv6Address] = [ip_address(rec.address)]
        if rec.address6:
            ips.append(ip_address(rec.address6))
        return ips

    # -- secrets of this node: its own (keys: host), or unsealed in memory once per run ----

    @property
    def host_held(self) -> bool:
        """Whether this node's keys were born here (`keys: host`), not sealed in state/."""
        return self.mesh.host_held(self.node)

    @property
    def key_need(self) -> str:
        """What using this node's keys needs, as plans say it."""
        return HOST_KEYS_NEED if self.host_held else NODE_KEY_NEED

    @cached_property
    def keys(self) -> KeyStore:
        from meshops.resources.host.local_keys import KEYS_DIR, KeyStore

        return KeyStore(self.host_path(KEYS_DIR))

    def _not_enrolled(self, what: str) -> MeshError:
        """The error when state/ carries a key this host does not hold."""
        from meshops.enroll.checks import request_path

        if not self.keys.exists("ca") and not self.keys.exists("ca", "next"):
            return MeshError(
                f"node {self.node} holds its keys on the host (keys: host), and this host has "
                f"none in {self.keys.dir}",
                hint=f"run `meshops host init --node {self.node}` here, commit the request it "
                "writes, and after the repo apply that enrols it, apply again",
            )
        return MeshError(
            f"{what} in state/ is not one of this host's keys ({self.keys.dir}): the "
            f"enrolment of this host's keys is not applied yet",
            hint=f"commit {request_path(self.node)} as `meshops host init|rotate-keys` wrote "
            "it, run `meshops apply` at repo scope (with the root identity), commit state/ "
            "and pull; if this host's keys were lost, run `meshops host rotate-keys "
            f"--node {self.node}` and enrol again",
        )

    def _unseal(self, rt: Runtime, path: Path, what: str) -> bytes:
        from meshops.secrets import sealer_for

        def load() -> bytes:
            sealed = self.state_bytes(path)
            if sealed is None:
                raise MeshError(
                    f"{self.layout.relative(path)} is missing",
                    hint="run `meshops apply` at repo scope, commit state/, and pull",
                )
            sealer = sealer_for(self.mesh.secrets.format, self.layout.repo_dir)
            return bytes(sealer.unseal(sealed, rt.identities(), self.layout.relative(path)))

        if not rt.identity_files:
            raise MeshError(
                f"no identity to unseal {what} with",
                hint="pass --identity, set it in /etc/meshops/host.yaml, or provide "
                "/etc/ssh/ssh_host_ed25519_key",
            )
        return rt.secret(f"{self.node}:{what}", load)

    def node_ca(self, rt: Runtime) -> tuple[Any, Any]:
        """This node's CA certificate and key, the key checked against the certificate."""
        if "node-ca" in rt.shared:
            return rt.shared["node-ca"]  # type: ignore[no-any-return]
        from meshops.pki import keys_match, load_private_pem
        from meshops.pki.parse import load_certificates

        cert_path = self.layout.node_ca_cert(self.node)
        cert_pem = self.state_bytes(cert_path)  # as it verified, not the checkout's
        if cert_pem is None:
            raise MeshError(f"{self.layout.relative(cert_path)} is missing")
        cert = load_certificates(cert_pem, what=str(cert_path))[0]
        if self.host_held:
            found = self.keys.node_ca_for(cert)
            if found is None:
                serial = format(cert.serial_number, "x")
                raise self._not_enrolled(f"the node CA of {self.node} (serial {serial})")
            rt.shared["node-ca"] = (cert, found[1])
            return cert, found[1]
        key = load_private_pem(self._unseal(rt, self.layout.node_ca_key(self.node), "node CA key"))
        if not keys_match(key, cert):
            raise MeshError(
                f"{self.layout.relative(self.layout.node_ca_key(self.node))} does not hold the "
                "key of the node CA certificate (torn or tampered state); refusing to use it",
                hint="run `meshops apply` at repo scope to re-issue this node's CA",
            )
        rt.shared["node-ca"] = (cert, key)
        return cert, key

    def wg_private_key(self, rt: Runtime) -> bytes:
        from meshops.providers.wireguard import b64_to_bytes, public_key_of

        if self.host_held:
            rec = self.record.wireguard
            found = self.keys.wireguard_for(rec.public_key) if rec else None
            if found is None:
                shown = rec.public_key[:8] + "…" if rec else "(none)"
                raise self._not_enrolled(f"the WireGuard key of {self.node} ({shown})")
            return found[1]
        text = self._unseal(rt, self.layout.wg_key(self.node), "WireGuard key")
        key = b64_to_bytes(text.decode().strip(), what="WireGuard private key")
        rec = self.record.wireguard
        if rec is None or public_key_of(key) != rec.public_key:
            raise MeshError(
                f"{self.layout.relative(self.layout.wg_key(self.node))} does not match the "
                "public key in state.yaml (torn or tampered state); refusing to use it"
            )
        return key

    # -- live WireGuard, read once per refresh -------------------------------------------

    def link(self) -> LinkState | None:
        self._read_wireguard()
        return self._link  # type: ignore[no-any-return]

    def device(self) -> DeviceState | None:
        self._read_wireguard()
        return self._device  # type: ignore[no-any-return]

    def _read_wireguard(self) -> None:
        if self._read_done:
            return
        from meshops.providers.wireguard import open_backend, read_link

        name = self.mesh.wireguard.interface
        self._link = read_link(name)
        self._device = open_backend(name).read(name) if self._link is not None else None
        self._read_done = True

    def forget_wireguard(self) -> None:
        self._read_done = False

    def use_live_view(self, link: LinkState | None, device: DeviceState | None) -> None:
        """Plan from a live view read earlier (by `watch`, after its last apply)."""
        self._link, self._device, self._read_done = link, device, True


def read_last_applied(lib_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((lib_dir / "last-applied.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
