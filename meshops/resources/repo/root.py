"""`ca.root`: the mesh's root CA, its key sealed to `ca.recipients`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshops.engine.plan import Action, Change, Impact
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.errors import MeshError
from meshops.providers.files import read_bytes, write_atomic
from meshops.resources.repo.scope import (
    ROOT_KEY_NEED,
    RepoScope,
    recipients_fingerprint,
    sha256_hex,
)
from meshops.resources.repo.state import CertRecord

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
        live = observed.value
        assert live is not None
        desired = {
            "key_type": ca.key_type,
            "ttl": str(ca.root_ttl),
            "recipients": recipients_fingerprint(ca.recipients),
        }
        if live.cert_pem is None or live.key_sha256 is None or not self.scope.state.roots:
            if not ca.recipients:
                raise MeshError(
                    "ca.recipients is empty: nobody could unseal the root CA key",
                    hint="add at least one age (age1...) or SSH public key under ca.recipients",
                )
            reason = "no root CA yet"
            if live.cert_pem is not None or live.key_sha256 is not None:
                reason = "root CA files incomplete (interrupted apply?): a new root is made"
            return Change(self.address, Action.CREATE, reason, None, desired, sensitive=True)
        record = self.scope.state.roots[-1]
        before = {
            "fingerprint": record.fingerprint,
            "serial": record.serial,
            "not_after": record.not_after,
            "key_type": record.key_type,
            "recipients": record.recipients,
        }
        if record.recipients != desired["recipients"]:
            return self._reseal(before, desired, "ca.recipients changed: root key re-sealed")
        if record.key_sha256 != live.key_sha256:
            return self._reseal(
                before, desired, "sealed root key does not match state.yaml: re-sealed"
            )
        return Change(self.address, Action.NOOP, "", before, before)

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
        from meshops.pki import cert_pem, generate_key, issue_root, private_pem
        from meshops.pki.parse import cert_fingerprint

        scope, layout, ca = self.scope, self.scope.layout, self.scope.mesh.ca
        if change.action is Action.CREATE:
            key = generate_key(ca.key_type)
            cert = issue_root(
                mesh_name=scope.mesh.mesh.name, key=key, now=rt.now, ttl_seconds=float(ca.root_ttl)
            )
            pem = private_pem(key)
            rt.remember_secret("root-key", pem)
            rt.shared["root"] = (cert, key)
        else:
            cert, key = scope.root_material(rt)
            pem = private_pem(key)
        sealed = scope.sealer.seal(pem, list(ca.recipients), layout.root_key)
        write_atomic(layout.root_key, sealed, mode=0o600)
        if change.action is Action.CREATE:
            write_atomic(layout.root_cert, cert_pem(cert), mode=0o644)
        record = CertRecord(
            fingerprint=cert_fingerprint(cert),
            serial=format(cert.serial_number, "x"),
            not_after=cert.not_valid_after_utc.isoformat(timespec="seconds"),
            key_type=ca.key_type,
            key_sha256=sha256_hex(sealed),
            recipients=recipients_fingerprint(list(ca.recipients)),
        )
        scope.state.roots = [record]
        scope.save()
