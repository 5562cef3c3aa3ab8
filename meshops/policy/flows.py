"""The access table seen from nodes (pure): which ports a node opens on the overlay, to
which nodes, and which nodes it must peer with.

A packet filter sees addresses, and on a WireGuard interface a source address is a
node (WireGuard accepts a packet only from the peer whose allowed IPs hold its source).
So L4 is node-granular: a port opened for `api` is open to every identity on `api`'s
nodes. The proxies behind their ports still check the identity (L7).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from meshops.model.port import Port
from meshops.policy.table import AccessTable

if TYPE_CHECKING:
    from meshops.model.mesh import Mesh

OpeningKind = Literal["proxy", "plaintext", "port"]


class _ProxyLike(Protocol):
    @property
    def listen(self) -> int: ...


class _IdentityLike(Protocol):
    @property
    def nodes(self) -> Sequence[str]: ...
    @property
    def ports(self) -> Sequence[Port]: ...
    @property
    def proxy(self) -> _ProxyLike | None: ...


@dataclass(frozen=True, order=True)
class Opening:
    """One port of a node that its packet filter opens, and the nodes it is open to."""

    identity: str
    port: Port
    kind: OpeningKind  # the identity's mTLS proxy, its permissive plaintext port, or L4
    sources: tuple[str, ...]  # node names, sorted; empty: open to nobody (yet)

    @property
    def name(self) -> str:
        """Stable and readable: `db:5432/tcp`; the firewall's rule and set names."""
        return f"{self.identity}:{self.port}"


class Flows:
    """Who may open connections to whom, as nodes: the access table indexed once, then
    asked per node (a host asks for itself, `review` for every node it shows)."""

    def __init__(
        self,
        identities: Mapping[str, _IdentityLike],
        table: AccessTable,
        *,
        nodes: Iterable[str] = (),
        ops: Iterable[str] = (),
        permissive: bool = False,
    ) -> None:
        self.identities = identities
        self.nodes = frozenset(nodes) | {n for i in identities.values() for n in i.nodes}
        self.ops = frozenset(ops)
        self.permissive = permissive
        # callee -> callers whose grants open something: a proxy (L7) or a port (L4)
        self._proxy_callers: dict[str, set[str]] = defaultdict(set)
        self._port_callers: dict[tuple[str, Port], set[str]] = defaultdict(set)
        self._callees: dict[str, set[str]] = defaultdict(set)  # caller -> those callees
        for caller, callee in table.edges():
            if callee in identities and identities[callee].proxy is not None:
                self._proxy_callers[callee].add(caller)
                self._callees[caller].add(callee)
        for grant in table.ports:
            self._port_callers[(grant.callee, grant.port)].add(grant.caller)
            self._callees[grant.caller].add(grant.callee)
        self._on: dict[str, list[str]] = defaultdict(list)
        for name in sorted(identities):
            for node in dict.fromkeys(identities[name].nodes):
                self._on[node].append(name)

    @classmethod
    def of(cls, mesh: Mesh, table: AccessTable) -> Flows:
        return cls(
            mesh.identities,
            table,
            nodes=mesh.nodes,
            ops=[name for name, node in mesh.nodes.items() if node.ops],
            permissive=mesh.mtls.mode == "permissive",
        )

    def _nodes_of(self, identities: Iterable[str], but: str) -> tuple[str, ...]:
        found = {n for i in identities if i in self.identities for n in self.identities[i].nodes}
        found.discard(but)
        return tuple(sorted(found))

    def openings(self, node: str) -> list[Opening]:
        """Every port `node` opens on the overlay: its identities' proxy listen ports (and
        plaintext ports in permissive mode) to the nodes of their L7 callers, their
        `ports` to the nodes of the callers allowed each port. Same-node callers do not
        cross the overlay, so `node` is never a source."""
        out: list[Opening] = []
        for name in self._on.get(node, ()):
            ident = self.identities[name]
            if ident.proxy is not None:
                sources = self._nodes_of(self._proxy_callers.get(name, ()), node)
                out.append(Opening(name, Port(ident.proxy.listen, "tcp"), "proxy", sources))
                if self.permissive:
                    plain = Port(ident.proxy.listen + 1, "tcp")
                    out.append(Opening(name, plain, "plaintext", sources))
            for port in dict.fromkeys(ident.ports):
                sources = self._nodes_of(self._port_callers.get((name, port), ()), node)
                out.append(Opening(name, port, "port", sources))
        return out

    def peers(self, node: str) -> set[str]:
        """The nodes `node` must peer with (`wireguard.peers: policy`): the nodes its
        openings admit, the nodes hosting what its identities call, and the `ops` nodes
        (every node when `node` is one of them). Symmetric: a in peers(b) iff b in
        peers(a)."""
        if node in self.ops:
            return set(self.nodes - {node})
        needed = {src for opening in self.openings(node) for src in opening.sources}
        for name in self._on.get(node, ()):
            needed.update(self._nodes_of(self._callees.get(name, ()), node))
        return (needed | self.ops) - {node}
