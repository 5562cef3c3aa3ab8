"""WireGuard configuration through the kernel module's generic netlink family
(`wireguard`, the interface `wg` itself uses), over our own netlink socket.

Selected by `open_backend` when there is no UAPI socket, i.e. when the link is of kind
`wireguard`. Every operation uses one socket: the family is resolved, then the device
dumped or changed; a batch of peer changes goes out as a few acknowledged messages of
at most MESSAGE_LIMIT bytes each (as `wg setconf` splits them), never one socket per
peer. Reading imports nothing beyond the standard library, so a no-op plan costs
what it costs on the UAPI path. Building messages and parsing answers are pure
functions over bytes (tests check them against pyroute2 and a real kernel).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshops.errors import MeshError
from meshops.providers.wireguard.keys import ZERO_KEY, b64_to_bytes, bytes_to_b64, check_key_bytes
from meshops.providers.wireguard.netlink import (
    NETLINK_GENERIC,
    NLMSG_ERROR,
    NetlinkError,
    Request,
    Socket,
    attribute,
    attributes,
    error_code,
    nested,
)
from meshops.providers.wireguard.state import (
    DeviceState,
    PeerConfig,
    PeerState,
    join_endpoint,
    normalise_allowed_ips,
    split_endpoint,
)

GENL_ID_CTRL, CTRL_CMD_GETFAMILY = 0x10, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2
FAMILY = b"wireguard"
WG_GENL_VERSION = 1
WG_CMD_GET_DEVICE, WG_CMD_SET_DEVICE = 0, 1
WGDEVICE_A_IFNAME, WGDEVICE_A_PRIVATE_KEY, WGDEVICE_A_PUBLIC_KEY = 2, 3, 4
WGDEVICE_A_LISTEN_PORT, WGDEVICE_A_PEERS = 6, 8
WGPEER_A_PUBLIC_KEY, WGPEER_A_PRESHARED_KEY, WGPEER_A_FLAGS, WGPEER_A_ENDPOINT = 1, 2, 3, 4
WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, WGPEER_A_LAST_HANDSHAKE_TIME = 5, 6
WGPEER_A_RX_BYTES, WGPEER_A_TX_BYTES, WGPEER_A_ALLOWEDIPS = 7, 8, 9
WGPEER_F_REMOVE_ME, WGPEER_F_REPLACE_ALLOWEDIPS = 1, 2
WGALLOWEDIP_A_FAMILY, WGALLOWEDIP_A_IPADDR, WGALLOWEDIP_A_CIDR_MASK = 1, 2, 3
# a set message stays well under the socket's send buffer (212 KiB by default);
# about 300 peers each
MESSAGE_LIMIT = 32 * 1024

_GENL = struct.Struct("=BBH")  # genlmsghdr: command, version, reserved
_U16, _U32, _U64 = struct.Struct("=H"), struct.Struct("=I"), struct.Struct("=Q")
_PORT = struct.Struct("!H")
_TIMESPEC = struct.Struct("=qq")


# --- messages (pure) --------------------------------------------------------------------


def family_request() -> bytes:
    """CTRL_CMD_GETFAMILY body asking for the `wireguard` family's id."""
    return _GENL.pack(CTRL_CMD_GETFAMILY, 1, 0) + attribute(CTRL_ATTR_FAMILY_NAME, FAMILY + b"\0")


def parse_family_id(body: bytes) -> int | None:
    for kind, payload in attributes(body[_GENL.size :]):
        if kind == CTRL_ATTR_FAMILY_ID:
            return int(_U16.unpack_from(payload)[0])
    return None


def _header(command: int) -> bytes:
    return _GENL.pack(command, WG_GENL_VERSION, 0)


def _ifname(name: str) -> bytes:
    return attribute(WGDEVICE_A_IFNAME, name.encode() + b"\0")


def get_device_body(name: str) -> bytes:
    return _header(WG_CMD_GET_DEVICE) + _ifname(name)


def device_body(name: str, *, private_key: bytes, listen_port: int) -> bytes:
    """WG_CMD_SET_DEVICE: the private key and listen port, both explicit."""
    check_key_bytes(private_key, what="private key")
    if not 0 <= listen_port < 65536:
        raise MeshError(f"WireGuard listen port {listen_port} is out of range")
    return (
        _header(WG_CMD_SET_DEVICE)
        + _ifname(name)
        + attribute(WGDEVICE_A_PRIVATE_KEY, private_key)
        + attribute(WGDEVICE_A_LISTEN_PORT, _U16.pack(listen_port))
    )


def peer_attribute(peer: PeerConfig) -> bytes:
    """One peer to add or update in place: keepalive and PSK always explicit (0 and the
    zero key clear them), allowed IPs replaced, never the peer set."""
    psk = peer.preshared_key if peer.preshared_key is not None else ZERO_KEY
    parts = [
        attribute(WGPEER_A_PUBLIC_KEY, b64_to_bytes(peer.public_key)),
        attribute(WGPEER_A_FLAGS, _U32.pack(WGPEER_F_REPLACE_ALLOWEDIPS)),
        attribute(WGPEER_A_PRESHARED_KEY, check_key_bytes(psk, what="preshared key")),
        attribute(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, _U16.pack(peer.keepalive_seconds)),
    ]
    if peer.endpoint is not None:
        parts.append(attribute(WGPEER_A_ENDPOINT, sockaddr(*split_endpoint(peer.endpoint))))
    ips = [_allowed_ip(cidr) for cidr in normalise_allowed_ips(peer.allowed_ips)]
    parts.append(nested(WGPEER_A_ALLOWEDIPS, *ips))
    return nested(0, *parts)


def removal_attribute(public_key: str) -> bytes:
    return nested(
        0,
        attribute(WGPEER_A_PUBLIC_KEY, b64_to_bytes(public_key)),
        attribute(WGPEER_A_FLAGS, _U32.pack(WGPEER_F_REMOVE_ME)),
    )


def peers_bodies(
    name: str, peers: Sequence[PeerConfig], *, remove: Sequence[str] = ()
) -> list[bytes]:
    """WG_CMD_SET_DEVICE bodies removing the peers keyed `remove`, then adding or
    updating `peers`, in order, split so no body passes MESSAGE_LIMIT (a peer is never
    split: ours have one or two allowed IPs)."""
    items = [removal_attribute(k) for k in remove] + [peer_attribute(p) for p in peers]
    head = _header(WG_CMD_SET_DEVICE) + _ifname(name)
    bodies: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for item in items:
        if chunk and size + len(item) > MESSAGE_LIMIT:
            bodies.append(head + nested(WGDEVICE_A_PEERS, *chunk))
            chunk, size = [], 0
        chunk.append(item)
        size += len(item)
    if chunk:
        bodies.append(head + nested(WGDEVICE_A_PEERS, *chunk))
    return bodies


def sockaddr(ip: str, port: int) -> bytes:
    """struct sockaddr_in / sockaddr_in6 as the kernel reads WGPEER_A_ENDPOINT."""
    address = ipaddress.ip_address(ip)
    if address.version == 4:
        return _U16.pack(socket.AF_INET) + _PORT.pack(port) + address.packed + bytes(8)
    return _U16.pack(socket.AF_INET6) + _PORT.pack(port) + bytes(4) + address.packed + bytes(4)


def parse_sockaddr(data: bytes) -> str | None:
    (family,) = _U16.unpack_from(data)
    (port,) = _PORT.unpack_from(data, 2)
    if family == socket.AF_INET and len(data) >= 8:
        return join_endpoint(socket.inet_ntop(socket.AF_INET, data[4:8]), port)
    if family == socket.AF_INET6 and len(data) >= 24:
        return join_endpoint(str(ipaddress.IPv6Address(data[8:24])), port)
    return None


def _allowed_ip(cidr: str) -> bytes:
    net = ipaddress.ip_network(cidr, strict=False)
    family = socket.AF_INET if net.version == 4 else socket.AF_INET6
    return nested(
        0,
        attribute(WGALLOWEDIP_A_FAMILY, _U16.pack(family)),
        attribute(WGALLOWEDIP_A_IPADDR, net.network_address.packed),
        attribute(WGALLOWEDIP_A_CIDR_MASK, bytes([net.prefixlen])),
    )


@dataclass
class _PeerParts:
    """One peer of a dump; the kernel may continue its allowed IPs in the next message."""

    fields: dict[int, bytes]
    allowed: list[str]


def parse_device(name: str, bodies: Iterable[bytes]) -> DeviceState:
    """Merge the WG_CMD_GET_DEVICE answers of one dump into a DeviceState. The kernel
    splits large peer lists, and even one peer's allowed IPs, across messages; the
    parts of one peer share its public key."""
    public_key: str | None = None
    listen_port: int | None = None
    peers: dict[bytes, _PeerParts] = {}
    for body in bodies:
        for kind, payload in attributes(body[_GENL.size :]):
            if kind == WGDEVICE_A_PUBLIC_KEY and public_key is None:
                public_key = bytes_to_b64(payload[:32])
            elif kind == WGDEVICE_A_LISTEN_PORT and listen_port is None:
                listen_port = int(_U16.unpack_from(payload)[0])
            elif kind == WGDEVICE_A_PEERS:
                for _, peer in attributes(payload):
                    _merge_peer(peers, peer)
    return DeviceState(
        name=name,
        public_key=public_key,
        listen_port=listen_port,
        peers={bytes_to_b64(key): _peer_state(key, parts) for key, parts in peers.items()},
    )


def _merge_peer(peers: dict[bytes, _PeerParts], data: bytes) -> None:
    fields = dict(attributes(data))
    key = fields.get(WGPEER_A_PUBLIC_KEY)
    if key is None or len(key) != 32:
        return
    parts = peers.get(key)
    if parts is None:
        parts = peers[key] = _PeerParts(fields, [])
    for _, item in attributes(fields.get(WGPEER_A_ALLOWEDIPS, b"")):
        cidr = _parse_allowed_ip(item)
        if cidr is not None:
            parts.allowed.append(cidr)


def _parse_allowed_ip(data: bytes) -> str | None:
    fields = dict(attributes(data))
    family = fields.get(WGALLOWEDIP_A_FAMILY)
    address = fields.get(WGALLOWEDIP_A_IPADDR)
    mask = fields.get(WGALLOWEDIP_A_CIDR_MASK)
    if family is None or address is None or not mask:
        return None
    af = _U16.unpack_from(family)[0]
    text = (
        socket.inet_ntop(socket.AF_INET, address[:4])
        if af == socket.AF_INET
        else str(ipaddress.IPv6Address(address[:16]))
    )
    return f"{text}/{mask[0]}"


def _peer_state(key: bytes, parts: _PeerParts) -> PeerState:
    fields = parts.fields
    endpoint = fields.get(WGPEER_A_ENDPOINT)
    handshake = fields.get(WGPEER_A_LAST_HANDSHAKE_TIME)
    seconds, nanos = _TIMESPEC.unpack_from(handshake) if handshake else (0, 0)
    psk = fields.get(WGPEER_A_PRESHARED_KEY)
    keepalive = fields.get(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL)
    return PeerState(
        public_key=bytes_to_b64(key),
        endpoint=parse_sockaddr(endpoint) if endpoint else None,
        allowed_ips=normalise_allowed_ips(parts.allowed),
        keepalive=(_U16.unpack_from(keepalive)[0] or None) if keepalive else None,
        preshared_key=None if not psk or psk[:32] == ZERO_KEY else psk[:32],
        last_handshake=(seconds + nanos / 1e9) if seconds or nanos else None,
        rx_bytes=_u64(fields.get(WGPEER_A_RX_BYTES)),
        tx_bytes=_u64(fields.get(WGPEER_A_TX_BYTES)),
    )


def _u64(data: bytes | None) -> int:
    return int(_U64.unpack_from(data)[0]) if data and len(data) >= 8 else 0


# --- the backend (I/O) ----------------------------------------------------------------


class NoWireguardFamily(Exception):
    """The kernel has no `wireguard` generic netlink family (no module loaded)."""


class GenetlinkBackend:
    """Kernel WireGuard over generic netlink, one socket per operation."""

    def read(self, name: str) -> DeviceState | None:
        try:
            with _Session(name, "get") as session:
                bodies = session.dump(get_device_body(name))
        except NoWireguardFamily:
            return None
        return None if bodies is None else parse_device(name, bodies)

    def configure_device(self, name: str, *, private_key: bytes, listen_port: int) -> None:
        body = device_body(name, private_key=private_key, listen_port=listen_port)
        self._set(name, "set device", [body])

    def set_peer(self, name: str, peer: PeerConfig) -> None:
        self._set(name, "set peer", peers_bodies(name, [peer]))

    def remove_peer(self, name: str, public_key: str) -> None:
        self._set(name, "remove peer", peers_bodies(name, [], remove=[public_key]))

    def set_peers(
        self, name: str, peers: Sequence[PeerConfig], *, remove: Sequence[str] = ()
    ) -> None:
        if peers or remove:
            self._set(name, "set peers", peers_bodies(name, peers, remove=remove))

    def _set(self, name: str, op: str, bodies: list[bytes]) -> None:
        try:
            with _Session(name, op) as session:
                session.change(bodies)
        except NoWireguardFamily:
            raise MeshError(
                f"WireGuard interface {name}: {op} failed: the kernel has no wireguard "
                "generic netlink family",
                hint="load the wireguard kernel module, or use wireguard-go",
            ) from None


class _Session:
    """One generic netlink socket with the wireguard family resolved on it."""

    def __init__(self, name: str, op: str) -> None:
        self.name = name
        self.op = op
        try:
            self.sock = Socket(NETLINK_GENERIC)
        except OSError as exc:
            raise self._failed(exc.errno or errno.EIO) from None

    def __enter__(self) -> _Session:
        try:
            self.family = self._family()
        except BaseException:
            self.sock.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.__exit__()

    def _family(self) -> int:
        try:
            for kind, body in self.sock.ask(GENL_ID_CTRL, family_request(), dump=False):
                if kind == NLMSG_ERROR:
                    code = error_code(body)
                    if code == errno.ENOENT:
                        raise NoWireguardFamily
                    raise self._failed(code)
                family = parse_family_id(body)
                if family is not None:
                    return family
        except OSError as exc:
            raise self._failed(exc.errno or errno.EIO) from None
        raise NoWireguardFamily

    def dump(self, body: bytes) -> list[bytes] | None:
        """The answers of a WG_CMD_GET_DEVICE dump; None when there is no such device."""
        bodies = []
        try:
            for kind, answer in self.sock.ask(self.family, body, dump=True):
                if kind == NLMSG_ERROR:
                    code = error_code(answer)
                    if code in (errno.ENODEV, errno.EOPNOTSUPP):
                        return None  # no such link, or a link of another kind
                    if code:
                        raise self._failed(code)
                elif kind == self.family:
                    bodies.append(answer)
        except OSError as exc:
            raise self._failed(exc.errno or errno.EIO) from None
        return bodies

    def change(self, bodies: list[bytes]) -> None:
        try:
            self.sock.change([Request(self.family, body) for body in bodies])
        except NetlinkError as exc:
            raise self._failed(exc.code) from None
        except OSError as exc:
            raise self._failed(exc.errno or errno.EIO) from None

    def _failed(self, code: int) -> MeshError:
        if code == errno.ENODEV:
            return MeshError(
                f"WireGuard interface {self.name} does not exist",
                hint="create the interface first (ensure_interface)",
            )
        return MeshError(
            f"WireGuard interface {self.name}: {self.op} failed: {os.strerror(code)}",
            hint="meshops needs root (CAP_NET_ADMIN) to configure WireGuard"
            if code in (errno.EPERM, errno.EACCES)
            else "check the values sent (keys, endpoint, allowed IPs)",
        )
