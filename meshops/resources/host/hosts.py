"""`hosts.block`: the managed block of /etc/hosts (overlay names of nodes and identities)."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from meshops.engine.plan import Action, Change
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.providers import hosts
from meshops.providers.files import read_bytes, write_atomic
from meshops.report.words import plural
from meshops.resources.host.scope import HostScope

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime


def hosts_entries(scope: HostScope) -> list[tuple[str, tuple[str, ...]]]:
    """`<node>.<domain>` for every node; `<identity>.<domain>` at the node serving it
    (this node when it runs the identity, else the first node by name)."""
    mesh, domain = scope.mesh, scope.mesh.mesh.domain
    names: dict[str, list[str]] = {}
    for node in sorted(mesh.nodes):
        address = reach(scope, node)
        if address is not None:
            names.setdefault(address, []).append(f"{node}.{domain}")
    for identity in sorted(mesh.identities):
        placed = mesh.identities[identity].nodes
        node = scope.node if scope.node in placed else sorted(placed)[0]
        address = reach(scope, node) if node in mesh.nodes else None
        if address is not None:
            names.setdefault(address, []).append(f"{identity}.{domain}")
    return [(ip, tuple(n)) for ip, n in names.items()]


def reach(scope: HostScope, node: str) -> str | None:
    """The address this host reaches `node` at: its overlay address when both run
    WireGuard, else the address it publishes (`ips`, or its endpoint's IP)."""
    if scope.tunnelled and scope.mesh.wireguard_on(node):
        rec = scope.state.nodes.get(node)
        return rec.address if rec is not None and rec.address else None
    published = scope.mesh.underlay_ips(node)
    return str(published[0]) if published else None


class HostsResource(Resource[bytes]):
    address = "hosts.block"

    def __init__(self, scope: HostScope):
        self.scope = scope
        self.path = scope.host_path("/etc/hosts")
        self.entries = hosts_entries(scope)

    def read(self, rt: Runtime) -> Observed[bytes]:
        data = read_bytes(self.path)
        return Observed(data, fingerprint_of(data or b""))

    def _desired(self, current: bytes | None) -> str:
        text = (current or b"").decode("utf-8", errors="surrogateescape")
        return hosts.render(text, self.entries, where=str(self.path))

    def plan(self, observed: Observed[bytes], rt: Runtime) -> Change:
        current = observed.value
        text = (current or b"").decode("utf-8", errors="surrogateescape")
        block = hosts.read_block(text, where=str(self.path))
        after = {"entries": len(self.entries)}
        before = {"entries": len(block)} if block is not None else None
        if self._desired(current) == text and current is not None:
            return Change(self.address, Action.NOOP, "", before, before)
        if block is None:
            return Change(self.address, Action.CREATE, f"add managed block to {self.path}",
                          None, after)  # fmt: skip
        old = {(ip, names) for ip, names in block}
        new = set(self.entries)
        added = len(new - old)
        removed = len(old - new)
        reason = (
            f"{plural(added, 'entry', 'entries')} added, "
            f"{plural(removed, 'entry', 'entries')} removed"
            if (added or removed)
            else "reordered"
        )
        return Change(self.address, Action.UPDATE, reason, before, after)

    def apply(self, change: Change, rt: Runtime) -> None:
        current = read_bytes(self.path)
        mode = stat.S_IMODE(os.stat(self.path).st_mode) if current is not None else 0o644
        text = self._desired(current)
        write_atomic(self.path, text.encode("utf-8", errors="surrogateescape"), mode=mode)
