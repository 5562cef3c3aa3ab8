"""`wireguard.key["<node>"]`: a node's WireGuard private key, sealed to its recipient;
or for a node that holds its keys on the host (`keys: host`), the public key of its
enrolment request, with nothing sealed.

Only the public key is recorded (state.yaml). Repo scope cannot open a node's sealed
secrets, so a changed recipient means a new key sealed to the new recipient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshops.engine.plan import Action, Change, Impact
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.providers.files import prune_empty_dirs, read_bytes, remove
from meshops.resources.repo.scope import RepoScope, recipients_fingerprint, sha256_hex
from meshops.resources.repo.state import WireGuardRecord

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime


@dataclass(frozen=True)
class SealedFile:
    sha256: str | None


class WireGuardKeyResource(Resource[SealedFile]):
    def __init__(self, scope: RepoScope, node: str):
        self.scope = scope
        self.node = node
        self.address = f'wireguard.key["{node}"]'
        self.path = scope.layout.wg_key(node)

    def read(self, rt: Runtime) -> Observed[SealedFile]:
        data = read_bytes(self.path)
        live = SealedFile(sha256_hex(data) if data is not None else None)
        rec = self.scope.state.nodes.get(self.node)
        recorded = vars(rec.wireguard) if rec and rec.wireguard else None
        proof = self.scope.enrolments.get(self.node)
        enrolled = proof.wireguard_key if proof else None
        return Observed(live, fingerprint_of(live.sha256, recorded, enrolled))

    def plan(self, observed: Observed[SealedFile], rt: Runtime) -> Change:
        live = observed.value
        assert live is not None
        rec = self.scope.state.nodes.get(self.node)
        record = rec.wireguard if rec else None
        before = {"public_key": record.public_key} if record else None
        mesh = self.scope.mesh
        if self.node not in mesh.nodes or not mesh.wireguard_on(self.node):
            if live.sha256 is None and record is None:
                return Change(self.address, Action.NOOP)
            return Change(
                self.address,
                Action.DELETE,
                "node removed from mesh.yaml"
                if self.node not in mesh.nodes
                else "WireGuard turned off (wireguard: false)",
                before,
                None,
                sensitive=True,
            )
        if mesh.host_held(self.node):
            return self._plan_enrolled(live, record, before)
        node = self.scope.mesh.nodes[self.node]
        want_recipients = recipients_fingerprint([node.recipient])
        after = {"public_key": "(known after apply)"}
        if record is None or live.sha256 is None:
            reason = "new node" if live.sha256 is None else "key not recorded in state.yaml"
            return Change(self.address, Action.CREATE, reason, before, after, sensitive=True)
        if record.key_sha256 != live.sha256:
            reason = (
                "keys: sealed: a new key sealed to the node's recipient"
                if not record.key_sha256
                else "sealed key does not match state.yaml (interrupted apply or hand edit)"
            )
        elif record.recipients != want_recipients:
            reason = "node recipient changed: a new key is sealed to the new recipient"
        else:
            return Change(self.address, Action.NOOP, "", before, before, sensitive=True)
        return Change(
            self.address,
            Action.REPLACE,
            reason,
            before,
            after,
            sensitive=True,
            impact=Impact.SESSION_RESET,
        )

    def _plan_enrolled(
        self, live: SealedFile, record: WireGuardRecord | None, before: dict[str, str] | None
    ) -> Change:
        """keys: host: the public key of the node's request, and no sealed key."""
        from meshops.enroll.checks import request_path

        proof = self.scope.enrolments[self.node]
        want = proof.wireguard_key
        after = {"public_key": want}
        request = request_path(self.node)
        if record is None:
            return Change(self.address, Action.CREATE, f"enrols the key of {request}", before,
                          after, sensitive=True)  # fmt: skip
        if record.public_key != want:
            reason = (
                f"keys: host: enrols the key born on the node ({request}); the sealed key "
                "leaves state/"
                if live.sha256 is not None
                else f"new key in {request} (rotation)"
            )
        elif live.sha256 is not None or record.key_sha256:
            reason = "a sealed key is left in state/ for a node that holds its keys on the host"
        else:
            return Change(self.address, Action.NOOP, "", before, before, sensitive=True)
        return Change(self.address, Action.REPLACE, reason, before, after, sensitive=True,
                      impact=Impact.SESSION_RESET)  # fmt: skip

    def apply(self, change: Change, rt: Runtime) -> None:
        from meshops.providers.wireguard.keys import (
            bytes_to_b64,
            generate_private_key,
            public_key_of,
        )

        scope = self.scope
        if change.action is Action.DELETE:
            remove(self.path)
            rec = scope.state.nodes.get(self.node)
            prune_empty_dirs(self.scope.layout.node_dir(self.node), stop=self.scope.layout.dir)
            if rec is not None:
                rec.wireguard = None
            scope.save()
            return
        if scope.mesh.host_held(self.node):
            remove(self.path)  # a sealed key of the node's past (migration) leaves state/
            proof = scope.enrolments[self.node]
            assert proof.wireguard_key is not None  # checked with the request
            record = scope.state.node(self.node)
            if record.wireguard is not None and record.wireguard.public_key != proof.wireguard_key:
                record.retire(f"wg:{record.wireguard.public_key}")
            record.wireguard = WireGuardRecord(proof.wireguard_key, "", "")
            scope.save()
            return
        node = scope.mesh.nodes[self.node]
        private = generate_private_key()
        # sealed as `wg genkey` prints it, so `age -d` output feeds `wg set` as it is
        text = (bytes_to_b64(private) + "\n").encode()
        sealed = scope.sealer.seal(text, [node.recipient], self.path)
        scope.write(self.path, sealed, mode=0o600)
        scope.state.node(self.node).wireguard = WireGuardRecord(
            public_key=public_key_of(private),
            key_sha256=sha256_hex(sealed),
            recipients=recipients_fingerprint([node.recipient]),
        )
        scope.save()
