"""rtnetlink for the WireGuard provider, over our own netlink socket (`netlink.py`):
read one link by name with its addresses and main-table routes, and build the
requests that change them (create or delete the link, MTU, up, addresses, routes).

`link.py` sends each resource's changes as one batch on one socket. Building requests
and parsing answers are pure functions over bytes.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from meshops.errors import MeshError
from meshops.providers.wireguard.netlink import (
    NETLINK_ROUTE,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLMSG_ERROR,
    Request,
    Socket,
    attribute,
    attributes,
    error_code,
    messages,
    nested,
    request,
)
from meshops.providers.wireguard.state import LinkState

__all__ = ["Request", "attribute", "attributes", "error_code", "messages", "request"]

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_INFO_KIND = 3, 4, 18, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_TABLE = 1, 4, 15
IFF_UP = 0x1
MAIN_TABLE = 254
RTN_UNICAST = 1
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255

_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, ...


@dataclass(frozen=True)
class Link:
    index: int
    kind: str | None
    mtu: int
    up: bool


# --- messages (pure) -----------------------------------------------------------------


def link_body(name: str) -> bytes:
    """RTM_GETLINK body asking for one link by name."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return body + attribute(IFLA_IFNAME, name.encode() + b"\0")


def dump_body(kind: int) -> bytes:
    """RTM_GETADDR / RTM_GETROUTE dump body for every family."""
    if kind == RTM_GETADDR:
        return _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return _RTMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)


def parse_link(body: bytes) -> Link:
    _, _, index, flags, _ = _IFINFO.unpack_from(body)
    mtu = 0
    kind = None
    for attr, payload in attributes(body[_IFINFO.size :]):
        if attr == IFLA_MTU:
            (mtu,) = struct.unpack_from("=I", payload)
        elif attr == IFLA_LINKINFO:
            for info, value in attributes(payload):
                if info == IFLA_INFO_KIND:
                    kind = value.rstrip(b"\0").decode(errors="replace")
    return Link(index=index, kind=kind, mtu=mtu, up=bool(flags & IFF_UP))


def parse_address(body: bytes, index: int) -> str | None:
    """`ip/prefix` of an RTM_NEWADDR message on link `index` (its IFA_ADDRESS), else None."""
    family, prefixlen, _, _, at_index = _IFADDR.unpack_from(body)
    if at_index != index:
        return None
    for attr, payload in attributes(body[_IFADDR.size :]):
        if attr == IFA_ADDRESS:
            return f"{_ip_text(family, payload)}/{prefixlen}"
    return None


def parse_route(body: bytes, index: int) -> str | None:
    """Destination CIDR of a main-table unicast route out of link `index`, else None."""
    family, dst_len, _, _, table, _, _, kind, _ = _RTMSG.unpack_from(body)
    if kind != RTN_UNICAST:
        return None
    dst = None
    oif = None
    for attr, payload in attributes(body[_RTMSG.size :]):
        if attr == RTA_DST:
            dst = _ip_text(family, payload)
        elif attr == RTA_OIF:
            (oif,) = struct.unpack_from("=I", payload)
        elif attr == RTA_TABLE:
            (table,) = struct.unpack_from("=I", payload)
    if oif != index or table != MAIN_TABLE:
        return None
    if dst is None:
        dst = "::" if family == socket.AF_INET6 else "0.0.0.0"
    return f"{dst}/{dst_len}"


def _ip_text(family: int, packed: bytes) -> str:
    """Address text as Python's ipaddress prints it (inet_ntop spells some IPv6
    addresses differently, `::0.1.0.0` for `::1:0`)."""
    if family == socket.AF_INET:
        return socket.inet_ntop(family, packed)
    return str(ipaddress.IPv6Address(packed))


def sort_addresses(texts: list[str]) -> tuple[str, ...]:
    """Interface addresses in the order LinkState promises (v4 first, by address)."""
    parsed = {t: ipaddress.ip_interface(t) for t in texts}
    return tuple(sorted(parsed, key=lambda t: _order(parsed[t])))


def sort_networks(texts: list[str]) -> tuple[str, ...]:
    nets = sorted({ipaddress.ip_network(t, strict=False) for t in texts}, key=_net_order)
    return tuple(str(n) for n in nets)


def _order(
    iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
) -> tuple[int, int, int]:
    return (iface.version, int(iface.ip), iface.network.prefixlen)


def _net_order(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)


# --- changes (pure): each one request, sent in a batch by `change` ----------------------


def create_wireguard_link(name: str, mtu: int) -> Request:
    """`ip link add NAME mtu MTU type wireguard`; EEXIST means it is there already."""
    info = nested(IFLA_LINKINFO, attribute(IFLA_INFO_KIND, b"wireguard"))
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _name(name)
    body += attribute(IFLA_MTU, struct.pack("=I", mtu)) + info
    return Request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL, ok=(errno.EEXIST,))


def delete_link(index: int) -> Request:
    return Request(RTM_DELLINK, _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0), ok=(errno.ENODEV,))


def set_link(index: int, *, mtu: int | None = None, up: bool | None = None) -> Request:
    """`ip link set` of the MTU and/or the up flag (a flag not named stays as it is)."""
    flags, change = (IFF_UP if up else 0, IFF_UP) if up is not None else (0, 0)
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change)
    if mtu is not None:
        body += attribute(IFLA_MTU, struct.pack("=I", mtu))
    return Request(RTM_NEWLINK, body)


def add_address(index: int, address: str) -> Request:
    """`ip addr add`; EEXIST means it was there already."""
    iface = ipaddress.ip_interface(address)
    return Request(RTM_NEWADDR, _address_body(index, iface), NLM_F_CREATE | NLM_F_EXCL,
                   ok=(errno.EEXIST,))  # fmt: skip


def delete_address(index: int, address: str) -> Request:
    iface = ipaddress.ip_interface(address)
    return Request(RTM_DELADDR, _address_body(index, iface),
                   ok=(errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH))  # fmt: skip


def replace_route(index: int, cidr: str) -> Request:
    """`ip route replace CIDR dev LINK`: protocol boot, link scope for IPv4, so it looks
    the same whichever tool made it."""
    net = ipaddress.ip_network(cidr, strict=False)
    scope = RT_SCOPE_LINK if net.version == 4 else RT_SCOPE_UNIVERSE
    header = _RTMSG.pack(_family(net.version), net.prefixlen, 0, 0, MAIN_TABLE, RTPROT_BOOT,
                         scope, RTN_UNICAST, 0)  # fmt: skip
    return Request(RTM_NEWROUTE, header + _route_attrs(index, net), NLM_F_CREATE | NLM_F_REPLACE)


def delete_route(index: int, cidr: str) -> Request:
    """Delete the main-table route to CIDR out of the link, whatever its scope and
    protocol (scope "nowhere" and protocol 0 match any)."""
    net = ipaddress.ip_network(cidr, strict=False)
    header = _RTMSG.pack(_family(net.version), net.prefixlen, 0, 0, MAIN_TABLE, 0,
                         RT_SCOPE_NOWHERE, 0, 0)  # fmt: skip
    return Request(RTM_DELROUTE, header + _route_attrs(index, net), ok=(errno.ESRCH, errno.ENOENT))


def _name(name: str) -> bytes:
    return attribute(IFLA_IFNAME, name.encode() + b"\0")


def _family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


def _address_body(index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> bytes:
    header = _IFADDR.pack(_family(iface.version), iface.network.prefixlen, 0, 0, index)
    packed = iface.ip.packed
    return header + attribute(IFA_LOCAL, packed) + attribute(IFA_ADDRESS, packed)


def _route_attrs(index: int, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bytes:
    dst = attribute(RTA_DST, net.network_address.packed) if net.prefixlen else b""
    return dst + attribute(RTA_OIF, struct.pack("=I", index))


# --- the socket (I/O) -----------------------------------------------------------------


def route_socket(name: str) -> Socket:
    """A NETLINK_ROUTE socket; a failure to open one names the interface."""
    try:
        return Socket(NETLINK_ROUTE)
    except OSError as exc:
        raise _failed(name, "open rtnetlink", exc) from None


def _failed(name: str, what: str, exc: OSError) -> MeshError:
    reason = exc.strerror or type(exc).__name__
    return MeshError(f"WireGuard interface {name}: {what} failed: {reason}")


def find_link(sock: Socket, name: str) -> Link | None:
    """The link named `name` on this socket, or None."""
    try:
        for kind, body in sock.ask(RTM_GETLINK, link_body(name), dump=False):
            if kind == NLMSG_ERROR:
                code = error_code(body)
                if code in (errno.ENODEV, errno.ENOENT):
                    return None
                raise MeshError(
                    f"WireGuard interface {name}: read link failed: {os.strerror(code)}"
                )
            if kind == RTM_NEWLINK:
                return parse_link(body)
    except OSError as exc:
        raise _failed(name, "reading netlink", exc) from None
    return None


def read_link_state(name: str) -> LinkState | None:
    """The link named `name` with its addresses and main-table routes, or None."""
    with route_socket(name) as sock:
        link = find_link(sock, name)
        if link is None:
            return None
        addresses = _dump(sock, name, RTM_GETADDR, RTM_NEWADDR, link.index, parse_address)
        routes = _dump(sock, name, RTM_GETROUTE, RTM_NEWROUTE, link.index, parse_route)
    return LinkState(
        name=name,
        kind=link.kind,
        mtu=link.mtu,
        up=link.up,
        addresses=sort_addresses(addresses),
        routes=sort_networks(routes),
    )


def _dump(
    sock: Socket,
    name: str,
    ask: int,
    answer: int,
    index: int,
    parse: Callable[[bytes, int], str | None],
) -> list[str]:
    found = []
    try:
        for kind, body in sock.ask(ask, dump_body(ask), dump=True):
            if kind == NLMSG_ERROR:
                code = error_code(body)
                if code:
                    raise MeshError(
                        f"WireGuard interface {name}: netlink dump failed: {os.strerror(code)}"
                    )
            elif kind == answer:
                text = parse(body, index)
                if text is not None:
                    found.append(text)
    except OSError as exc:
        raise _failed(name, "reading netlink", exc) from None
    return found
