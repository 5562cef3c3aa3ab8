"""Read-only rtnetlink for the WireGuard provider, with the `socket` module: one link
by name with its addresses and main-table routes.

This is the read path of every plan: importing pyroute2 costs about a quarter of a
second on a busy 2-core machine, more than the whole no-op plan of a host. It only
reads; every change goes through pyroute2 in `link.py`. Building the three requests
and parsing the answers are pure functions over bytes.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from meshops.errors import MeshError
from meshops.providers.wireguard.state import LinkState

NETLINK_ROUTE = 0
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_INFO_KIND = 3, 4, 18, 1
IFA_ADDRESS = 1
RTA_DST, RTA_OIF, RTA_TABLE = 1, 4, 15
IFF_UP = 0x1
MAIN_TABLE = 254
RTN_UNICAST = 1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, ...
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_NLA_TYPE_MASK = 0x3FFF  # drops the nested / byte-order flags


@dataclass(frozen=True)
class Link:
    index: int
    kind: str | None
    mtu: int
    up: bool


# --- messages (pure) -----------------------------------------------------------------


def _align(n: int) -> int:
    return (n + 3) & ~3


def attribute(kind: int, payload: bytes) -> bytes:
    size = _ATTR.size + len(payload)
    return _ATTR.pack(size, kind) + payload + bytes(_align(size) - size)


def attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each rtattr in `data`; a truncated tail ends the walk."""
    at = 0
    while at + _ATTR.size <= len(data):
        size, kind = _ATTR.unpack_from(data, at)
        if size < _ATTR.size or at + size > len(data):
            return
        yield kind & _NLA_TYPE_MASK, data[at + _ATTR.size : at + size]
        at += _align(size)


def request(kind: int, flags: int, sequence: int, body: bytes) -> bytes:
    return _HEADER.pack(_HEADER.size + len(body), kind, flags, sequence, 0) + body


def link_body(name: str) -> bytes:
    """RTM_GETLINK body asking for one link by name."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return body + attribute(IFLA_IFNAME, name.encode() + b"\0")


def dump_body(kind: int) -> bytes:
    """RTM_GETADDR / RTM_GETROUTE dump body for every family."""
    if kind == RTM_GETADDR:
        return _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return _RTMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)


def messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, sequence, body) of each netlink message in one datagram."""
    at = 0
    while at + _HEADER.size <= len(data):
        size, kind, _, sequence, _ = _HEADER.unpack_from(data, at)
        if size < _HEADER.size or at + size > len(data):
            return
        yield kind, sequence, data[at + _HEADER.size : at + size]
        at += _align(size)


def error_code(body: bytes) -> int:
    """The positive errno of an NLMSG_ERROR body (0 is an acknowledgement)."""
    code: int = struct.unpack_from("=i", body)[0]
    return -code


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


# --- the socket (I/O) -----------------------------------------------------------------


class _Socket:
    def __init__(self, name: str) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.settimeout(5.0)
        self.sock.bind((0, 0))
        self.sequence = 0

    def close(self) -> None:
        self.sock.close()

    def exchange(self, kind: int, body: bytes, *, dump: bool) -> Iterator[tuple[int, bytes]]:
        """Send one request; yield (type, body) of its answers: every part of a dump up
        to NLMSG_DONE, or the single answer of a plain request."""
        self.sequence += 1
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else 0)
        self.sock.sendto(request(kind, flags, self.sequence, body), (0, 0))
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise MeshError(
                    f"WireGuard interface {self.name}: reading netlink failed: {reason}"
                ) from None
            for answer, sequence, payload in messages(chunk):
                if sequence != self.sequence:
                    continue
                if answer == NLMSG_DONE:
                    return
                yield answer, payload
                if answer == NLMSG_ERROR or not dump:
                    return


def read_link_state(name: str) -> LinkState | None:
    """The link named `name` with its addresses and main-table routes, or None."""
    sock = _Socket(name)
    try:
        link = None
        for kind, body in sock.exchange(RTM_GETLINK, link_body(name), dump=False):
            if kind == NLMSG_ERROR:
                code = error_code(body)
                if code in (errno.ENODEV, errno.ENOENT):
                    return None
                raise MeshError(
                    f"WireGuard interface {name}: read link failed: {os.strerror(code)}"
                )
            if kind == RTM_NEWLINK:
                link = parse_link(body)
        if link is None:
            return None
        addresses = _dump(sock, RTM_GETADDR, RTM_NEWADDR, link.index, parse_address)
        routes = _dump(sock, RTM_GETROUTE, RTM_NEWROUTE, link.index, parse_route)
    finally:
        sock.close()
    return LinkState(
        name=name,
        kind=link.kind,
        mtu=link.mtu,
        up=link.up,
        addresses=sort_addresses(addresses),
        routes=sort_networks(routes),
    )


def _dump(
    sock: _Socket, ask: int, answer: int, index: int, parse: Callable[[bytes, int], str | None]
) -> list[str]:
    found = []
    for kind, body in sock.exchange(ask, dump_body(ask), dump=True):
        if kind == NLMSG_ERROR:
            code = error_code(body)
            if code:
                raise MeshError(
                    f"WireGuard interface {sock.name}: netlink dump failed: {os.strerror(code)}"
                )
        elif kind == answer:
            text = parse(body, index)
            if text is not None:
                found.append(text)
    return found
