"""`ca.crl`: the root-signed CRL listing revoked node CAs (state/ca/crl.pem).

During a root rotation the file holds one CRL per root, each listing the revoked node
CAs that root signed: verifiers that check CRLs along the whole chain (nginx) want one
from every CA in it, whichever root the chain ends at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from meshops.engine.plan import Action, Change
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.model.durations import format_duration
from meshops.providers.files import read_bytes
from meshops.resources.repo.node_ca import superseded
from meshops.resources.repo.scope import RepoScope, sha256_hex
from meshops.resources.repo.state import Revoked, parsed_cached

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime

# the shortest validity of a CRL (a mesh with short-lived node CAs)
MIN_CRL_VALIDITY = timedelta(days=7)


def crl_validity(mesh: Any) -> float:
    """Seconds a root CRL is valid: twice the node CA lifetime (at least a week).

    It is re-signed once half of that is left, so at every apply at least one node CA
    lifetime remains: a node CA issued then expires before the CRL does, and a host
    cut off from git keeps passing calls through CRL-checking proxies (nginx, Envoy)
    for as long as its node CA lives.
    """
    return max(2 * float(mesh.ca.node_ca_ttl), MIN_CRL_VALIDITY.total_seconds())


@dataclass(frozen=True)
class CRLLive:
    sha256: str | None
    serials: frozenset[str]
    next_update: str
    number: int = 0  # the file's CRL number: an apply killed before saving state.yaml
    # leaves it one ahead of the record, and CRL numbers must only grow
    count: int = 1  # CRLs in the file: one per root


class CRLResource(Resource[CRLLive]):
    address = "ca.crl"

    def __init__(self, scope: RepoScope):
        self.scope = scope
        nodes = sorted({*scope.mesh.nodes, *scope.removed})
        self.depends_on = ("ca.root", *(f'ca.node["{n}"]' for n in nodes))
        self.path = scope.layout.crl
        self.wanted = self._wanted()

    def _wanted(self) -> list[Revoked]:
        """Entries to list: those state.yaml records, plus the node CAs this apply
        revokes (removed or re-keyed nodes).

        Captured when the plan is made, so the plan shows the revocation; the node CA
        resources also record their entries in state.yaml as they run (see `apply`).
        """
        state = self.scope.state
        entries = {r.serial: r for r in state.crl.revoked}
        for node, record in superseded(self.scope):
            if record.serial not in entries:
                entries[record.serial] = Revoked(
                    node=node,
                    serial=record.serial,
                    revoked_at="",
                    not_after=record.not_after,
                    issuer=record.issuer,
                )
        return sorted(entries.values(), key=lambda r: (r.node, r.serial))

    def read(self, rt: Runtime) -> Observed[CRLLive]:
        data = read_bytes(self.path)
        live = CRLLive(None, frozenset(), "")
        if data is not None:
            # parsed once per file version: a no-op plan then needs no cryptography
            facts = parsed_cached(self.scope.layout, CRL_CACHE, data, _crl_facts)
            if facts is not None:
                live = CRLLive(
                    sha256_hex(data),
                    frozenset(facts["serials"]),
                    facts["next_update"],
                    facts["number"],
                    facts["count"],
                )
        record = self.scope.state.crl
        revoked = sorted(r.serial for r in record.revoked)
        return Observed(live, fingerprint_of(live.sha256, record.number, revoked))

    def plan(self, observed: Observed[CRLLive], rt: Runtime) -> Change:
        live = observed.value
        assert live is not None
        now = rt.now
        current = self._current(self.wanted, now)
        want = frozenset(r.serial for r in current)
        before = (
            {"number": self.scope.state.crl.number, "revoked": sorted(live.serials)}
            if live.sha256
            else None
        )
        after = {"number": self.scope.state.crl.number + 1, "revoked": sorted(want)}
        if live.sha256 is None:
            return Change(
                self.address,
                Action.CREATE,
                "no CRL yet",
                None,
                after,
                needs=self.scope.root_needs(),
            )
        step = self.scope.rotation_step(now)
        if step.action in ("start", "add", "retire"):
            why = (
                "the old root's CRL is dropped with it"
                if step.action == "retire"
                else "one CRL per root while both are trusted"
            )
            return Change(
                self.address, Action.UPDATE, why, before, after, needs=self.scope.root_needs()
            )
        if live.count != len(self.scope.state.roots):
            return Change(
                self.address,
                Action.UPDATE,
                f"holds {live.count} CRL(s) for {len(self.scope.state.roots)} root(s)",
                before,
                after,
                needs=self.scope.root_needs(),
            )
        if want != live.serials:
            added = sorted(want - live.serials)
            dropped = sorted(live.serials - want)
            names = {r.serial: r.node for r in current}
            parts = [f"revokes node CA of {names.get(s, '?')} (serial {s})" for s in added]
            if dropped:
                parts.append(
                    f"drops {len(dropped)} expired entr{'y' if len(dropped) == 1 else 'ies'}"
                )
            return Change(
                self.address,
                Action.UPDATE,
                "; ".join(parts),
                before,
                after,
                needs=self.scope.root_needs(),
            )
        remaining = (_parse(live.next_update) - now).total_seconds() if live.next_update else 0
        half = crl_validity(self.scope.mesh) / 2
        if remaining < half:
            why = (
                f"next update in {format_duration(int(remaining))}, less than half its "
                f"validity ({format_duration(int(half))}): re-signed"
                if remaining > 0
                else "CRL is past its next update: re-signed"
            )
            return Change(
                self.address, Action.UPDATE, why, before, after, needs=self.scope.root_needs()
            )
        return Change(self.address, Action.NOOP, "", before, before)

    def _current(self, entries: Iterable[Revoked], now: datetime) -> list[Revoked]:
        """Entries still worth listing: unexpired, and signed by a root still trusted
        (a retired root's node CAs chain to nothing)."""
        roots = {r.fingerprint for r in self.scope.state.roots}
        return [
            r
            for r in entries
            if (not r.not_after or _parse(r.not_after) > now)
            and (not r.issuer or r.issuer in roots)
        ]

    def _issuers(self, rt: Runtime) -> list[tuple[Any, Any, str, bool]]:
        """(root, key, fingerprint, is-oldest) for every root in state/ca/root.crt."""
        from meshops.pki.parse import cert_fingerprint

        scope = self.scope
        out = []
        roots = scope.root_certificates()
        if len(roots) > 1:
            cert, key = scope.previous_root_material(rt)
            out.append((cert, key, cert_fingerprint(cert), True))
        cert, key = scope.root_material(rt)
        out.append((cert, key, cert_fingerprint(cert), len(roots) == 1))
        return out

    def apply(self, change: Change, rt: Runtime) -> None:
        from meshops.pki import Revoked as PkiRevoked
        from meshops.pki import build_crl, crl_pem

        scope = self.scope
        now = rt.now
        wanted = {r.serial: r for r in self.wanted}
        for entry in scope.state.crl.revoked:  # recorded by node CA changes just made
            wanted[entry.serial] = entry
        current = self._current(wanted.values(), now)
        current.sort(key=lambda r: (r.node, r.serial))
        stamped = [
            Revoked(
                r.node,
                r.serial,
                r.revoked_at or now.isoformat(timespec="seconds"),
                r.not_after,
                r.issuer,
            )
            for r in current
        ]
        live = self.read(rt).value
        number = max(scope.state.crl.number, live.number if live else 0) + 1
        validity = crl_validity(scope.mesh)
        pem = b"".join(
            crl_pem(
                build_crl(
                    issuer_cert=cert,
                    issuer_key=key,
                    revoked=[
                        PkiRevoked(int(r.serial, 16), _parse(r.revoked_at))
                        for r in stamped
                        if _listed_by(r, fingerprint, first)
                    ],
                    number=number,
                    now=now,
                    next_update_seconds=validity,
                )
            )
            for cert, key, fingerprint, first in self._issuers(rt)
        )
        scope.write(self.path, pem, mode=0o644)
        scope.state.crl.number = number
        scope.state.crl.revoked = stamped
        next_update = now.replace(microsecond=0) + timedelta(seconds=validity)
        scope.state.crl.next_update = next_update.isoformat(timespec="seconds")
        scope.save()


CRL_CACHE = "meshops-crl-cache.json"


def _crl_facts(data: bytes) -> dict[str, Any] | None:
    """What plan needs from crl.pem (JSON-able), or None when it is garbled."""
    from meshops.pki.parse import load_crls

    try:
        crls = load_crls(data)
    except Exception:  # garbled: treated as absent, so it is re-signed
        return None
    if not crls:
        return None
    updates = [c.next_update_utc for c in crls if c.next_update_utc is not None]
    return {
        "serials": sorted({format(r.serial_number, "x") for crl in crls for r in crl}),
        "next_update": min(updates).isoformat(timespec="seconds") if updates else "",
        "number": max(_crl_number(c) for c in crls),
        "count": len(crls),
    }


def _listed_by(entry: Revoked, fingerprint: str, first: bool) -> bool:
    """Whether the CRL of root `fingerprint` lists `entry`: the root that signed the
    revoked node CA does; entries of unknown issuer go on the oldest root's CRL."""
    return entry.issuer == fingerprint or (first and not entry.issuer)


def _crl_number(crl: Any) -> int:
    from cryptography import x509

    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")
