"""Netlink with the `socket` module: message framing and one socket that asks, dumps
and changes. `rtnl` (links, addresses, routes) and `genetlink` (kernel WireGuard) build
their messages on it.

pyroute2 would do the same at the cost of about a quarter of a second of import on a
busy 2-core machine, more than a whole no-op host plan. Framing and parsing are pure
functions over bytes; `Socket` only moves them.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

NETLINK_ROUTE, NETLINK_GENERIC = 0, 16
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
_NLA_TYPE_MASK = 0x3FFF  # drops the nested / byte-order flags
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 270, 10, 11
TIMEOUT_SECONDS = 5.0

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_ATTR = struct.Struct("=HH")  # nlattr: length, type


# --- framing (pure) -------------------------------------------------------------------


def align(n: int) -> int:
    return (n + 3) & ~3


def attribute(kind: int, payload: bytes) -> bytes:
    size = _ATTR.size + len(payload)
    return _ATTR.pack(size, kind) + payload + bytes(align(size) - size)


def nested(kind: int, *parts: bytes) -> bytes:
    """An attribute holding attributes (NLA_F_NESTED set, as the kernel wants it)."""
    return attribute(kind | NLA_F_NESTED, b"".join(parts))


def attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each attribute in `data`; a truncated tail ends the walk."""
    at = 0
    while at + _ATTR.size <= len(data):
        size, kind = _ATTR.unpack_from(data, at)
        if size < _ATTR.size or at + size > len(data):
            return
        yield kind & _NLA_TYPE_MASK, data[at + _ATTR.size : at + size]
        at += align(size)


def request(kind: int, flags: int, sequence: int, body: bytes) -> bytes:
    return _HEADER.pack(_HEADER.size + len(body), kind, flags, sequence, 0) + body


def messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, sequence, body) of each netlink message in one datagram."""
    at = 0
    while at + _HEADER.size <= len(data):
        size, kind, _, sequence, _ = _HEADER.unpack_from(data, at)
        if size < _HEADER.size or at + size > len(data):
            return
        yield kind, sequence, data[at + _HEADER.size : at + size]
        at += align(size)


def error_code(body: bytes) -> int:
    """The positive errno of an NLMSG_ERROR body (0 is an acknowledgement)."""
    code: int = struct.unpack_from("=i", body)[0]
    return -code


@dataclass(frozen=True)
class Request:
    """One change to send: message type, extra flags (NLM_F_CREATE...) and body.
    `ok` lists errnos that mean "already so" (an address that is already there)."""

    kind: int
    body: bytes
    flags: int = 0
    ok: tuple[int, ...] = ()


class NetlinkError(Exception):
    """The kernel refused request `index` of a batch with errno `code`."""

    def __init__(self, code: int, index: int) -> None:
        super().__init__(os.strerror(code))
        self.code = code
        self.index = index


# --- the socket (I/O) -------------------------------------------------------------------


class Socket:
    """One netlink socket of `protocol`, used for every request of one operation."""

    def __init__(self, protocol: int) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        try:
            self.sock.settimeout(TIMEOUT_SECONDS)
            self.sock.bind((0, 0))
            # an error answer quotes only the failed request's header, not its body
            # (a batch of peers can be tens of kilobytes)
            self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        except OSError:
            self.sock.close()
            raise
        self.sequence = 0

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def ask(self, kind: int, body: bytes, *, dump: bool) -> Iterator[tuple[int, bytes]]:
        """Send one request; yield (type, body) of its answers: every part of a dump up
        to NLMSG_DONE, or the single answer of a plain request. An NLMSG_ERROR answer
        is yielded too (the caller reads its errno), and so is a dump that ends in
        error (its NLMSG_DONE carries the errno), as an NLMSG_ERROR."""
        self.sequence += 1
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else 0)
        self.sock.sendto(request(kind, flags, self.sequence, body), (0, 0))
        while True:
            for answer, payload in self._answers():
                if answer == NLMSG_DONE:
                    if len(payload) >= 4 and error_code(payload) > 0:
                        yield NLMSG_ERROR, payload
                    return
                yield answer, payload
                if answer == NLMSG_ERROR or not dump:
                    return

    def change(self, requests: Sequence[Request]) -> list[bool]:
        """Send `requests` in order on this one socket, each acknowledged; per request,
        True when it changed something, False when the kernel answered an errno of its
        `ok` ("already so"). Stops at the first refusal with NetlinkError: a later
        request may depend on an earlier one (an address on the link just made)."""
        changed = []
        for index, item in enumerate(requests):
            self.sequence += 1
            flags = NLM_F_REQUEST | NLM_F_ACK | item.flags
            self.sock.sendto(request(item.kind, flags, self.sequence, item.body), (0, 0))
            code = self._ack()
            if code and code not in item.ok:
                raise NetlinkError(code, index)
            changed.append(code == 0)
        return changed

    def _ack(self) -> int:
        while True:
            for answer, payload in self._answers():
                if answer == NLMSG_ERROR:
                    return error_code(payload)

    def _answers(self) -> Iterator[tuple[int, bytes]]:
        """The messages of one datagram that answer the current request."""
        chunk = self.sock.recv(1 << 16)
        for answer, sequence, payload in messages(chunk):
            if sequence == self.sequence:
                yield answer, payload
