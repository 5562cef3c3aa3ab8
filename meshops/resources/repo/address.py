"""`ipam.address["<node>"]`: a node's overlay address, recorded in state.yaml."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from meshops.engine.plan import Action, Change, Impact
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.resources.repo.scope import RepoScope
from meshops.resources.repo.state import Released

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime


class AddressResource(Resource[tuple[str | None, str | None]]):
    def __init__(self, scope: RepoScope, node: str):
        self.scope = scope
        self.node = node
        self.address = f'ipam.address["{node}"]'

    def read(self, rt: Runtime) -> Observed[tuple[str | None, str | None]]:
        rec = self.scope.state.nodes.get(self.node)
        value = (rec.address, rec.address6) if rec else (None, None)
        return Observed(value, fingerprint_of(value))

    def _desired(self) -> tuple[str | None, str | None]:
        if self.node not in self.scope.addresses:
            return (None, None)  # removed, or no WireGuard
        v6 = self.scope.addresses6.get(self.node)
        return (str(self.scope.addresses[self.node]), str(v6) if v6 else None)

    def plan(self, observed: Observed[tuple[str | None, str | None]], rt: Runtime) -> Change:
        live = observed.value or (None, None)
        want = self._desired()
        before = {"address": live[0], "address6": live[1]} if live[0] else None
        after = {"address": want[0], "address6": want[1]} if want[0] else None
        if live == want:
            return Change(self.address, Action.NOOP, "", before, after)
        if want[0] is None:
            return Change(
                self.address,
                Action.DELETE,
                f"{_gone(self.scope, self.node)}: {live[0]} released (quarantined until its "
                "node CA expires)",
                before,
                None,
            )
        pinned = self.scope.mesh.nodes[self.node].address is not None
        if live[0] is None:
            how = "pinned in mesh.yaml" if pinned else "allocated"
            return Change(self.address, Action.CREATE, f"{how}: {want[0]}", None, after)
        return Change(
            self.address,
            Action.UPDATE,
            f"address changed: {live[0]} -> {want[0]}"
            if live[0] != want[0]
            else f"address6 changed: {live[1]} -> {want[1]}",
            before,
            after,
            impact=Impact.IN_PLACE,
        )

    def apply(self, change: Change, rt: Runtime) -> None:
        state = self.scope.state
        old = state.nodes.get(self.node)
        if change.action is Action.DELETE:
            if old is not None and old.address:
                until = rt.now + timedelta(seconds=float(self.scope.mesh.ca.node_ca_ttl))
                if old.ca is not None and old.ca.not_after:
                    until_text = old.ca.not_after
                else:
                    until_text = until.isoformat(timespec="seconds")
                state.released[old.address] = Released(
                    node=self.node, at=rt.now.isoformat(timespec="seconds"), until=until_text
                )
                old.address = old.address6 = None
        else:
            want = self._desired()
            rec = state.node(self.node)
            rec.address, rec.address6 = want
            if want[0] in state.released:
                del state.released[want[0]]
        self.scope.save()


def _gone(scope: RepoScope, node: str) -> str:
    """Why a node's WireGuard resources go: it left the mesh, or it left WireGuard."""
    return (
        "node removed"
        if node not in scope.mesh.nodes
        else "WireGuard turned off (wireguard: false)"
    )
