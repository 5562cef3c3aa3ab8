"""WireGuard on a host: `wireguard.interface`, `wireguard.address`, `wireguard.route` and
one `wireguard.peer["<node>"]` per other node.

Changes are per peer: an unchanged peer is never touched, so its session survives.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from meshops.engine.plan import Action, Change, Impact
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.errors import MeshError
from meshops.resources.host.scope import ROOT_NEED, WIREGUARD_NEED, HostScope

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime
    from meshops.providers.wireguard import PeerConfig, PeerState

# a session with a handshake this recent is alive (WireGuard re-keys every 2 minutes)
ROAMING_SESSION_SECONDS = 180


@dataclass(frozen=True)
class InterfaceLive:
    exists: bool
    mtu: int | None
    up: bool
    public_key: str | None
    listen_port: int | None


class InterfaceResource(Resource[InterfaceLive]):
    def __init__(self, scope: HostScope):
        self.scope = scope
        self.name = scope.mesh.wireguard.interface
        self.address = f'wireguard.interface["{self.name}"]'
        self.peers = PeerBatch(self.name)  # every peer resource of this interface

    def read(self, rt: Runtime) -> Observed[InterfaceLive]:
        link = self.scope.link()
        device = self.scope.device()
        live = InterfaceLive(
            exists=link is not None,
            mtu=link.mtu if link else None,
            up=bool(link and link.up),
            public_key=device.public_key if device else None,
            listen_port=device.listen_port if device else None,
        )
        return Observed(live, fingerprint_of(vars(live)))

    def plan(self, observed: Observed[InterfaceLive], rt: Runtime) -> Change:
        live = observed.value
        assert live is not None
        wg = self.scope.mesh.wireguard
        rec = self.scope.record.wireguard
        want_key = rec.public_key if rec else None
        after = {"mtu": wg.mtu, "listen_port": wg.port, "public_key": want_key, "up": True}
        before = (
            {"mtu": live.mtu, "listen_port": live.listen_port, "public_key": live.public_key,
             "up": live.up} if live.exists else None
        )  # fmt: skip
        needs: tuple[str, ...] = (ROOT_NEED, self.scope.key_need)
        if not live.exists:
            from meshops.providers.wireguard.userspace import support_problem

            if support_problem() is not None:
                needs += (WIREGUARD_NEED,)
            return Change(self.address, Action.CREATE, "interface missing", None, after,
                          needs=needs)  # fmt: skip
        reasons = []
        impact = Impact.IN_PLACE
        if live.public_key != want_key:
            reasons.append("private key differs from state.yaml's public key")
            impact = Impact.SESSION_RESET
        if live.listen_port != wg.port:
            reasons.append(f"listen port {live.listen_port} -> {wg.port}")
        if live.mtu != wg.mtu:
            reasons.append(f"mtu {live.mtu} -> {wg.mtu}")
        if not live.up:
            reasons.append("link is down")
        if not reasons:
            return Change(self.address, Action.NOOP, "", before, before)
        return Change(self.address, Action.UPDATE, "; ".join(reasons), before, after,
                      needs=needs, impact=impact)  # fmt: skip

    def apply(self, change: Change, rt: Runtime) -> None:
        from meshops.providers import wireguard as wgp

        wg = self.scope.mesh.wireguard
        private = self.scope.wg_private_key(rt)
        wgp.ensure_interface(self.name, mtu=wg.mtu)  # the MTU too
        # always both, explicitly: a restarted wireguard-go comes up with neither
        wgp.open_backend(self.name).configure_device(
            self.name, private_key=private, listen_port=wg.port
        )
        link = wgp.read_link(self.name)
        if link is not None and not link.up:
            # Peers first, then up, as wg-quick does: a peer with a keepalive added to
            # an up device costs a handshake inside the set request (999 peers: most
            # of a first apply); on the way up the device starts them by itself.
            self.peers.send(rt)
        wgp.set_up(self.name)
        self.scope.forget_wireguard()
        rt.shared["interface_key"] = self.scope.record.wireguard.public_key \
            if self.scope.record.wireguard else None  # fmt: skip


@dataclass(frozen=True)
class TunnelLive:
    exists: bool
    public_key: str | None
    peers: frozenset[str]


class RetiredTunnelResource(Resource[TunnelLive]):
    """The tunnel of a node whose WireGuard was turned off (certificates only). meshops'
    interface goes, with its peers and its wireguard-go: left up, it would keep the peer
    of a node removed from the mesh later. An interface of that name that meshops did not
    configure (another key, none of the peers it set) is someone else's: left alone."""

    def __init__(self, scope: HostScope):
        self.scope = scope
        self.name = scope.mesh.wireguard.interface
        self.address = f'wireguard.interface["{self.name}"]'

    def read(self, rt: Runtime) -> Observed[TunnelLive]:
        try:
            link, device = self.scope.link(), self.scope.device()
        except (MeshError, OSError):  # unreadable (no privileges): nothing we could remove
            link, device = None, None
        live = TunnelLive(
            exists=link is not None,
            public_key=device.public_key if device else None,
            peers=frozenset(device.peers) if device else frozenset(),
        )
        return Observed(live, fingerprint_of({**vars(live), "peers": sorted(live.peers)}))

    def ours(self, live: TunnelLive) -> bool:
        last = self.scope.last
        configured = set(last.get("peers", {}).values())
        return (live.public_key is not None and live.public_key == last.get("interface_key")) \
            or bool(live.peers & configured)  # fmt: skip

    def plan(self, observed: Observed[TunnelLive], rt: Runtime) -> Change:
        live = observed.value
        assert live is not None
        if not live.exists or not self.ours(live):
            return Change(self.address, Action.NOOP)
        before: dict[str, Any] = {"public_key": live.public_key, "peers": len(live.peers)}
        reason = (f"WireGuard is off for this node (certificates only): the tunnel and "
                  f"its {len(live.peers)} peer(s) go")  # fmt: skip
        return Change(self.address, Action.DELETE, reason, before, None, needs=(ROOT_NEED,),
                      impact=Impact.SESSION_RESET)  # fmt: skip

    def apply(self, change: Change, rt: Runtime) -> None:
        from meshops.providers import wireguard as wgp

        wgp.delete_interface(self.name)
        self.scope.forget_wireguard()
        rt.shared["interface_key"] = None
        rt.shared["peers"] = {node: None for node in self.scope.last.get("peers", {})}
        rt.shared["peer_endpoints"] = {n: None for n in self.scope.last.get("peer_endpoints", {})}


class AddressResource(Resource[tuple[str, ...]]):
    """The overlay address(es) on the interface; the prefix brings the mesh route."""

    def __init__(self, scope: HostScope, interface: InterfaceResource):
        self.scope = scope
        self.name = interface.name
        self.address = f'wireguard.address["{self.name}"]'
        self.depends_on = (interface.address,)
        wg = scope.mesh.wireguard
        want = [f"{ip}/{wg.network.prefixlen}" for ip in scope.overlay() if ip.version == 4]
        if wg.network6 is not None:
            want += [f"{ip}/64" for ip in scope.overlay() if ip.version == 6]
        self.want = tuple(sorted(want))

    def read(self, rt: Runtime) -> Observed[tuple[str, ...]]:
        link = self.scope.link()
        live = tuple(sorted(link.addresses)) if link else ()
        return Observed(live, fingerprint_of(live))

    def plan(self, observed: Observed[tuple[str, ...]], rt: Runtime) -> Change:
        live = observed.value or ()
        overlay = set(self._ours(live))
        if overlay == set(self.want):
            return Change(self.address, Action.NOOP, "", {"addresses": live}, {"addresses": live})
        add = sorted(set(self.want) - overlay)
        drop = sorted(overlay - set(self.want))
        reason = ", ".join([*(f"+{a}" for a in add), *(f"-{d}" for d in drop)])
        action = Action.CREATE if not overlay else Action.UPDATE
        return Change(self.address, action, reason, {"addresses": live},
                      {"addresses": list(self.want)}, needs=(ROOT_NEED,),
                      impact=Impact.IN_PLACE)  # fmt: skip

    def _ours(self, live: tuple[str, ...]) -> list[str]:
        """Addresses on the link that belong to the overlay networks (others are left)."""
        import ipaddress

        wg = self.scope.mesh.wireguard
        nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [wg.network]
        if wg.network6:
            nets.append(wg.network6)
        return [a for a in live if any(ipaddress.ip_interface(a).ip in n for n in nets)]

    def apply(self, change: Change, rt: Runtime) -> None:
        from meshops.providers import wireguard as wgp

        link = wgp.read_link(self.name)
        live = tuple(link.addresses) if link else ()
        add = [addr for addr in self.want if addr not in live]
        remove = [addr for addr in self._ours(live) if addr not in self.want]
        wgp.change_addresses(self.name, add=add, remove=remove)
        self.scope.forget_wireguard()


class RouteResource(Resource[tuple[str, ...]]):
    """The mesh network routed through the interface."""

    def __init__(self, scope: HostScope, addresses: AddressResource):
        self.scope = scope
        self.name = addresses.name
        self.address = f'wireguard.route["{self.name}"]'
        self.depends_on = (addresses.address,)
        wg = scope.mesh.wireguard
        self.want = tuple(str(n) for n in [wg.network, *([wg.network6] if wg.network6 else [])])

    def read(self, rt: Runtime) -> Observed[tuple[str, ...]]:
        link = self.scope.link()
        live = tuple(r for r in (link.routes if link else ()) if r in self.want)
        return Observed(live, fingerprint_of(live))

    def plan(self, observed: Observed[tuple[str, ...]], rt: Runtime) -> Change:
        live = set(observed.value or ())
        missing = [r for r in self.want if r not in live]
        if not missing:
            return Change(self.address, Action.NOOP)
        return Change(self.address, Action.CREATE, f"route {', '.join(missing)} missing", None,
                      {"routes": list(self.want)}, needs=(ROOT_NEED,))  # fmt: skip

    def apply(self, change: Change, rt: Runtime) -> None:
        from meshops.providers import wireguard as wgp

        wgp.ensure_routes(self.want, self.name)
        self.scope.forget_wireguard()


def resolve_endpoint(host: str, port: int) -> str:
    """An endpoint as WireGuard wants it (an IP); hostnames resolve at plan/apply time."""
    from meshops.model.types import is_ipv4

    if is_ipv4(host):
        return f"{host}:{port}"  # the common case, without building an address object
    import ipaddress

    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise MeshError(f"cannot resolve endpoint {host}:{port}: {exc.strerror}") from None
        ip = ipaddress.ip_address(sorted(i[4][0] for i in infos)[0])
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def host_routes(address: str, address6: str | None = None) -> tuple[str, ...]:
    """A peer's allowed IPs: its overlay address(es) as /32 and /128, normalised."""
    from meshops.model.types import is_ipv4
    from meshops.providers.wireguard.state import normalise_allowed_ips

    if address6 is None and is_ipv4(address):
        return (f"{address}/32",)  # already canonical: inet_pton takes only dotted quads
    return normalise_allowed_ips([f"{address}/32", *([f"{address6}/128"] if address6 else [])])


class PeerBatch:
    """The peer changes of one interface, sent to the device together.

    The engine applies changes one at a time, and one round trip per peer cost 3.6 s
    for 999 new peers. So the first peer change to apply (or the interface, before it
    brings a new link up) sends every actionable peer change of the plan in one
    request (removals first), and the later ones find theirs already sent. Each peer
    stays its own change: unchanged peers are not in the request, and the request
    never replaces the peer set. If it fails, every peer change of the request fails
    with that error (sent once, not once per peer); the
    next run plans again from what the device holds.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.peers: list[PeerResource] = []
        self.sent: set[str] = set()
        self.failed: dict[str, MeshError] = {}

    def apply(self, first: PeerResource, change: Change, rt: Runtime) -> None:
        if first.address in self.failed:
            raise self.failed[first.address]
        if first.address not in self.sent:
            self.send(rt, first=(first, change))

    def send(self, rt: Runtime, *, first: tuple[PeerResource, Change] | None = None) -> None:
        """Send `first` and every planned, not yet sent peer change in one request."""
        from meshops.providers.wireguard import open_backend

        batch = [first] if first is not None else []
        for peer in self.peers:
            planned = rt.planned.get(peer.address)
            if (
                (first is None or peer is not first[0])
                and peer.address not in self.sent
                and isinstance(planned, Change)
                and planned.action is not Action.NOOP
            ):
                batch.append((peer, planned))
        if not batch:
            return
        removals = [key for peer, change in batch for key in peer.removals(change)]
        settings = [want for peer, change in batch if (want := peer.setting(change))]
        try:
            open_backend(self.name).set_peers(self.name, settings, remove=removals)
        except MeshError as exc:
            self.failed.update((peer.address, exc) for peer, _ in batch)
            raise
        self.sent.update(peer.address for peer, _ in batch)


class PeerResource(Resource[Any]):
    """One other node as a WireGuard peer, identified by name, keyed by public key."""

    def __init__(self, scope: HostScope, interface: InterfaceResource, node: str,
                 old_key: str | None, want: PeerConfig | None, *,
                 old_endpoint: str | None = None, removal: str | None = None):  # fmt: skip
        self.scope = scope
        self.name = interface.name
        self.node = node
        self.address = f'wireguard.peer["{node}"]'
        self.depends_on = (interface.address,)
        self.old_key = old_key  # the key we configured last time, if any
        self.old_endpoint = old_endpoint  # the endpoint we configured last time, if known
        self.want = want  # None: the peer must go
        self.removal = removal or "node removed from the mesh"  # why it must go
        self.batch = interface.peers
        self.batch.peers.append(self)

    def read(self, rt: Runtime) -> Observed[Any]:
        device = self.scope.device()
        peers = device.peers if device else {}
        keys = {k for k in (self.old_key, self.want.public_key if self.want else None) if k}
        found = {k: peers.get(k) for k in sorted(keys)}
        # public facts only (never the preshared key); a plain line per key, as a
        # 1,000-peer plan reads 1,000 of them
        shown = ";".join(f"{k}={_public_line(p)}" for k, p in found.items())
        return Observed(found, fingerprint_of(shown))

    def plan(self, observed: Observed[Any], rt: Runtime) -> Change:
        from meshops.providers.wireguard import peer_matches

        found: dict[str, Any] = observed.value or {}
        want = self.want
        current = next((p for p in found.values() if p is not None), None)
        before = _peer_view(current) if current else None
        if want is None:
            if current is None:
                return Change(self.address, Action.NOOP)
            return Change(self.address, Action.DELETE, self.removal, before,
                          None, needs=(ROOT_NEED,))  # fmt: skip
        after = _peer_view(want)
        live_new = found.get(want.public_key)
        if live_new is None:
            if current is not None:
                return Change(self.address, Action.REPLACE, "public key changed", before, after,
                              needs=(ROOT_NEED,), impact=Impact.SESSION_RESET)  # fmt: skip
            return Change(self.address, Action.CREATE, "new peer", None, after,
                          needs=(ROOT_NEED,))  # fmt: skip
        if peer_matches(live_new, want) or self._roamed(live_new, want, rt):
            return Change(self.address, Action.NOOP, "", before, before)
        return Change(self.address, Action.UPDATE, _what_changed(live_new, want), before,
                      after, needs=(ROOT_NEED,), impact=Impact.IN_PLACE)  # fmt: skip

    def apply(self, change: Change, rt: Runtime) -> None:
        self.batch.apply(self, change, rt)
        rt.shared.setdefault("peers", {})[self.node] = self.want.public_key if self.want else None
        endpoint = self.want.endpoint if self.want else None
        rt.shared.setdefault("peer_endpoints", {})[self.node] = endpoint

    def security_first(self, change: Change) -> bool:
        # a removed node, or a replaced (possibly stolen) key, leaves before anything else
        return change.action in (Action.DELETE, Action.REPLACE)

    def removals(self, change: Change) -> list[str]:
        """Keys this change takes off the device (the old key of a replaced peer)."""
        if change.action not in (Action.DELETE, Action.REPLACE) or self.old_key is None:
            return []
        if self.want is not None and self.old_key == self.want.public_key:
            return []
        return [self.old_key]

    def setting(self, change: Change) -> PeerConfig | None:
        """The peer this change configures, None for a removal."""
        return None if change.action is Action.DELETE else self.want

    def _roamed(self, live: PeerState, want: PeerConfig, rt: Runtime) -> bool:
        """True when only the endpoint differs because WireGuard roamed: we configured
        this very endpoint before, and the session is alive, so the peer answered from
        another of its addresses. Setting it again would only fight the roaming on
        every run (a plan that never converges on multi-homed hosts)."""
        from meshops.providers.wireguard import peer_matches
        from meshops.providers.wireguard.state import normalise_endpoint

        if self.old_endpoint is None or want.endpoint is None or live.endpoint is None:
            return False
        if normalise_endpoint(self.old_endpoint) != normalise_endpoint(want.endpoint):
            return False
        if not peer_matches(replace(live.config, endpoint=want.endpoint), want):
            return False
        when = live.last_handshake
        return when is not None and 0 <= rt.now.timestamp() - when < ROAMING_SESSION_SECONDS


def _public_line(peer: PeerConfig | None) -> str:
    if peer is None:
        return "-"
    return f"{peer.endpoint}|{','.join(peer.allowed_ips)}|{peer.keepalive_seconds}"


def _peer_view(peer: PeerConfig) -> dict[str, Any]:
    return {
        "public_key": peer.public_key,
        "endpoint": peer.endpoint,
        "allowed_ips": list(peer.allowed_ips),
        "keepalive": peer.keepalive_seconds,
    }


def _what_changed(live: PeerConfig, want: PeerConfig) -> str:
    parts = []
    if (live.endpoint or None) != (want.endpoint or None):
        parts.append(f"endpoint changed: {live.endpoint} -> {want.endpoint}")
    if tuple(live.allowed_ips) != tuple(want.allowed_ips):
        parts.append(f"allowed IPs changed: {','.join(want.allowed_ips)}")
    if live.keepalive_seconds != want.keepalive_seconds:
        parts.append(f"keepalive {live.keepalive_seconds}s -> {want.keepalive_seconds}s")
    if (live.preshared_key or None) != (want.preshared_key or None):
        parts.append("preshared key changed")
    return "; ".join(parts) or "peer differs"
