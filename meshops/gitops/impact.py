"""Per-node impact of a change, computed from the two meshes alone (pure).

A stand-in for the engine's per-node plan: every node peers with every other node, a
removed node disappears as a peer everywhere, an endpoint or address change is one
peer changed in place on the others, identity placements add or remove certificates,
and a proxy whose inputs changed (its settings, the access rules into its identity,
the mTLS settings) is re-rendered and reloaded. What only live state can tell (key
rotations, expiring certificates) is the engine's to report.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from meshops.model.mesh import Mesh
from meshops.policy import AccessTable
from meshops.policy.flows import Flows, Opening

NodeStatus = Literal["added", "removed", "changed"]
Placements = dict[str, list[str]]  # node -> identities placed on it


@dataclass(frozen=True)
class NodeImpact:
    """What a change does on one host."""

    node: str
    status: NodeStatus
    own_changes: tuple[str, ...] = ()  # this node's own entry: endpoint, recipient, ...
    certs_added: tuple[str, ...] = ()  # identities newly issued here
    certs_removed: tuple[str, ...] = ()
    certs_changed: tuple[str, ...] = ()  # reissued: SANs, lifetime, key type, trust domain
    peer_count: int = 0  # peers at head (every other node)
    peers_added: tuple[str, ...] = ()
    peers_removed: tuple[str, ...] = ()
    peers_changed: tuple[str, ...] = ()  # changed in place: endpoint, allowed IPs
    # whole-mesh cases, kept as flags so a 1,000-node change stays O(nodes) in size:
    all_peers_added: bool = False  # a new node: every one of its peer_count peers is new
    all_peers_changed: bool = False  # keepalive / network changed: every peer, in place
    proxies_changed: tuple[str, ...] = ()  # proxy addresses re-rendered (added, changed, removed)
    session_resets: tuple[str, ...] = ()  # why this node's tunnels must handshake again
    reloads: tuple[str, ...] = ()  # commands run: proxy reloads and on_renew hooks
    hosts_changed: bool = False  # the managed /etc/hosts block changes
    # the packet filter: `+db:5432/tcp from api-1`, `api:8443/tcp: +web-2, -web-3`,
    # `-db:53/udp`, `icmp off` (firewall.* settings)
    firewall_changes: tuple[str, ...] = ()


def _peer_view(mesh: Mesh, node: str) -> tuple[Any, ...]:
    entry = mesh.nodes[node]
    return (str(entry.endpoint), entry.address, entry.address6, mesh.wireguard_on(node))


def _cert_inputs(mesh: Mesh, node: str, identity: str) -> tuple[Any, ...]:
    ident, host = mesh.identities[identity], mesh.nodes[node]
    return (
        mesh.mesh.trust_domain,
        mesh.mesh.domain,
        float(mesh.leaf_ttl(identity)),
        mesh.leaf_key_type(identity),
        tuple(ident.dns),
        tuple(str(ip) for ip in ident.ips),
        host.address,
        host.address6,
        mesh.wireguard.network,
        mesh.wireguard_on(node),
        tuple(mesh.underlay_ips(node)),
    )


def _proxy_inputs(mesh: Mesh, table: AccessTable, identity: str) -> tuple[Any, ...] | None:
    proxy = mesh.identities[identity].proxy
    if proxy is None:
        return None
    return (proxy.model_dump(mode="json"), table.rules_for(identity), mesh.mtls, mesh.mesh)


def _proxy_address(mesh: Mesh, identity: str) -> str:
    proxy = mesh.identities[identity].proxy
    assert proxy is not None
    return f'proxy.{proxy.kind}["{identity}"]'


def _own_changes(before: Mesh, after: Mesh, node: str) -> list[str]:
    old, new = before.nodes[node], after.nodes[node]
    out = []
    if old.endpoint != new.endpoint:
        out.append(f"endpoint {old.endpoint} -> {new.endpoint}")
    if old.address != new.address or old.address6 != new.address6:
        out.append("overlay address changed")
    if before.wireguard_on(node) != after.wireguard_on(node):
        out.append(
            "WireGuard turned on"
            if after.wireguard_on(node)
            else "WireGuard turned off (certificates only): its peers go everywhere"
        )
    if before.keys_of(node) != after.keys_of(node):
        out.append(
            "keys move to the host: the node CA and WireGuard key of its request replace "
            "the sealed ones"
            if after.host_held(node)
            else "keys become sealed: new keys sealed to its recipient replace its own"
        )
    elif old.recipient != new.recipient and not after.host_held(node):
        out.append("recipient changed: its node CA and WireGuard keys are resealed")
    if old.dns != new.dns or old.ips != new.ips:
        out.append("extra names changed: node CA reissued")
    if before.ca.key_type != after.ca.key_type or before.ca.node_ca_ttl != after.ca.node_ca_ttl:
        out.append("CA settings changed: node CA reissued")
    if before.wireguard.interface != after.wireguard.interface:
        out.append(f"interface {before.wireguard.interface} -> {after.wireguard.interface}")
    if before.wireguard.port != after.wireguard.port:
        out.append(f"listen port {before.wireguard.port} -> {after.wireguard.port}")
    if before.wireguard.mtu != after.wireguard.mtu:
        out.append(f"mtu {before.wireguard.mtu} -> {after.wireguard.mtu}")
    return out


def _hosts_view(mesh: Mesh) -> tuple[Any, ...]:
    entries = tuple(
        sorted(
            (n, e.address, e.address6, mesh.wireguard_on(n), tuple(mesh.underlay_ips(n)))
            for n, e in mesh.nodes.items()
        )
    )
    return (mesh.mesh.domain, mesh.wireguard.network, entries)


def node_impacts(
    before: Mesh | None,
    after: Mesh,
    before_table: AccessTable | None = None,
    after_table: AccessTable | None = None,
) -> list[NodeImpact]:
    """The impact on every node the change touches, sorted by node; quiet nodes omitted."""
    from meshops.model.checks import access_table

    new_on = _placement_index(after)
    if before is None:
        flows = Flows.of(after, access_table(after) if after_table is None else after_table)
        return [_added(after, new_on, n, flows) for n in sorted(after.nodes)]
    old_on = _placement_index(before)
    old_table = access_table(before) if before_table is None else before_table
    new_table = access_table(after) if after_table is None else after_table
    old_nodes, new_nodes = set(before.nodes), set(after.nodes)
    added = tuple(sorted(new_nodes - old_nodes))
    removed = tuple(sorted(old_nodes - new_nodes))
    kept = sorted(old_nodes & new_nodes)
    every_peer = (
        before.wireguard.keepalive != after.wireguard.keepalive
        or before.wireguard.network != after.wireguard.network
        or before.wireguard.network6 != after.wireguard.network6
    )
    changed_peers = [n for n in kept if _peer_view(before, n) != _peer_view(after, n)]
    old_flows, new_flows = Flows.of(before, old_table), Flows.of(after, new_table)
    by_policy = "policy" in (before.wireguard.peers, after.wireguard.peers)
    settings = _firewall_settings(before, after)
    hosts_changed = _hosts_view(before) != _hosts_view(after)
    resets: tuple[str, ...] = ()
    if before.wireguard.interface != after.wireguard.interface:
        resets = (
            f"interface {before.wireguard.interface} -> {after.wireguard.interface} is "
            "recreated: every tunnel handshakes again",
        )
    impacts = [_added(after, new_on, n, new_flows) for n in added]
    impacts += [_removed(old_on, n, len(new_nodes)) for n in removed]
    for node in kept:
        certs, reloads = _certs(before, after, old_on, new_on, node)
        proxies, proxy_reloads = _proxies(
            (before, old_table, old_on), (after, new_table, new_on), node
        )
        peers = (len(new_nodes) - 1, added, removed)
        if by_policy:  # only a peers: policy mesh needs each node's own peer set
            old_peers, new_peers = _peers(before, old_flows, node), _peers(after, new_flows, node)
            peers = (
                len(new_peers),
                tuple(sorted(new_peers - old_peers)),
                tuple(sorted(old_peers - new_peers)),
            )
        impact = NodeImpact(
            node,
            "changed",
            own_changes=tuple(_own_changes(before, after, node)),
            certs_added=certs[0],
            certs_removed=certs[1],
            certs_changed=certs[2],
            peer_count=peers[0],
            peers_added=peers[1],
            peers_removed=peers[2],
            peers_changed=() if every_peer else tuple(n for n in changed_peers if n != node),
            all_peers_changed=every_peer,
            proxies_changed=proxies,
            session_resets=resets,
            reloads=tuple(sorted(set(reloads) | set(proxy_reloads))),
            hosts_changed=hosts_changed,
            firewall_changes=(
                *settings,
                *_openings_delta(
                    _filtered(before, old_flows, node), _filtered(after, new_flows, node)
                ),
            ),
        )
        if _eventful(impact):
            impacts.append(impact)
    return sorted(impacts, key=lambda i: i.node)


def _eventful(impact: NodeImpact) -> bool:
    return any(
        (
            impact.own_changes,
            impact.certs_added,
            impact.certs_removed,
            impact.certs_changed,
            impact.peers_added,
            impact.peers_removed,
            impact.peers_changed,
            impact.all_peers_changed,
            impact.proxies_changed,
            impact.session_resets,
            impact.reloads,
            impact.hosts_changed,
            impact.firewall_changes,
        )
    )


def _peers(mesh: Mesh, flows: Flows, node: str) -> set[str]:
    if mesh.wireguard.peers == "policy":
        return flows.peers(node) & set(mesh.nodes)
    return set(mesh.nodes) - {node}


def _filtered(mesh: Mesh, flows: Flows, node: str) -> list[Opening]:
    """The openings of `node`'s packet filter (none when meshops manages none)."""
    return flows.openings(node) if mesh.firewall.enabled else []


def _firewall_settings(before: Mesh, after: Mesh) -> list[str]:
    old, new = before.firewall, after.firewall
    if old.enabled != new.enabled:
        return ["firewall on: inbound overlay default deny" if new.enabled else "firewall off"]
    if not new.enabled:
        return []
    out = []
    if old.icmp != new.icmp:
        out.append("icmp on" if new.icmp else "icmp off")
    if old.log != new.log:
        out.append("drop logging on" if new.log else "drop logging off")
    if before.wireguard.interface != after.wireguard.interface:
        out.append(f"filters {after.wireguard.interface}")
    return out


def _openings_delta(before: list[Opening], after: list[Opening]) -> list[str]:
    """What opens, closes, or lets other nodes in, by opening name."""
    old = {o.name: o for o in before}
    new = {o.name: o for o in after}
    out = []
    for name in sorted(old.keys() | new.keys()):
        if name not in old:
            out.append(f"+{name} from {', '.join(new[name].sources) or 'nobody yet'}")
        elif name not in new:
            out.append(f"-{name}")
        elif old[name].sources != new[name].sources:
            gained = sorted(set(new[name].sources) - set(old[name].sources))
            lost = sorted(set(old[name].sources) - set(new[name].sources))
            delta = [f"+{n}" for n in gained] + [f"-{n}" for n in lost]
            out.append(f"{name}: {', '.join(delta)}")
    return out


def _hooks(mesh: Mesh, identity: str) -> Iterable[str]:
    return (shlex.join(argv) for argv in mesh.identities[identity].on_renew)


def _placement_index(mesh: Mesh) -> dict[str, list[str]]:
    """node -> identities placed on it, sorted; built once instead of per node."""
    index: dict[str, list[str]] = {name: [] for name in mesh.nodes}
    for identity in sorted(mesh.identities):
        for node in mesh.identities[identity].nodes:
            index.setdefault(node, []).append(identity)
    return index


def _certs(
    before: Mesh, after: Mesh, old_on: Placements, new_on: Placements, node: str
) -> tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], list[str]]:
    old, new = set(old_on.get(node, ())), set(new_on.get(node, ()))
    changed = tuple(
        i
        for i in sorted(old & new)
        if _cert_inputs(before, node, i) != _cert_inputs(after, node, i)
    )
    added = tuple(sorted(new - old))
    reloads = [hook for i in (*added, *changed) for hook in _hooks(after, i)]
    return (added, tuple(sorted(old - new)), changed), reloads


Side = tuple[Mesh, AccessTable, Placements]


def _proxies(old: Side, new: Side, node: str) -> tuple[tuple[str, ...], list[str]]:
    """Proxies on `node` whose rendered config differs, and their reload commands."""
    addresses: set[str] = set()
    reloads: list[str] = []
    old_here, new_here = set(old[2].get(node, ())), set(new[2].get(node, ()))
    for identity in sorted(old_here | new_here):
        before = _proxy_inputs(old[0], old[1], identity) if identity in old_here else None
        after = _proxy_inputs(new[0], new[1], identity) if identity in new_here else None
        if before == after:
            continue
        source = new[0] if after is not None else old[0]
        addresses.add(_proxy_address(source, identity))
        proxy = source.identities[identity].proxy
        if proxy is not None and proxy.reload:
            reloads.append(shlex.join(proxy.reload))
    return tuple(sorted(addresses)), reloads


def _added(after: Mesh, new_on: Placements, node: str, flows: Flows) -> NodeImpact:
    idents = new_on.get(node, [])
    proxies = tuple(sorted(_proxy_address(after, i) for i in idents if after.identities[i].proxy))
    reloads = {
        shlex.join(proxy.reload)
        for i in idents
        if (proxy := after.identities[i].proxy) is not None and proxy.reload
    }
    reloads |= {hook for i in idents for hook in _hooks(after, i)}
    return NodeImpact(
        node,
        "added",
        own_changes=(
            "new node: node CA issued for the key it enrolled, WireGuard key enrolled"
            if after.host_held(node)
            else "new node: node CA issued, WireGuard key created",
        ),
        certs_added=tuple(idents),
        peer_count=len(_peers(after, flows, node)),
        all_peers_added=True,
        proxies_changed=proxies,
        reloads=tuple(sorted(reloads)),
        hosts_changed=True,
        firewall_changes=tuple(_openings_delta([], _filtered(after, flows, node))),
    )


def _removed(old_on: Placements, node: str, remaining: int) -> NodeImpact:
    return NodeImpact(
        node,
        "removed",
        own_changes=(
            f"removed: its node CA is revoked (CRL) and it disappears as a peer on "
            f"{remaining} node{'s' if remaining != 1 else ''}",
        ),
        certs_removed=tuple(old_on.get(node, ())),
    )
