"""`ca.crl`: the root-signed CRL listing revoked node CAs (state/ca/crl.pem)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from meshops.engine.plan import Action, Change
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.model.durations import format_duration
from meshops.providers.files import read_bytes, write_atomic
from meshops.resources.repo.node_ca import superseded
from meshops.resources.repo.scope import RepoScope, sha256_hex
from meshops.resources.repo.state import Revoked

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime

# how long a CRL is valid; it is re-signed once a third of that remains
CRL_VALIDITY = timedelta(days=7)


@dataclass(frozen=True)
class CRLLive:
    sha256: str | None
    serials: frozenset[str]
    next_update: str
    number: int = 0  # the file's CRL number: an apply killed before saving state.yaml
    # leaves it one ahead of the record, and CRL numbers must only grow


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
                    node=node, serial=record.serial, revoked_at="", not_after=record.not_after
                )
        return sorted(entries.values(), key=lambda r: (r.node, r.serial))

    def read(self, rt: Runtime) -> Observed[CRLLive]:
        data = read_bytes(self.path)
        serials: frozenset[str] = frozenset()
        next_update = ""
        number = 0
        if data is not None:
            from meshops.pki.parse import load_crl

            try:
                crl = load_crl(data)
                serials = frozenset(format(r.serial_number, "x") for r in crl)
                if crl.next_update_utc is not None:
                    next_update = crl.next_update_utc.isoformat(timespec="seconds")
                number = _crl_number(crl)
            except Exception:  # garbled: treated as absent below
                data = None
        live = CRLLive(sha256_hex(data) if data is not None else None, serials, next_update, number)
        record = self.scope.state.crl
        revoked = sorted(r.serial for r in record.revoked)
        return Observed(live, fingerprint_of(live.sha256, record.number, revoked))

    def plan(self, observed: Observed[CRLLive], rt: Runtime) -> Change:
        live = observed.value
        assert live is not None
        now = rt.now
        current = [r for r in self.wanted if not r.not_after or _parse(r.not_after) > now]
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
        if remaining < CRL_VALIDITY.total_seconds() / 3:
            why = (
                f"next update due in {format_duration(int(remaining))}"
                if remaining > 0
                else "CRL is past its next update"
            )
            return Change(
                self.address, Action.UPDATE, why, before, after, needs=self.scope.root_needs()
            )
        return Change(self.address, Action.NOOP, "", before, before)

    def apply(self, change: Change, rt: Runtime) -> None:
        from meshops.pki import Revoked as PkiRevoked
        from meshops.pki import build_crl, crl_pem

        scope = self.scope
        now = rt.now
        wanted = {r.serial: r for r in self.wanted}
        for entry in scope.state.crl.revoked:  # recorded by node CA changes just made
            wanted[entry.serial] = entry
        current = [r for r in wanted.values() if not r.not_after or _parse(r.not_after) > now]
        current.sort(key=lambda r: (r.node, r.serial))
        stamped = [
            Revoked(
                r.node, r.serial, r.revoked_at or now.isoformat(timespec="seconds"), r.not_after
            )
            for r in current
        ]
        root_cert, root_key = scope.root_material(rt)
        live = self.read(rt).value
        number = max(scope.state.crl.number, live.number if live else 0) + 1
        crl = build_crl(
            issuer_cert=root_cert,
            issuer_key=root_key,
            revoked=[PkiRevoked(int(r.serial, 16), _parse(r.revoked_at)) for r in stamped],
            number=number,
            now=now,
            next_update_seconds=CRL_VALIDITY.total_seconds(),
        )
        write_atomic(self.path, crl_pem(crl), mode=0o644)
        scope.state.crl.number = number
        scope.state.crl.revoked = stamped
        scope.state.crl.next_update = (now + CRL_VALIDITY).isoformat(timespec="seconds")
        scope.save()


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
