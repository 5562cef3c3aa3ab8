"""Workload certificates on a host: `cert.leaf["<identity>"]`, the trust bundle and CRL
(`tls.bundle`, `tls.crl`), and extra formats (`tls.outputs`)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshops.engine.plan import Action, Change, Impact
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.providers.files import clear_leftovers, leftovers, read_bytes
from meshops.resources.host.scope import HostScope

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime
    from meshops.pki import LeafSpec
    from meshops.providers.owned import Owned


@dataclass(frozen=True)
class LeafLive:
    cert_pem: bytes | None
    key_pem: bytes | None
    key_mode: int | None
    key_gid: int | None = None


def key_access(gid: int | None) -> int:
    """The mode of a private key file: 0600, or 0640 when a group may read it."""
    return 0o600 if gid is None else 0o640


# an apply killed while swapping a leaf's files in leaves these; the next one clears
# them and runs the identity's hooks again (it may have died before running them)
LEFTOVER = "an interrupted apply left files behind"


class LeafResource(Resource[LeafLive]):
    """The identity's key and X.509-SVID, issued here by the node CA."""

    def __init__(self, scope: HostScope, identity: str):
        self.scope = scope
        self.identity = identity
        self.address = f'cert.leaf["{identity}"]'
        self.dir = scope.tls_dir(identity)
        self.cert_path = self.dir / "cert.pem"
        self.key_path = self.dir / "key.pem"
        self.owns = (self.cert_path, self.key_path)
        self.gid = scope.tls_gid(identity)
        self.key_mode = key_access(self.gid)

    def spec(self) -> LeafSpec:
        from meshops.pki import LeafSpec

        return LeafSpec.for_identity(
            self.scope.mesh, self.identity, self.scope.node, overlay=self.scope.overlay()
        )

    def read(self, rt: Runtime) -> Observed[LeafLive]:
        cert = read_bytes(self.cert_path)
        key = read_bytes(self.key_path)
        info = os.stat(self.key_path) if key is not None else None
        mode = stat.S_IMODE(info.st_mode) if info else None
        gid = info.st_gid if info else None
        node_ca = self.scope.state_bytes(self.scope.layout.node_ca_cert(self.scope.node)) or b""
        live = LeafLive(cert, key, mode, gid)
        return Observed(live, fingerprint_of(cert or b"", key or b"", node_ca, mode, gid))

    def plan(self, observed: Observed[LeafLive], rt: Runtime) -> Change:
        live = observed.value
        assert live is not None
        reason, before = self._reason(live, rt)
        proxy = self.scope.mesh.identities[self.identity].proxy
        impact = Impact.RESTART if proxy else Impact.NONE
        spec = self.spec()
        after = {"spiffe_id": spec.spiffe_id, "ttl": self.scope.mesh.leaf_ttl(self.identity)}
        after["ttl"] = str(after["ttl"])
        if reason is None:
            return Change(self.address, Action.NOOP, "", before, before, sensitive=True)
        action = Action.CREATE if live.cert_pem is None else Action.REPLACE
        if live.cert_pem is not None and reason.startswith(("key file", LEFTOVER)):
            action = Action.UPDATE  # the pair stays; the hooks run again
        return Change(
            self.address, action, reason, before, after,
            sensitive=True, needs=(self.scope.key_need,), impact=impact,
        )  # fmt: skip

    def _reason(self, live: LeafLive, rt: Runtime) -> tuple[str | None, dict[str, Any] | None]:
        if live.cert_pem is None or live.key_pem is None:
            return ("no certificate yet" if live.cert_pem is None else "key file missing"), None
        from meshops.pki import keys_match, load_private_pem, renewal_reason
        from meshops.pki.parse import load_certificates

        try:
            chain = load_certificates(live.cert_pem, what=str(self.cert_path))
            key = load_private_pem(live.key_pem, what=str(self.key_path))
        except Exception:
            return "certificate or key unreadable", None
        leaf = chain[0]
        before = {
            "serial": format(leaf.serial_number, "x"),
            "not_after": leaf.not_valid_after_utc.isoformat(timespec="seconds"),
        }
        if not keys_match(key, leaf):
            return "key does not match certificate (interrupted write?)", before
        node_ca_path = self.scope.layout.node_ca_cert(self.scope.node)
        node_ca_pem = self.scope.state_bytes(node_ca_path)
        if node_ca_pem is None:
            return None, before  # nothing to compare against; the apply will say why
        node_ca = load_certificates(node_ca_pem, what=str(node_ca_path))[0]
        if len(chain) < 2 or chain[1] != node_ca:
            return "node CA changed: chain re-issued", before
        mesh = self.scope.mesh
        reason = renewal_reason(
            leaf,
            desired=self.spec(),
            issuer_cert=node_ca,
            renew_before=mesh.leaf_renew_before(self.identity),
            now=rt.now,
            ttl_seconds=float(mesh.leaf_ttl(self.identity)),
        )
        if reason is None and live.key_mode != self.key_mode:
            return f"key file mode {oct(live.key_mode or 0)} is not {oct(self.key_mode)}", before
        if reason is None and self.gid is not None and live.key_gid != self.gid:
            group = self.scope.mesh.tls_group(self.identity)
            return f"key file group {_group_name(live.key_gid)} is not {group}", before
        if reason is None and leftovers(self.dir):
            return f"{LEFTOVER} ({', '.join(p.name for p in leftovers(self.dir))})", before
        return reason, before

    def apply(self, change: Change, rt: Runtime) -> None:
        from meshops.pki import chain_pem, generate_key, issue_leaf, private_pem

        if change.action is Action.UPDATE and self.key_path.exists():
            if self.gid is not None:
                os.chown(self.key_path, -1, self.gid)
            os.chmod(self.key_path, self.key_mode)
            clear_leftovers(self.dir)
            return
        node_ca_cert, node_ca_key = self.scope.node_ca(rt)
        spec = self.spec()
        key = generate_key(spec.key_type)
        cert = issue_leaf(
            node_ca_cert=node_ca_cert,
            node_ca_key=node_ca_key,
            public_key=key.public_key(),
            spec=spec,
            now=rt.now,
        )
        # both at once: a proxy (or a run killed half-way) sees the old pair or the new
        # one, never a new key beside an old certificate
        self.scope.owned.write_files(
            self.dir,
            {
                "key.pem": (private_pem(key), self.key_mode),
                "cert.pem": (chain_pem(cert, node_ca_cert), 0o644),
            },
            groups={"key.pem": self.gid},
        )
        rt.shared.setdefault("renewed", set()).add(self.identity)


def _group_name(gid: int | None) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name if gid is not None else "(none)"
    except KeyError:
        return str(gid)


class FileResource(Resource[bytes]):
    """A public file whose content is known when planning (trust bundle, CRL)."""

    def __init__(
        self, address: str, path: Path, content: bytes, *, what: str, owned: Owned,
        mode: int = 0o644, impact: Impact = Impact.NONE, security: bool = False,
    ):  # fmt: skip
        self.address = address
        self.path = path
        self.owns = (path,)
        self.owned = owned
        self.security = security  # a trust bundle or CRL: goes first
        self.content = content
        self.what = what
        self.mode = mode
        self.impact = impact

    def security_first(self, change: Change) -> bool:
        return self.security

    def read(self, rt: Runtime) -> Observed[bytes]:
        data = read_bytes(self.path)
        return Observed(data, fingerprint_of(data or b""))

    def plan(self, observed: Observed[bytes], rt: Runtime) -> Change:
        from hashlib import sha256

        after = {"sha256": sha256(self.content).hexdigest()[:16], "path": str(self.path)}
        if observed.value is None:
            return Change(self.address, Action.CREATE, f"no {self.what} yet", None, after,
                          impact=self.impact)  # fmt: skip
        before = {"sha256": sha256(observed.value).hexdigest()[:16], "path": str(self.path)}
        if observed.value == self.content:
            return Change(self.address, Action.NOOP, "", before, before)
        return Change(self.address, Action.UPDATE, f"{self.what} changed", before, after,
                      impact=self.impact)  # fmt: skip

    def apply(self, change: Change, rt: Runtime) -> None:
        self.owned.write(self.path, self.content, mode=self.mode)
        rt.shared.setdefault("changed_files", set()).add(self.address)


class OutputsResource(Resource[tuple[bytes | None, bytes | None]]):
    """`outputs:` of an identity: PKCS#12 keystore and truststore, combined PEM, and
    copies in another directory, derived from the leaf and the trust bundle."""

    def __init__(self, scope: HostScope, identity: str, leaf: LeafResource, bundle: FileResource):
        self.scope = scope
        self.identity = identity
        self.leaf = leaf
        self.bundle = bundle
        self.address = f'tls.outputs["{identity}"]'
        self.depends_on = (leaf.address, bundle.address)
        outputs = scope.mesh.identities[identity].outputs
        assert outputs is not None
        self.outputs = outputs
        self.dir = scope.host_path(outputs.dir) if outputs.dir else leaf.dir
        self.owns = tuple(path for _, path in self._targets())
        self._password: bytes | None = None

    def _targets(self) -> list[tuple[str, Path]]:
        targets = []
        if self.outputs.combined_pem:
            targets.append(("combined", self.dir / "combined.pem"))
        if self.outputs.p12:
            targets.append(("p12", self.dir / "bundle.p12"))
            targets.append(("truststore", self.dir / "truststore.p12"))
        if self.outputs.dir:
            for name in ("cert.pem", "key.pem", "ca.pem"):
                targets.append((name, self.dir / name))
        return targets

    def password(self) -> bytes:
        """The PKCS#12 password: from `p12_password_file` on this host, else
        `p12_password`, else Java's default (never shown in a plan or log)."""
        if self._password is None:
            self._password = p12_password(self.scope, self.identity)
        return self._password

    def read(self, rt: Runtime) -> Observed[tuple[bytes | None, bytes | None]]:
        present = [read_bytes(path) for _, path in self._targets()]
        return Observed(None, fingerprint_of(*[p or b"" for p in present]))

    def plan(self, observed: Observed[Any], rt: Runtime) -> Change:
        after = {"files": [str(p) for _, p in self._targets()]}
        missing = [str(p) for _, p in self._targets() if not p.exists()]
        if len(missing) == len(self._targets()):
            return Change(self.address, Action.CREATE, "new output files", None, after,
                          sensitive=True)  # fmt: skip
        followed = [
            r.address for r in (self.leaf, self.bundle)
            if (c := rt.planned.get(r.address)) is not None and not c.is_noop
        ]  # fmt: skip
        if followed:
            return Change(self.address, Action.UPDATE, f"follows {', '.join(followed)}", None,
                          after, sensitive=True)  # fmt: skip
        if missing:
            return Change(self.address, Action.UPDATE, f"missing {', '.join(missing)}", None,
                          after, sensitive=True)  # fmt: skip
        stale = self._stale()
        if stale is None and self.dir != self.leaf.dir and leftovers(self.dir):
            stale = f"{self.dir} (an interrupted apply left files behind)"
        if stale:
            return Change(self.address, Action.UPDATE, f"{stale} out of date", None, after,
                          sensitive=True)  # fmt: skip
        return Change(self.address, Action.NOOP, "", after, after, sensitive=True)

    def _stale(self) -> str | None:
        cert = read_bytes(self.leaf.cert_path) or b""
        key = read_bytes(self.leaf.key_path) or b""
        plain = {"combined": cert + key, "cert.pem": cert, "key.pem": key,
                 "ca.pem": self.bundle.content}  # fmt: skip
        for name, path in self._targets():
            data = read_bytes(path) or b""
            if name in plain and data != plain[name]:
                return str(path)
            if name == "p12" and _p12_certs(data, self.password()) != _pem_certs(cert):
                return str(path)
            if name == "truststore" and (
                _p12_certs(data, self.password()) != _pem_certs(self.bundle.content)
            ):
                return str(path)
        return None

    def apply(self, change: Change, rt: Runtime) -> None:
        from meshops.pki import java_truststore, load_private_pem, pkcs12
        from meshops.pki.parse import load_certificates

        cert = self.leaf.cert_path.read_bytes()
        key = self.leaf.key_path.read_bytes()
        bundle = self.bundle.content
        files: dict[str, tuple[bytes, int]] = {}
        secret = self.leaf.key_mode  # 0600, or 0640 with the identity's tls.group
        for name, path in self._targets():
            if name == "combined":
                files[path.name] = (cert + key, secret)
            elif name == "p12":
                chain = load_certificates(cert)
                data = pkcs12(
                    name=self.identity, key=load_private_pem(key), cert=chain[0],
                    chain=chain[1:], password=self.password(),
                )  # fmt: skip
                files[path.name] = (data, secret)
            elif name == "truststore":
                roots = load_certificates(bundle, what="trust bundle")
                files[path.name] = (java_truststore(roots, password=self.password()), 0o644)
            elif name == "key.pem":
                files[path.name] = (key, secret)
            elif name == "cert.pem":
                files[path.name] = (cert, 0o644)
            elif name == "ca.pem":
                files[path.name] = (bundle, 0o644)
        groups = {name: self.leaf.gid for name, (_, mode) in files.items() if mode == secret}
        # together where the directory is meshops' alone: a consumer never sees a key
        # and cert apart; file by file in a directory shared with others (/etc/ssl)
        self.scope.owned.write_files(self.dir, files, groups=groups)
        clear_leftovers(self.dir)


def p12_password(scope: HostScope, identity: str) -> bytes:
    """`outputs.p12_password_file` (read on this host, under --root), else
    `outputs.p12_password`, else DEFAULT_P12_PASSWORD."""
    from meshops.errors import MeshError
    from meshops.model.mesh import DEFAULT_P12_PASSWORD

    outputs = scope.mesh.identities[identity].outputs
    assert outputs is not None
    if outputs.p12_password_file is None:
        return (outputs.p12_password or DEFAULT_P12_PASSWORD).encode()
    path = scope.host_path(outputs.p12_password_file)
    where = f"identities.{identity}.outputs.p12_password_file"
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise MeshError(
            f"{where}: cannot read {path}: {exc.strerror}",
            hint="create it on this host (mode 0600) holding the PKCS#12 password on one line",
        ) from None
    password = text.splitlines()[0] if text.strip() else b""
    if not password:
        raise MeshError(f"{where}: {path} is empty", hint="write the password on its first line")
    return password


def _pem_certs(data: bytes) -> list[bytes]:
    """DER of each certificate in PEM `data`, in order."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from meshops.pki.parse import load_certificates

    try:
        return [c.public_bytes(Encoding.DER) for c in load_certificates(data)]
    except Exception:
        return []


def _p12_certs(data: bytes, password: bytes) -> list[bytes]:
    """DER of the certificates in a PKCS#12 file, the key's own first; empty when it
    does not open with `password` (so a changed password rewrites it)."""
    if not data:
        return []
    try:
        from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

        loaded = pkcs12.load_pkcs12(data, password)
    except Exception:
        return []
    certs = [loaded.cert] if loaded.cert else []
    return [c.certificate.public_bytes(Encoding.DER) for c in [*certs, *loaded.additional_certs]]
