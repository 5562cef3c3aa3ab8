"""Values the WireGuard provider reads and writes: plain frozen data, no I/O."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from meshops.errors import MeshError
from meshops.model.types import is_ipv4


@dataclass(frozen=True)
class PeerConfig:
    """What we configure for one peer. `allowed_ips` are normalised CIDRs, sorted."""

    public_key: str
    endpoint: str | None
    allowed_ips: tuple[str, ...]
    keepalive: int | None
    preshared_key: bytes | None = field(default=None, repr=False)

    @property
    def keepalive_seconds(self) -> int:
        """0 when keepalive is off (None and 0 mean the same thing)."""
        return self.keepalive or 0


@dataclass(frozen=True)
class PeerState(PeerConfig):
    """A peer as read from a live device: its configuration plus counters.

    `last_handshake` is unix seconds, None when there never was one.
    """

    last_handshake: float | None = None
    rx_bytes: int = 0
    tx_bytes: int = 0

    @property
    def config(self) -> PeerConfig:
        return PeerConfig(
            public_key=self.public_key,
            endpoint=self.endpoint,
            allowed_ips=self.allowed_ips,
            keepalive=self.keepalive,
            preshared_key=self.preshared_key,
        )


@dataclass(frozen=True)
class DeviceState:
    """A live WireGuard device. `peers` is keyed by base64 public key."""

    name: str
    public_key: str | None
    listen_port: int | None
    peers: dict[str, PeerState]


@dataclass(frozen=True)
class LinkState:
    """The network link behind a device, as the kernel reports it.

    `kind` is `wireguard` for the kernel implementation and `tun` for wireguard-go.
    `addresses` are interface strings (`10.42.0.1/16`), `routes` destination CIDRs of
    main-table routes through the link; both sorted.
    """

    name: str
    kind: str | None
    mtu: int
    up: bool
    addresses: tuple[str, ...]
    routes: tuple[str, ...]


class Backend(Protocol):
    """One implementation of the WireGuard configuration interface (UAPI or genetlink)."""

    def read(self, name: str) -> DeviceState | None:
        """The device's keys and peers, or None when there is no such device."""
        ...

    def configure_device(self, name: str, *, private_key: bytes, listen_port: int) -> None:
        """Set the private key and listen port, both explicitly."""
        ...

    def set_peer(self, name: str, peer: PeerConfig) -> None:
        """Add or update one peer in place, without resetting an unchanged session."""
        ...

    def remove_peer(self, name: str, public_key: str) -> None:
        """Remove one peer; other peers are untouched."""
        ...

    def set_peers(
        self, name: str, peers: Sequence[PeerConfig], *, remove: Sequence[str] = ()
    ) -> None:
        """Remove the peers keyed `remove`, then add or update `peers` in place, in as
        few requests as the backend allows; peers named in neither are untouched."""
        ...


def normalise_allowed_ips(cidrs: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """CIDRs in canonical text, deduplicated and sorted (v4 before v6)."""
    if len(cidrs) == 1 and cidrs[0].endswith("/32") and is_ipv4(cidrs[0][:-3]):
        return (cidrs[0],)  # a peer's one host route: already canonical (1,000 per apply)
    nets = set()
    for text in cidrs:
        try:
            nets.add(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise MeshError(f"WireGuard allowed IP {text!r} is not a CIDR") from None
    ordered = sorted(nets, key=lambda n: (n.version, n.network_address, n.prefixlen))
    return tuple(str(n) for n in ordered)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """`ip:port` or `[v6]:port` -> (ip, port); hostnames are resolved by the caller."""
    host, sep, port_text = endpoint.rpartition(":")
    if not sep or not port_text.isdigit():
        raise MeshError(f"WireGuard endpoint {endpoint!r} is not ip:port or [ipv6]:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise MeshError(
            f"WireGuard endpoint {endpoint!r} does not start with an IP address",
            hint="resolve host names before configuring the peer",
        ) from None
    port = int(port_text)
    if not 0 < port < 65536:
        raise MeshError(f"WireGuard endpoint {endpoint!r} has an invalid port")
    return str(address), port


def join_endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def normalise_endpoint(endpoint: str) -> str:
    host, _, port = endpoint.rpartition(":")
    if is_ipv4(host) and port.isdigit() and port[0] != "0" and int(port) < 65536:
        return endpoint  # already canonical, without building an address object
    return join_endpoint(*split_endpoint(endpoint))


def peer_matches(live: PeerConfig, desired: PeerConfig) -> bool:
    """True when `live` already is `desired` (what `set_peer` would not change).

    A desired endpoint of None accepts any live endpoint: peers learn endpoints from
    incoming handshakes, and neither backend can clear one.
    """
    if live.public_key != desired.public_key:
        return False
    if (
        live.allowed_ips == desired.allowed_ips
        and (desired.endpoint is None or live.endpoint == desired.endpoint)
        and live.keepalive_seconds == desired.keepalive_seconds
        and (live.preshared_key or None) == (desired.preshared_key or None)
    ):
        return True  # spelled the same: no need to normalise (1,000 peers per plan)
    if desired.endpoint is not None and (
        live.endpoint is None
        or normalise_endpoint(live.endpoint) != normalise_endpoint(desired.endpoint)
    ):
        return False
    return (
        normalise_allowed_ips(live.allowed_ips) == normalise_allowed_ips(desired.allowed_ips)
        and live.keepalive_seconds == desired.keepalive_seconds
        and (live.preshared_key or None) == (desired.preshared_key or None)
    )
