"""`review` of state/: every change is repo apply's signed output, or an error naming
the file (pure: two snapshots in, a `StateReview` out).

When state/ differs between base and head, head's state/ must verify as meshops wrote
it: signed by a root trusted at base (or one that root handed over to), every file
listed in the manifest and matching, nothing else, no symlink, a version above base's,
transitions only appended, and consistent with mesh.yaml at head (a node CA and a
WireGuard key for exactly its nodes, each node CA chained to a root and constrained to
that node's names, pinned addresses kept, removed or re-keyed nodes revoked). What
verifies is summarised in words; anything else is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from meshops.errors import MeshError
from meshops.gitops.revisions import Snapshot
from meshops.trust.manifest import MANIFEST, UNLISTED, Manifest
from meshops.trust.transitions import TRANSITIONS
from meshops.trust.verify import (
    ROOT_CRT,
    NotRegular,
    StateEntry,
    StateRefused,
    Trust,
    check_files,
    check_roots,
    check_signature,
)

if TYPE_CHECKING:
    from meshops.enroll.request import Proven
    from meshops.model.mesh import Mesh
    from meshops.resources.repo.state import StateDoc

SHOWN = 5  # node names listed per summary line
_APPLY = "run `meshops apply` at repo scope (with the root identity) and commit state/"


@dataclass(frozen=True)
class StateError:
    file: str | None  # "state/ca/root.crt"
    message: str


@dataclass(frozen=True)
class StateReview:
    changed: tuple[str, ...] = ()  # state/ paths that differ between base and head
    errors: tuple[StateError, ...] = ()
    summary: tuple[str, ...] = ()  # what the verified change does, in words
    base_version: int | None = None
    head_version: int | None = None
    signer: str | None = None

    @property
    def verified(self) -> bool:
        return bool(self.changed) and not self.errors


def review_state(
    base: Snapshot,
    head: Snapshot,
    mesh: Mesh | None,
    now: datetime,
    enrolled: Mapping[str, Proven] | None = None,
) -> StateReview:
    """Check and describe the change of state/ from `base` to `head` (`enrolled`: the
    requests at head that hold, by node: what host-held nodes' keys must be)."""
    changed = _changed(base, head)
    if not changed:
        return StateReview()
    base_manifest = _manifest(base.state)
    base_version = base_manifest.version if base_manifest else None
    base_roots = _root_fingerprints(base.state)
    entries: dict[str, StateEntry] = {**head.state}
    entries.update({p: NotRegular(k) for p, k in head.irregular.items()})
    anchors = frozenset(base_roots) if base_roots else None  # a new mesh: its own roots
    try:
        manifest, roots, trusted, chain = check_signature(entries, Trust(anchors))
    except StateRefused as exc:
        errors = [StateError(exc.file, exc.message)]
        errors += [_error(p, e) for p, e in _irregular(head) if p != exc.file]
        return StateReview(changed, tuple(errors), (), base_version)
    errors = []
    replaced = base.state.get(MANIFEST) != head.state.get(MANIFEST)  # else: files say it
    if base_manifest is not None and replaced and manifest.version <= base_manifest.version:
        errors.append(
            StateError(
                f"state/{MANIFEST}",
                f"state/{MANIFEST}: version {manifest.version} does not grow from version "
                f"{base_manifest.version} at base: an older signed manifest (a rollback) or a "
                "replayed one",
            )
        )
    for path in sorted((set(entries) | set(manifest.files)) - UNLISTED):
        try:
            check_files(manifest, entries, [path])
        except StateRefused as exc:
            errors.append(StateError(exc.file, exc.message))
    try:
        check_roots(roots, trusted, chain)
    except StateRefused as exc:
        errors.append(StateError(exc.file, exc.message))
    errors += _appended_only(base.state, head.state)
    if not errors and mesh is not None:
        errors += _consistency(base, head, mesh, roots, now, enrolled or {})
    summary = () if errors else tuple(_summary(base, head, manifest, base_manifest, changed))
    return StateReview(
        changed, tuple(errors), summary, base_version, manifest.version, manifest.signer
    )


def _changed(base: Snapshot, head: Snapshot) -> tuple[str, ...]:
    paths = set(base.state) | set(head.state) | set(base.irregular) | set(head.irregular)
    return tuple(
        f"state/{p}"
        for p in sorted(paths)
        if base.state.get(p) != head.state.get(p) or base.irregular.get(p) != head.irregular.get(p)
    )


def _irregular(head: Snapshot) -> Iterable[tuple[str, NotRegular]]:
    return ((f"state/{p}", NotRegular(k)) for p, k in sorted(head.irregular.items()))


def _error(file: str, entry: NotRegular) -> StateError:
    return StateError(
        file, f"{file} is {entry.kind}, not a regular file (changed outside meshops apply)"
    )


def _manifest(state: Mapping[str, bytes]) -> Manifest | None:
    data = state.get(MANIFEST)
    if data is None:
        return None
    try:
        return Manifest.parse(data)
    except MeshError:
        return None


def _root_fingerprints(state: Mapping[str, bytes]) -> list[str]:
    from meshops.pki.parse import cert_fingerprint, load_certificates

    data = state.get(ROOT_CRT)
    if not data:
        return []
    try:
        return [cert_fingerprint(c) for c in load_certificates(data)]
    except MeshError:
        return []


def _appended_only(base: Mapping[str, bytes], head: Mapping[str, bytes]) -> list[StateError]:
    """Root transitions are only ever appended: base's entries lead head's, unchanged."""
    from meshops.trust import transitions

    if TRANSITIONS not in base:
        return []
    file = f"state/{TRANSITIONS}"
    try:
        before = transitions.parse(base[TRANSITIONS])
        after = transitions.parse(head.get(TRANSITIONS, b"transitions: []\n"))
    except MeshError as exc:
        return [StateError(file, exc.message)]
    if after[: len(before)] != before:
        return [
            StateError(
                file,
                f"{file}: root transitions were removed or rewritten; they are only ever appended",
            )
        ]
    return []


# -- consistency with mesh.yaml at head ------------------------------------------------------


def _state_doc(data: bytes | None) -> StateDoc | None:
    from meshops.resources.repo.state import StateDoc

    if data is None:
        return None
    try:
        return StateDoc.parse(data, "state/state.yaml")
    except MeshError:
        return None


def _consistency(
    base: Snapshot,
    head: Snapshot,
    mesh: Mesh,
    roots: tuple[str, ...],
    now: datetime,
    enrolled: Mapping[str, Proven],
) -> list[StateError]:
    from meshops.model.types import SEALED_SUFFIX

    doc = _state_doc(head.state.get("state.yaml"))
    if doc is None:
        return [StateError("state/state.yaml", "state/state.yaml is missing or unreadable")]
    errors: list[StateError] = []
    suffix = SEALED_SUFFIX[mesh.secrets.format]
    wanted = set(mesh.nodes)
    complete = {
        n
        for n, r in doc.nodes.items()
        if r.ca and (n not in wanted or not mesh.wireguard_on(n) or (r.wireguard and r.address))
    }
    for node in sorted(wanted - complete):
        errors.append(
            StateError(
                "state/state.yaml",
                f"node {node} is in mesh.yaml at head, "
                f"but state/ has no node CA and WireGuard key for it ({_APPLY})",
            )
        )
    for node in sorted({n for n, r in doc.nodes.items() if r.ca or r.wireguard} - wanted):
        errors.append(
            StateError(
                "state/state.yaml",
                f"node {node} is not in mesh.yaml at "
                f"head, but state/state.yaml still records its keys ({_APPLY})",
            )
        )
    for path in sorted(head.state):
        parts = path.split("/")
        if parts[0] == "nodes" and len(parts) == 3 and parts[1] not in wanted:
            errors.append(
                StateError(
                    f"state/{path}",
                    f"state/{path} belongs to node "
                    f"{parts[1]}, which is not in mesh.yaml at head ({_APPLY})",
                )
            )
    root_certs = _certs(head.state.get(ROOT_CRT))
    for node in sorted(wanted & complete):
        errors += _node_consistency(head, mesh, doc, node, suffix, root_certs)
        if mesh.host_held(node) and not errors:
            errors += _enrolled_keys(head, doc, node, suffix, enrolled.get(node))
    errors += _addresses(mesh, doc)
    errors += _revocations(base, head, mesh, doc, root_certs, now)
    return errors


def _certs(data: bytes | None) -> list[Any]:
    from meshops.pki.parse import load_certificates

    try:
        return load_certificates(data) if data else []
    except MeshError:
        return []


def _node_consistency(
    head: Snapshot, mesh: Mesh, doc: StateDoc, node: str, suffix: str, roots: list[Any]
) -> list[StateError]:
    from ipaddress import ip_address

    from meshops.pki import NodeCASpec
    from meshops.pki.parse import cert_fingerprint
    from meshops.pki.renewal import constraint_names, issued_by

    record = doc.nodes[node]
    assert record.ca is not None
    file = f"state/nodes/{node}/ca.crt"
    keys = [f"ca.key{suffix}"] + ([f"wg.key{suffix}"] if mesh.wireguard_on(node) else [])
    if mesh.host_held(node):
        keys = []  # its keys never enter state/ (see `_enrolled_keys`)
    for name in (*keys, "crl.pem", "ca.crt"):
        if f"nodes/{node}/{name}" not in head.state:
            return [
                StateError(
                    f"state/nodes/{node}/{name}", f"state/nodes/{node}/{name} is missing ({_APPLY})"
                )
            ]
    certs = _certs(head.state[f"nodes/{node}/ca.crt"])
    if not certs or cert_fingerprint(certs[0]) != record.ca.fingerprint:
        return [StateError(file, f"{file} is not the node CA state/state.yaml records for {node}")]
    cert = certs[0]
    if not any(issued_by(cert, root) for root in roots):
        return [StateError(file, f"{file} is not signed by a root in state/{ROOT_CRT}")]
    if record.address:
        overlay = [ip_address(record.address)]
        overlay += [ip_address(record.address6)] if record.address6 else []
    else:  # a certificates-only node: its published addresses (see RepoScope.overlay)
        overlay = list(mesh.underlay_ips(node))
    spec = NodeCASpec.for_node(mesh, node, overlay=overlay)
    have, want = set(constraint_names(cert)), set(spec.constraint_names())
    if have != want:
        extra = ", ".join(sorted(have - want)) or "-"
        missing = ", ".join(sorted(want - have)) or "-"
        return [
            StateError(
                file,
                f"{file}: its name constraints are not node {node}'s names at "
                f"head (not its own: {extra}; missing: {missing}) ({_APPLY})",
            )
        ]
    return []


def _enrolled_keys(
    head: Snapshot, doc: StateDoc, node: str, suffix: str, proof: Proven | None
) -> list[StateError]:
    """A host-held node: no sealed key of it in state/, and its node CA and WireGuard key
    are those of its request at head."""
    from meshops.enroll.checks import request_path
    from meshops.pki.keys import cert_public_key, public_fingerprint

    for name in (f"ca.key{suffix}", f"wg.key{suffix}"):
        path = f"nodes/{node}/{name}"
        if path in head.state:
            return [
                StateError(
                    f"state/{path}",
                    f"state/{path}: node {node} holds its keys on the "
                    f"host (keys: host), yet a sealed key of it is in state/ ({_APPLY})",
                )
            ]
    if proof is None:
        return []  # no request that holds: reported with the enrolments
    record = doc.nodes[node]
    request = request_path(node)
    cert = _certs(head.state.get(f"nodes/{node}/ca.crt"))[0]
    if public_fingerprint(cert_public_key(cert)) != proof.ca_key:
        file = f"state/nodes/{node}/ca.crt"
        return [
            StateError(file, f"{file} does not certify the node CA key of {request} ({_APPLY})")
        ]
    want = proof.wireguard_key
    have = record.wireguard.public_key if record.wireguard else None
    if want is not None and have is not None and have != want:
        return [
            StateError(
                "state/state.yaml",
                f"state/state.yaml gives node {node} another "
                f"WireGuard key than {request} ({_APPLY})",
            )
        ]
    return []


def _addresses(mesh: Mesh, doc: StateDoc) -> list[StateError]:
    errors = []
    seen: dict[str, str] = {}
    for node in sorted(mesh.nodes):
        record = doc.nodes.get(node)
        if record is None or not record.address:
            continue
        pinned = mesh.nodes[node].address
        if pinned is not None and str(pinned) != record.address:
            errors.append(
                StateError(
                    "state/state.yaml",
                    f"state/state.yaml gives node {node} "
                    f"the address {record.address}, mesh.yaml pins {pinned}",
                )
            )
        if record.address in seen:
            errors.append(
                StateError(
                    "state/state.yaml",
                    f"state/state.yaml gives {node} and "
                    f"{seen[record.address]} the same address {record.address}",
                )
            )
        seen[record.address] = node
    return errors


def _revocations(
    base: Snapshot, head: Snapshot, mesh: Mesh, doc: StateDoc, roots: list[Any], now: datetime
) -> list[StateError]:
    """A removed or re-keyed node's old node CA is on head's CRL (until it expires), and
    every CRL in crl.pem is signed by a root in root.crt."""
    from meshops.pki.parse import load_crls

    file = "state/ca/crl.pem"
    try:
        crls = load_crls(head.state.get("ca/crl.pem", b""))
    except MeshError:
        crls = []
    if not crls:
        return [StateError(file, f"{file} is missing or unreadable ({_APPLY})")]
    keys = [root.public_key() for root in roots]
    if not all(any(_signed_by(crl, key) for key in keys) for crl in crls):
        return [StateError(file, f"{file} holds a CRL no root in state/{ROOT_CRT} signed")]
    listed = {format(r.serial_number, "x") for crl in crls for r in crl}
    before = _state_doc(base.state.get("state.yaml"))
    errors = []
    for node, old in sorted((before.nodes if before else {}).items()):
        if old.ca is None or datetime.fromisoformat(old.ca.not_after) <= now:
            continue
        new = doc.nodes.get(node)
        gone = node not in mesh.nodes
        rekeyed = new is not None and new.ca is not None and _rekeyed(old.ca, new.ca)
        if (gone or rekeyed) and old.ca.serial.lstrip("0") not in {s.lstrip("0") for s in listed}:
            why = "removed" if gone else "re-keyed (its recipient or enrolled key changed)"
            errors.append(
                StateError(
                    file,
                    f"{file} does not revoke the node CA of {why} node "
                    f"{node} (serial {old.ca.serial}) ({_APPLY})",
                )
            )
    return errors


def _rekeyed(old: Any, new: Any) -> bool:
    """A node CA for another key holder: a new recipient, or a new enrolled key (a
    rotation, or a move between sealed and host-held keys)."""
    if old.recipients != new.recipients:
        return True
    return bool(old.public_key and new.public_key and old.public_key != new.public_key and
                not new.recipients)  # fmt: skip


def _signed_by(crl: Any, key: Any) -> bool:
    try:
        return bool(crl.is_signature_valid(key))
    except Exception:  # a key type the CRL was not signed with
        return False


# -- the summary in words ----------------------------------------------------------------------


def _names(nodes: list[str]) -> str:
    shown = ", ".join(nodes[:SHOWN])
    return shown + (f", … +{len(nodes) - SHOWN} more" if len(nodes) > SHOWN else "")


def _summary(
    base: Snapshot,
    head: Snapshot,
    manifest: Manifest,
    base_manifest: Manifest | None,
    changed: tuple[str, ...],
) -> list[str]:
    out = []
    version = (
        f"version {base_manifest.version} -> {manifest.version}"
        if base_manifest
        else (f"version {manifest.version}, the first signed manifest")
    )
    out.append(
        f"signed by root {manifest.signer[:19]}… ({version}); {len(changed)} file(s) changed"
    )
    out += _root_lines(base.state, head.state)
    before = _state_doc(base.state.get("state.yaml"))
    after = _state_doc(head.state.get("state.yaml"))
    if after is not None:
        out += _rotation_lines(before, after)
        out += _node_lines(before, after)
        out += _crl_lines(before, after)
    return out


def _root_lines(base: Mapping[str, bytes], head: Mapping[str, bytes]) -> list[str]:
    from meshops.trust import transitions

    old, new = _root_fingerprints(base), _root_fingerprints(head)
    chain = transitions.parse(head[TRANSITIONS]) if TRANSITIONS in head else []
    lines = []
    for root in new:
        if root in old:
            continue
        given = [e.from_fp for e in chain if e.to_fp == root]
        how = f" (handed over by root {given[0][:19]}…)" if given else " (the mesh's first root)"
        lines.append(f"root {root[:19]}… joins the trust bundle{how}")
    lines += [f"root {r[:19]}… leaves the trust bundle" for r in old if r not in new]
    return lines


def _rotation_lines(before: StateDoc | None, after: StateDoc) -> list[str]:
    old = before.rotation if before else None
    new = after.rotation
    if new is None:
        return ["root rotation finished: the old root is retired"] if old is not None else []
    if old is not None and old.phase == new.phase:
        return []
    phase = {
        "staged": f"a new root {new.next_fingerprint[:19]}… is staged; the next apply adds "
        "it to the trust bundle (rotation 1/3)",
        "added": "both roots are trusted; node CAs are signed by the new one from now on "
        "(rotation 1/3 done)",
        "reissued": "node CAs are re-issued under the new root (rotation 2/3 done)",
    }.get(new.phase, new.phase)
    return [f"root rotation: {phase} ({new.reason})"]


def _node_lines(before: StateDoc | None, after: StateDoc) -> list[str]:
    old = before.nodes if before else {}
    issued, revoked, wg = [], [], []
    reissued: dict[str, list[str]] = {}
    addresses = []
    for node in sorted(set(old) | set(after.nodes)):
        a, b = old.get(node), after.nodes.get(node)
        a_ca, b_ca = (a.ca if a else None), (b.ca if b else None)
        if b_ca is not None and a_ca is None:
            issued.append(node)
        elif a_ca is not None and b_ca is None:
            revoked.append(node)
        elif a_ca is not None and b_ca is not None and a_ca.fingerprint != b_ca.fingerprint:
            reissued.setdefault(_why_reissued(a_ca, b_ca), []).append(node)
        a_wg = a.wireguard.public_key if a and a.wireguard else None
        b_wg = b.wireguard.public_key if b and b.wireguard else None
        if a_wg != b_wg and b_wg is not None:
            wg.append(node)
        a_ip = a.address if a else None
        b_ip = b.address if b else None
        if a_ip != b_ip:
            addresses.append(
                f"{node} {b_ip}"
                if a_ip is None
                else f"{node} released {a_ip}"
                if b_ip is None
                else f"{node} {a_ip} -> {b_ip}"
            )
    lines = []
    if issued:
        lines.append(f"node CA issued for {len(issued)} node(s): {_names(issued)}")
    for why, nodes in sorted(reissued.items()):
        lines.append(f"node CA re-issued ({why}) for {len(nodes)} node(s): {_names(nodes)}")
    if revoked:
        lines.append(f"node CA removed and revoked for {len(revoked)} node(s): {_names(revoked)}")
    if wg:
        lines.append(f"WireGuard key new or changed for {len(wg)} node(s): {_names(wg)}")
    if addresses:
        lines.append(f"addresses: {_names(addresses)}")
    return lines


def _why_reissued(old: Any, new: Any) -> str:
    if old.issuer != new.issuer:
        return "under a new root"
    if old.recipients != new.recipients:
        if not new.recipients:
            return "for the key enrolled from the host; the sealed one is revoked"
        return "re-keyed: the node's recipient changed; the old one is revoked"
    if old.public_key != new.public_key and old.public_key and not new.recipients:
        return "for the host's new key (rotation); the old one is revoked"
    if old.names != new.names:
        return "its names changed"
    if old.key_type != new.key_type:
        return f"key type {old.key_type} -> {new.key_type}"
    return "renewed"


def _crl_lines(before: StateDoc | None, after: StateDoc) -> list[str]:
    old = before.crl if before else None
    new = after.crl
    if old is not None and (old.number, old.next_update) == (new.number, new.next_update):
        return []
    was = f"number {old.number} -> {new.number}" if old else f"number {new.number}"
    return [
        f"CRL re-signed ({was}): {len(new.revoked)} node CA(s) revoked, next update "
        f"{new.next_update or '-'}"
    ]
