"""`state/state.yaml`: the reviewable record of public facts written by repo-scope apply.

It holds no secret. Besides what reviewers want to see (addresses, public keys,
fingerprints, serials, expiry dates), it records the sha256 of every sealed file it
vouches for: a sealed file whose hash differs was torn by an interrupted apply or edited
by hand, and is replaced rather than trusted.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshops.errors import MeshError
from meshops.providers.files import read_private, write_atomic

STATE_VERSION = 1
HEADER = (
    "# Written by `meshops apply`: public facts only (no secret is ever stored here).\n"
    "# Review changes to it in pull requests; do not edit it by hand.\n"
)


@dataclass
class CertRecord:
    fingerprint: str
    serial: str
    not_after: str
    key_type: str = ""
    key_sha256: str = ""  # sha256 of the sealed key file
    recipients: str = ""  # fingerprint of the recipients the key is sealed to
    names: str = ""  # fingerprint of the names a node CA is constrained to
    issuer: str = ""  # fingerprint of the issuing root
    crl_sha256: str = ""  # sha256 of the (empty) CRL a node CA publishes beside itself
    public_key: str = ""  # sha256 of a node CA's SubjectPublicKeyInfo: the key it certifies


@dataclass
class WireGuardRecord:
    public_key: str
    key_sha256: str = ""  # sha256 of the sealed key file ("" when the host holds the key)
    recipients: str = ""


@dataclass
class NodeRecord:
    address: str | None = None
    address6: str | None = None
    wireguard: WireGuardRecord | None = None
    ca: CertRecord | None = None
    # keys this node enrolled or held before a rotation or a move to host-held keys
    # ("wg:<base64>", "ca:sha256:<hex>"): a retired key never enrols again
    retired: list[str] = field(default_factory=list)

    def retire(self, key: str) -> None:
        if key not in self.retired:
            self.retired.append(key)


@dataclass
class Revoked:
    node: str
    serial: str
    revoked_at: str
    not_after: str  # the revoked cert's expiry: the entry can be dropped after it
    issuer: str = ""  # fingerprint of the root that signed it ("" before rotations)


REVOKED_KEYS = ("node", "serial", "revoked_at", "not_after")  # always written


@dataclass
class CRLRecord:
    number: int = 0
    next_update: str = ""
    # every node CA that must be on the CRL; an entry is added when its node CA is
    # deleted or superseded, before crl.pem is re-signed, so an apply interrupted in
    # between still revokes it on the next run
    revoked: list[Revoked] = field(default_factory=list)

    def revoke(self, entry: Revoked) -> None:
        """Add `entry` unless its serial is already listed."""
        if all(r.serial != entry.serial for r in self.revoked):
            self.revoked.append(entry)


@dataclass
class Rotation:
    """A root rotation under way (see `meshops.resources.repo.rotation`).

    `phase`: "staged" (a new root waits in root.next.*), "added" (both roots trusted,
    new node CAs signed by the new one), "reissued" (node CAs re-issued under it).
    """

    phase: str
    entered_at: str  # when the phase began: the next one waits `hold` seconds
    hold: float  # seconds between phases, so every host pulls each trust bundle
    reason: str
    next_fingerprint: str = ""  # the new root
    next_key_sha256: str = ""  # its sealed key, as staged
    previous_key_sha256: str = ""  # the old root's sealed key, kept until retired


@dataclass
class Released:
    node: str
    at: str
    until: str


@dataclass
class StateDoc:
    mesh: str = ""
    roots: list[CertRecord] = field(default_factory=list)  # old first, signing root last
    rotation: Rotation | None = None
    crl: CRLRecord = field(default_factory=CRLRecord)
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    released: dict[str, Released] = field(default_factory=dict)  # address -> release
    applied_plan: str = ""

    def node(self, name: str) -> NodeRecord:
        return self.nodes.setdefault(name, NodeRecord())

    # -- serialisation ------------------------------------------------------------

    def to_data(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "mesh": self.mesh,
            "ca": self._ca_data(),
            "crl": {
                "number": self.crl.number,
                "next_update": self.crl.next_update,
                "revoked": [_clean(vars(r), keep=REVOKED_KEYS) for r in self.crl.revoked],
            },
            "nodes": {
                name: _node_data(self.nodes[name])
                for name in sorted(self.nodes)
                if _node_data(self.nodes[name])
            },
            "released": {ip: vars(self.released[ip]) for ip in sorted(self.released)},
            "applied_plan": self.applied_plan,
        }

    def _ca_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"roots": [_clean(vars(r)) for r in self.roots]}
        if self.rotation is not None:
            out["rotation"] = _clean(vars(self.rotation))
        return out

    def dump(self) -> str:
        from meshops.resources.repo.state_text import emit

        return HEADER + emit(self.to_data())

    @classmethod
    def from_data(cls, data: Any, where: str) -> StateDoc:
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise MeshError(f"{where}: not a meshops state file of version {STATE_VERSION}")
        try:
            nodes = {}
            for name, raw in (data.get("nodes") or {}).items():
                wg = raw.get("wireguard")
                ca = raw.get("ca")
                nodes[name] = NodeRecord(
                    address=raw.get("address"),
                    address6=raw.get("address6"),
                    wireguard=WireGuardRecord(**wg) if wg else None,
                    ca=CertRecord(**ca) if ca else None,
                    retired=[str(k) for k in raw.get("retired") or []],
                )
            crl = data.get("crl") or {}
            ca = data.get("ca") or {}
            rotation = ca.get("rotation")
            return cls(
                mesh=data.get("mesh") or "",
                roots=[CertRecord(**r) for r in ca.get("roots") or []],
                rotation=Rotation(**rotation) if rotation else None,
                crl=CRLRecord(
                    number=int(crl.get("number") or 0),
                    next_update=crl.get("next_update") or "",
                    revoked=[Revoked(**r) for r in crl.get("revoked") or []],
                ),
                nodes=nodes,
                released={ip: Released(**r) for ip, r in (data.get("released") or {}).items()},
                applied_plan=data.get("applied_plan") or "",
            )
        except (TypeError, AttributeError, ValueError) as exc:
            raise MeshError(f"{where}: malformed state file: {exc}") from None

    @classmethod
    def parse(cls, text: bytes | str, where: str) -> StateDoc:
        from meshops.resources.repo.state_text import read

        try:
            decoded = text.decode("utf-8") if isinstance(text, bytes) else text
        except UnicodeDecodeError:
            decoded = None
        data = read(decoded) if decoded is not None else None
        if data is None:  # not as meshops writes it: what a YAML loader makes of it
            import yaml

            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            try:
                data = yaml.load(text, Loader=loader)
            except yaml.YAMLError as exc:
                raise MeshError(f"{where}: cannot parse state file: {exc}") from None
        return cls.from_data(data, where)


def _clean(record: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k in keep or v not in ("", None)}


def _node_data(node: NodeRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if node.address:
        out["address"] = node.address
    if node.address6:
        out["address6"] = node.address6
    if node.wireguard:
        out["wireguard"] = _clean(vars(node.wireguard))
    if node.ca:
        out["ca"] = _clean(vars(node.ca))
    if node.retired:
        out["retired"] = list(node.retired)
    return out


@dataclass(frozen=True)
class StateLayout:
    """Where repo-scope state lives (docs/layout.md)."""

    repo_dir: Path
    suffix: str = ".age"  # sealed file suffix: ".age" or the sops one
    # where parse caches live (default: the checkout's .git/, if any)
    cache_dir: Path | None = None

    @functools.cached_property
    def dir(self) -> Path:
        return self.repo_dir / "state"

    @functools.cached_property
    def nodes_dir(self) -> Path:
        return self.dir / "nodes"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.yaml"

    @property
    def root_cert(self) -> Path:
        return self.dir / "ca" / "root.crt"

    @property
    def root_key(self) -> Path:
        return self.dir / "ca" / f"root.key{self.suffix}"

    @property
    def crl(self) -> Path:
        return self.dir / "ca" / "crl.pem"

    def node_dir(self, node: str) -> Path:
        return self.nodes_dir / node

    def node_ca_cert(self, node: str) -> Path:
        return self.node_dir(node) / "ca.crt"

    def node_ca_key(self, node: str) -> Path:
        return self.node_dir(node) / f"ca.key{self.suffix}"

    def node_crl(self, node: str) -> Path:
        """An empty CRL signed by the node CA, valid for its lifetime: verifiers that
        check CRLs along the whole chain (nginx) need one from every CA in it."""
        return self.node_dir(node) / "crl.pem"

    def node_crl_name(self, node: str) -> str:
        """`node_crl(node)` as a path under state/, without building a Path (a host
        reads a thousand of them on every run, from the verified files)."""
        return f"nodes/{node}/crl.pem"

    @property
    def root_next_cert(self) -> Path:
        """A root staged by `meshops ca rotate|import`, rolled out by the next apply."""
        return self.dir / "ca" / "root.next.crt"

    @property
    def root_next_key(self) -> Path:
        return self.dir / "ca" / f"root.next.key{self.suffix}"

    @property
    def root_previous_key(self) -> Path:
        """The old root's key during a rotation: it still signs the old root's CRL."""
        return self.dir / "ca" / f"root.previous.key{self.suffix}"

    def wg_key(self, node: str) -> Path:
        return self.node_dir(node) / f"wg.key{self.suffix}"

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.repo_dir))


def load_state(layout: StateLayout) -> StateDoc:
    try:
        text = layout.state_file.read_bytes()
    except FileNotFoundError:
        return StateDoc()
    return state_from(layout, text)


def state_from(layout: StateLayout, text: bytes) -> StateDoc:
    """state.yaml's record from its bytes (read and checked by the caller), through the
    parse cache."""
    where = layout.relative(layout.state_file)
    digest = hashlib.sha256(text).hexdigest()
    cached = _read_cache(layout, digest)
    if cached is not None:
        return StateDoc.from_data(cached, where)
    doc = StateDoc.parse(text, where)
    _write_cache(layout, digest, doc.to_data())
    return doc


def save_state(layout: StateLayout, doc: StateDoc) -> None:
    text = doc.dump().encode()
    write_atomic(layout.state_file, text, mode=0o644)
    _write_cache(layout, hashlib.sha256(text).hexdigest(), doc.to_data())


# -- parse cache ---------------------------------------------------------------------
#
# Parsing YAML in Python dominates a no-op plan on a big mesh (about a second for
# 1,000 nodes), so the parsed record is cached as JSON under .git/, keyed by the
# sha256 of state.yaml's bytes and by meshops' code (`providers.cache.code_stamp`): any
# edit, checkout, merge or upgrade misses the cache. It holds the same public facts as
# state.yaml; losing it only costs time. A cache file someone else could have written
# (`providers.files.read_private`) is not read: a host would take it as verified.

CACHE_NAME = "meshops-state-cache.json"


def parsed_cached(
    layout: StateLayout, name: str, data: bytes, parse: Callable[[bytes], Any]
) -> Any:
    """`parse(data)`, or its JSON-able result cached under .git/ keyed by sha256(data)
    (`name` tells the caches apart): for files each plan reads but rarely change."""
    digest = hashlib.sha256(data).hexdigest()
    cached = _read_cache(layout, digest, name)
    if cached is not None:
        return cached
    result = parse(data)
    _write_cache(layout, digest, result, name)
    return result


def local_cache(layout: StateLayout, name: str, key: str) -> Any:
    """What `store_local_cache` kept under `name` with this `key`, or None."""
    return _read_cache(layout, key, name)


def store_local_cache(layout: StateLayout, name: str, key: str, data: Any) -> None:
    """Keep JSON-able `data` under .git/ (this checkout's own, never committed)."""
    _write_cache(layout, key, data, name)


def _cache_path(layout: StateLayout, name: str) -> Path | None:
    if layout.cache_dir is not None:
        return layout.cache_dir / name
    git_dir = layout.repo_dir / ".git"
    return git_dir / name if git_dir.is_dir() else None


def _read_cache(layout: StateLayout, digest: str, name: str = CACHE_NAME) -> Any:
    path = _cache_path(layout, name)
    if path is None:
        return None
    from meshops.providers.cache import code_stamp

    data = read_private(path)
    try:
        cached = json.loads(data) if data is not None else None
    except ValueError:
        return None
    if not isinstance(cached, dict) or cached.get("sha256") != digest:
        return None
    return cached.get("data") if cached.get("code") == code_stamp() else None


def _write_cache(layout: StateLayout, digest: str, data: Any, name: str = CACHE_NAME) -> None:
    path = _cache_path(layout, name)
    if path is None:
        return
    from meshops.providers.cache import code_stamp

    body = json.dumps({"sha256": digest, "code": code_stamp(), "data": data}, separators=(",", ":"))
    with contextlib.suppress(MeshError):  # a read-only checkout just goes uncached
        # only where the directory is: a host's plan before its first apply writes nothing
        write_atomic(path, body.encode(), mode=0o600, fsync=False, make_dirs=False)
