"""`meshops status` at repo scope: the roots, a rotation under way, every node CA's
expiry and renewal time, and the CRL, from state.yaml's records (no key is opened, no
certificate parsed)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from meshops.resources.repo.scope import RepoScope
from meshops.resources.repo.state import CertRecord

FORMAT_VERSION = "1.0"

# what the next apply does in each rotation phase (see resources/repo/rotation.py)
NEXT_PHASE = {
    "staged": "add the new root to the trust bundle (1/3)",
    "added": "re-issue node CAs under the new root (2/3)",
    "reissued": "retire the old root (3/3)",
}


def collect(scope: RepoScope, now: datetime, revision: str | None) -> dict[str, Any]:
    state, mesh = scope.state, scope.mesh
    rotation = state.rotation
    rotating = None
    if rotation is not None:
        due = datetime.fromisoformat(rotation.entered_at)
        if rotation.phase != "staged":
            due += timedelta(seconds=rotation.hold)
        rotating = {
            "phase": rotation.phase,
            "since": rotation.entered_at,
            "reason": rotation.reason,
            "hold_seconds": rotation.hold,
            "next": NEXT_PHASE.get(rotation.phase, ""),
            "due_at": due.isoformat(timespec="seconds"),
            "new_root": rotation.next_fingerprint or None,
        }
    renew_before = mesh.certs.renew_before.before_expiry(float(mesh.ca.node_ca_ttl))
    node_cas = []
    for name in sorted(mesh.nodes):
        rec = state.nodes.get(name)
        node_cas.append(_node_ca(name, rec.ca if rec else None, renew_before, now))
    crl = state.crl
    return {
        "format_version": FORMAT_VERSION,
        "scope": "repo",
        "mesh": mesh.mesh.name,
        "generated_at": now.isoformat(timespec="seconds"),
        "revision": revision,
        "roots": [_cert(r, now) | {"key_type": r.key_type} for r in state.roots],
        "rotation": rotating,
        "node_cas": node_cas,
        "crl": {
            "number": crl.number,
            "next_update": crl.next_update or None,
            "revoked": len(crl.revoked),
        },
        "removed_nodes": list(scope.removed),
        "manifest": _manifest(scope),
    }


def _manifest(scope: RepoScope) -> dict[str, Any] | None:
    from meshops.resources.repo.manifest import current_manifest

    manifest = current_manifest(scope)
    if manifest is None:
        return None
    return {"version": manifest.version, "signer": manifest.signer,
            "signed_at": manifest.signed_at, "files": len(manifest.files)}  # fmt: skip


def _cert(record: CertRecord, now: datetime) -> dict[str, Any]:
    not_after = datetime.fromisoformat(record.not_after)
    return {
        "fingerprint": record.fingerprint,
        "serial": record.serial,
        "not_after": record.not_after,
        "expires_in_seconds": int((not_after - now).total_seconds()),
    }


def _node_ca(
    name: str, record: CertRecord | None, renew_before: float, now: datetime
) -> dict[str, Any]:
    if record is None:
        return {"node": name, "status": "missing", "serial": None, "not_after": None,
                "expires_in_seconds": None, "renew_at": None}  # fmt: skip
    cert = _cert(record, now)
    renew_at = datetime.fromisoformat(record.not_after) - timedelta(seconds=renew_before)
    left = cert["expires_in_seconds"]
    status = "expired" if left <= 0 else "due" if now >= renew_at else "ok"
    return {"node": name, "status": status, "serial": cert["serial"],
            "not_after": cert["not_after"], "expires_in_seconds": left,
            "renew_at": renew_at.isoformat(timespec="seconds")}  # fmt: skip
