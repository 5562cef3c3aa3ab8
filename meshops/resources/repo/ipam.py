"""Overlay address allocation: stable, collision-free, pure.

A node keeps the address recorded for it; an explicit `address:` wins; a new node gets
the first free address at or after a position derived from its name, so allocations do
not depend on the order nodes were added. A released address stays quarantined (not
handed out) until its old node CA has expired, because that CA's name constraints
still cover it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network

from meshops.errors import MeshError


def _start(network: IPv4Network, name: str) -> int:
    usable = network.num_addresses - 2
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return 1 + digest % usable


def allocate_all(
    network: IPv4Network,
    pinned: Mapping[str, IPv4Address | None],
    recorded: Mapping[str, str | None],
    quarantined: Iterable[str] = (),
) -> dict[str, IPv4Address]:
    """The address of every node in `pinned` (node -> explicit address or None)."""
    result: dict[str, IPv4Address] = {}
    taken: set[IPv4Address] = {ip for ip in pinned.values() if ip is not None}
    taken |= {IPv4Address(ip) for ip in quarantined}
    for name, ip in pinned.items():
        if ip is not None:
            result[name] = ip
    # keep what was recorded, unless something pinned took it
    for name in sorted(pinned):
        if name in result:
            continue
        old = recorded.get(name)
        if old is not None:
            addr = IPv4Address(old)
            if addr in network and addr not in taken:
                result[name] = addr
                taken.add(addr)
    usable = network.num_addresses - 2
    base = int(network.network_address)
    for name in sorted(pinned):
        if name in result:
            continue
        offset = _start(network, name)
        for step in range(usable):
            candidate = IPv4Address(base + 1 + (offset - 1 + step) % usable)
            if candidate not in taken:
                result[name] = candidate
                taken.add(candidate)
                break
        else:
            raise MeshError(f"network {network} is full: no address left for node {name!r}")
    return result
