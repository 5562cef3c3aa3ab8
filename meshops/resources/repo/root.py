"""`ca.root`: the mesh's root CA, its key sealed to `ca.recipients`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshops.engine.plan import Action, Change, Impact
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.errors import MeshError
from meshops.providers.files import read_bytes, remove
from meshops.resources.repo.rotation import DEFAULT_HOLD
from meshops.resources.repo.scope import (
    ROOT_KEY_NEED,
    RepoScope,
    recipients_fingerprint,
    sha256_hex,
)
from meshops.resources.repo.state import CertRecord, Rotation

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime


@dataclass(frozen=True)
class RootLive:
    cert_pem: bytes | None
    key_sha256: str | None


class RootResource(Resource[RootLive]):
    address = "ca.root"

    def __init__(self, scope: RepoScope):
        self.scope = scope

    def read(self, rt: Runtime) -> Observed[RootLive]:
        layout = self.scope.layout
        cert = read_bytes(layout.root_cert)
        key = read_bytes(layout.root_key)
        live = RootLive(cert, sha256_hex(key) if key is not None else None)
        records = [vars(r) for r in self.scope.state.roots]
        return Observed(live, fingerprint_of(cert or b"", live.key_sha256, records))

    def plan(self, observed: Observed[RootLive], rt: Runtime) -> Change:
        ca = self.scope.mesh.ca
        state = self.scope.state
        live = observed.value
        assert live is not None
        desired = {
            "key_type": ca.key_type,
            "ttl": str(ca.root_ttl),
            "recipients": recipients_fingerprint(ca.recipients),
        }
        rotation = state.rotation
        if live.cert_pem is None or live.key_sha256 is None or not state.roots:
            if not ca.recipients:
                raise MeshError(
                    "ca.recipients is empty: nobody could unseal the root CA key",
                    hint="add at least one age (age1...) or SSH public key under ca.recipients",
                )
            reason = "no root CA yet"
            if not state.roots and rotation is not None and rotation.phase == "staged":
                reason = f"adopts the imported CA {rotation.next_fingerprint[:19]} as the root"
            elif live.cert_pem is not None or live.key_sha256 is not None:
                reason = "root CA files incomplete (interrupted apply?): a new root is made"
            return Change(self.address, Action.CREATE, reason, None, desired, sensitive=True)
        record = state.roots[-1]
        before = {
            "fingerprint": record.fingerprint,
            "serial": record.serial,
            "not_after": record.not_after,
            "key_type": record.key_type,
            "recipients": record.recipients,
        }
        if len(state.roots) > 1:
            before["previous"] = state.roots[0].fingerprint
        if record.recipients != desired["recipients"]:
            return self._reseal(before, desired, "ca.recipients changed: root key re-sealed")
        # a phase-1 apply interrupted after moving the staged key into place
        moved = rotation is not None and live.key_sha256 == rotation.next_key_sha256
        if record.key_sha256 != live.key_sha256 and not moved:
            return self._reseal(
                before, desired, "sealed root key does not match state.yaml: re-sealed"
            )
        step = self.scope.rotation_step(rt.now)
        if step.action is None:
            if self._leftovers():
                return Change(
                    self.address,
                    Action.UPDATE,
                    "removes root key files an interrupted rotation left behind",
                    before,
                    before,
                    sensitive=True,
                )
            return Change(self.address, Action.NOOP, "", before, before)
        return Change(
            self.address,
            Action.UPDATE,
            _describe(step.action, step.reason, rotation),
            before,
            {**before, **_after(step.action, state.roots, rotation)},
            sensitive=True,
            impact=Impact.NONE,
        )

    def _reseal(self, before: dict[str, str], desired: dict[str, str], reason: str) -> Change:
        after = {**before, "recipients": desired["recipients"]}
        return Change(
            self.address,
            Action.UPDATE,
            reason,
            before,
            after,
            sensitive=True,
            needs=(ROOT_KEY_NEED,),
            impact=Impact.NONE,
        )

    def apply(self, change: Change, rt: Runtime) -> None:
        scope, state = self.scope, self.scope.state
        if change.action is Action.CREATE:
            rotation = state.rotation
            if rotation is not None and rotation.phase == "staged" and not state.roots:
                self._adopt_staged(rt)
            else:
                self._create(rt)
            return
        record = state.roots[-1]
        if record.recipients != recipients_fingerprint(scope.mesh.ca.recipients) or (
            record.key_sha256 != sha256_hex(read_bytes(scope.layout.root_key) or b"")
            and not (state.rotation and state.rotation.phase == "staged")
        ):
            self._reseal_all(rt)
            return
        step = scope.rotation_step(rt.now)
        if step.action is None:
            for path in self._leftovers():
                remove(path)
        elif step.action == "start":
            from meshops.pki import generate_key, issue_root, private_pem

            key = generate_key(scope.mesh.ca.key_type)
            cert = issue_root(
                mesh_name=scope.mesh.mesh.name,
                key=key,
                now=rt.now,
                ttl_seconds=float(scope.mesh.ca.root_ttl),
            )
            stage_root(scope, cert, private_pem(key), reason=step.reason, now=rt.now)
            self._add_staged(rt)
        elif step.action == "add":
            self._add_staged(rt)
        elif step.action == "reissue":
            assert state.rotation is not None
            state.rotation.phase = "reissued"
            state.rotation.entered_at = _iso(rt.now)
            scope.save()
        elif step.action == "retire":
            self._retire(rt)

    def _leftovers(self) -> list[Path]:
        """Staged or previous root files no rotation phase needs (a run was killed
        between recording a phase and removing them)."""
        layout, rotation = self.scope.layout, self.scope.state.rotation
        unneeded = []
        if rotation is None or rotation.phase != "staged":
            unneeded += [layout.root_next_cert, layout.root_next_key]
        if rotation is None:
            unneeded.append(layout.root_previous_key)
        return [p for p in unneeded if p.exists()]

    # -- creating and adopting -------------------------------------------------------

    def _create(self, rt: Runtime) -> None:
        from meshops.pki import generate_key, issue_root, private_pem

        scope, ca = self.scope, self.scope.mesh.ca
        key = generate_key(ca.key_type)
        cert = issue_root(
            mesh_name=scope.mesh.mesh.name, key=key, now=rt.now, ttl_seconds=float(ca.root_ttl)
        )
        pem = private_pem(key)
        sealed = scope.sealer.seal(pem, list(ca.recipients), scope.layout.root_key)
        _remember(rt, cert, pem)
        scope.write(scope.layout.root_key, sealed, mode=0o600)
        # a new mesh commits once, at the end: a run killed before it makes a new root
        self._publish([cert], [_record(cert, sealed, ca)], commit=False)

    def _adopt_staged(self, rt: Runtime) -> None:
        """The first root is one `meshops ca import` staged."""
        scope = self.scope
        rotation = scope.state.rotation
        assert rotation is not None
        sealed = _find_sealed(scope, rotation.next_key_sha256, "imported CA's key")
        cert = _find_cert(scope, rotation.next_fingerprint, "imported CA")
        scope.write(scope.layout.root_key, sealed, mode=0o600)
        scope.state.rotation = None
        self._publish([cert], [_record(cert, sealed, scope.mesh.ca)])
        _remove_staged(scope)

    def _publish(self, certs: list[Any], records: list[CertRecord], *, commit: bool = True) -> None:
        from meshops.pki import certs_pem

        scope = self.scope
        scope.write(scope.layout.root_cert, certs_pem(certs), mode=0o644)
        scope.state.roots = records
        scope.save()
        if commit:  # a change of roots everything else is checked against: commit it now
            scope.flush()

    # -- re-sealing ----------------------------------------------------------------

    def _reseal_all(self, rt: Runtime) -> None:
        """Seal every root key present (current, previous, staged) to ca.recipients."""
        from meshops.pki import private_pem
        from meshops.pki.parse import load_certificates

        scope, layout, state = self.scope, self.scope.layout, self.scope.state
        recipients = list(scope.mesh.ca.recipients)

        def reseal(cert: Any, path: Path) -> str:
            pem = private_pem(scope.root_key_for(rt, cert, path))
            sealed = scope.sealer.seal(pem, recipients, path)
            scope.write(path, sealed, mode=0o600)
            return sha256_hex(sealed)

        rotation = state.rotation
        fingerprint = recipients_fingerprint(recipients)
        certs = scope.root_certificates()
        state.roots[-1].key_sha256 = reseal(certs[-1], layout.root_key)
        if rotation is not None and len(state.roots) > 1 and layout.root_previous_key.exists():
            rotation.previous_key_sha256 = reseal(certs[0], layout.root_previous_key)
            state.roots[0].key_sha256 = rotation.previous_key_sha256
        if rotation is not None and rotation.phase == "staged":
            staged = load_certificates(layout.root_next_cert.read_bytes())[0]
            rotation.next_key_sha256 = reseal(staged, layout.root_next_key)
            rotation.previous_key_sha256 = state.roots[-1].key_sha256
        for record in state.roots:
            record.recipients = fingerprint
        scope.save()

    # -- rotation phases -------------------------------------------------------------

    def _add_staged(self, rt: Runtime) -> None:
        """Phase 1: old + new root in root.crt; the new key signs from now on.

        Every step can be repeated: the keys are found by the hashes state.yaml
        recorded when the new root was staged, wherever an interrupted run left them.
        """
        scope, layout, state = self.scope, self.scope.layout, self.scope.state
        rotation = state.rotation
        assert rotation is not None
        old = state.roots[-1]
        old_sealed = _find_sealed(scope, rotation.previous_key_sha256, "current root key")
        new_sealed = _find_sealed(scope, rotation.next_key_sha256, "staged root key")
        old_cert = _find_cert(scope, old.fingerprint, "current root")
        new_cert = _find_cert(scope, rotation.next_fingerprint, "staged root")
        scope.write(layout.root_previous_key, old_sealed, mode=0o600)
        scope.write(layout.root_key, new_sealed, mode=0o600)
        # the old root hands over to the new one, so hosts that pinned it follow
        old_key = scope.root_key_for(rt, old_cert, layout.root_previous_key)
        hand_over(scope, old_cert, old_key, new_cert, rt.now)
        for entry in state.crl.revoked:  # listed before the rotation: the old root's
            entry.issuer = entry.issuer or old.fingerprint
        rotation.phase = "added"
        rotation.entered_at = _iso(rt.now)
        self._publish([old_cert, new_cert], [old, _record(new_cert, new_sealed, scope.mesh.ca)])
        _remove_staged(scope)

    def _retire(self, rt: Runtime) -> None:
        """Phase 3: only the new root stays trusted; the old key is deleted."""
        scope, state = self.scope, self.scope.state
        new = state.roots[-1]
        retired = {r.fingerprint for r in state.roots[:-1]}
        new_cert = _find_cert(scope, new.fingerprint, "new root")
        state.crl.revoked = [e for e in state.crl.revoked if e.issuer not in retired]
        state.rotation = None
        self._publish([new_cert], [new])
        remove(scope.layout.root_previous_key)


def stage_root(scope: RepoScope, cert: Any, key_pem: bytes, *, reason: str, now: datetime,
               hold: float = DEFAULT_HOLD) -> None:  # fmt: skip
    """Seal a new root's key to ca.recipients into state/ca/root.next.*, and record the
    rotation as staged: the next apply adds it to the trust bundle (phase 1)."""
    from meshops.pki import cert_pem
    from meshops.pki.parse import cert_fingerprint

    layout, state = scope.layout, scope.state
    sealed = scope.sealer.seal(key_pem, list(scope.mesh.ca.recipients), layout.root_next_key)
    scope.write(layout.root_next_key, sealed, mode=0o600)
    scope.write(layout.root_next_cert, cert_pem(cert), mode=0o644)
    state.rotation = Rotation(
        phase="staged",
        entered_at=_iso(now),
        hold=hold,
        reason=reason,
        next_fingerprint=cert_fingerprint(cert),
        next_key_sha256=sha256_hex(sealed),
        previous_key_sha256=state.roots[-1].key_sha256 if state.roots else "",
    )
    scope.save()
    scope.flush()


def hand_over(scope: RepoScope, old: Any, old_key: Any, new: Any, now: datetime) -> None:
    """Append "`old` hands over to `new`", signed by the old root, to
    state/ca/transitions.yaml (once: a repeated phase 1 finds it there)."""
    from meshops.pki.parse import cert_fingerprint
    from meshops.trust import transitions

    path = scope.layout.dir / transitions.TRANSITIONS
    data = read_bytes(path)
    entries = transitions.parse(data) if data is not None else []
    pair = (cert_fingerprint(old), cert_fingerprint(new))
    if any((e.from_fp, e.to_fp) == pair for e in entries):
        return
    entries.append(transitions.make_transition(old, old_key, new, _iso(now)))
    scope.write(path, transitions.render(entries), mode=0o644)


def _describe(action: str, reason: str, rotation: Rotation | None) -> str:
    if action == "start":
        return (
            f"rotation 1/3: {reason}: a new root joins the trust bundle and signs node CAs "
            "from now on"
        )
    if action == "add":
        assert rotation is not None
        return (
            f"rotation 1/3 ({reason}): the staged root {rotation.next_fingerprint[:19]} joins "
            "the trust bundle and signs node CAs from now on"
        )
    return reason


def _after(action: str, roots: list[CertRecord], rotation: Rotation | None) -> dict[str, Any]:
    if action == "start":
        return {"fingerprint": "(known after apply)", "previous": roots[-1].fingerprint}
    if action == "add":
        assert rotation is not None
        return {"fingerprint": rotation.next_fingerprint, "previous": roots[-1].fingerprint}
    if action == "retire":
        return {"previous": None}
    return {}


def _record(cert: Any, sealed: bytes, ca: Any) -> CertRecord:
    from meshops.pki import cert_public_key, key_type_of
    from meshops.pki.parse import cert_fingerprint

    return CertRecord(
        fingerprint=cert_fingerprint(cert),
        serial=format(cert.serial_number, "x"),
        not_after=cert.not_valid_after_utc.isoformat(timespec="seconds"),
        key_type=key_type_of(cert_public_key(cert)),
        key_sha256=sha256_hex(sealed),
        recipients=recipients_fingerprint(list(ca.recipients)),
    )


def _remember(rt: Runtime, cert: Any, pem: bytes) -> None:
    from meshops.pki.parse import cert_fingerprint

    rt.remember_secret(f"root-key {cert_fingerprint(cert)}", pem)


def _find_sealed(scope: RepoScope, sha256: str, what: str) -> bytes:
    layout = scope.layout
    for path in (layout.root_next_key, layout.root_key, layout.root_previous_key):
        data = read_bytes(path)
        if data is not None and sha256_hex(data) == sha256:
            return data
    raise MeshError(
        f"the {what} recorded in state.yaml is in none of state/ca/root*.key files",
        hint="restore state/ca from git (git checkout -- state/ca) and apply again",
    )


def _find_cert(scope: RepoScope, fingerprint: str, what: str) -> Any:
    from meshops.pki.parse import cert_fingerprint, load_certificates

    layout = scope.layout
    for path in (layout.root_cert, layout.root_next_cert):
        data = read_bytes(path)
        for cert in load_certificates(data, what=str(path)) if data else []:
            if cert_fingerprint(cert) == fingerprint:
                return cert
    raise MeshError(
        f"the {what} ({fingerprint[:19]}) recorded in state.yaml is in neither "
        "state/ca/root.crt nor root.next.crt",
        hint="restore state/ca from git (git checkout -- state/ca) and apply again",
    )


def _remove_staged(scope: RepoScope) -> None:
    remove(scope.layout.root_next_key)
    remove(scope.layout.root_next_cert)


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")
