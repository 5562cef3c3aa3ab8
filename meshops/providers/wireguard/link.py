"""The network side of a WireGuard device: the link, its addresses and routes
(pyroute2 IPRoute), and the userspace process when there is no kernel module.

Every function works on the current network namespace and is idempotent: it
returns whether it changed something.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from meshops.errors import CommandFailed, MeshError
from meshops.providers.run import run
from meshops.providers.wireguard.state import Backend, LinkState
from meshops.providers.wireguard.uapi import UAPI_DIR, UapiBackend

IFF_UP = 0x1
MAIN_TABLE = 254
RTN_UNICAST = 1
SOCKET_WAIT_SECONDS = 10.0
STOP_WAIT_SECONDS = 3.0

T = TypeVar("T")


@contextlib.contextmanager
def _iproute(name: str) -> Iterator[Any]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        yield ipr


def _netlink(
    name: str, what: str, action: Callable[[], T], *, ignore: tuple[int, ...] = ()
) -> T | None:
    """Run one netlink call; errnos in `ignore` return None, others become MeshError."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return action()
    except NetlinkError as exc:
        if exc.code in ignore:
            return None
        raise MeshError(
            f"WireGuard interface {name}: {what} failed: {os.strerror(exc.code)}",
            hint="meshops needs root (CAP_NET_ADMIN) to manage interfaces"
            if exc.code == errno.EPERM
            else None,
        ) from None


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _require_index(ipr: Any, name: str) -> int:
    index = _index(ipr, name)
    if index is None:
        raise MeshError(
            f"WireGuard interface {name} does not exist",
            hint="create it first (ensure_interface)",
        )
    return index


# --- reading -----------------------------------------------------------------------


def read_link(name: str) -> LinkState | None:
    """The link named `name` with its addresses and main-table routes, or None."""
    with _iproute(name) as ipr:
        index = _index(ipr, name)
        if index is None:
            return None
        links = _netlink(
            name, "read link", lambda: list(ipr.get_links(index)), ignore=(errno.ENODEV,)
        )
        if not links:
            return None
        link = links[0]
        addresses = sorted(
            (
                ipaddress.ip_interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")
                for msg in ipr.get_addr(index=index)
                if msg.get("IFA_ADDRESS")
            ),
            key=lambda i: (i.version, i.ip, i.network.prefixlen),
        )
        routes = sorted(
            (
                ipaddress.ip_network(
                    f"{msg.get('RTA_DST') or _default(msg['family'])}/{msg['dst_len']}"
                )
                for msg in ipr.get_routes(oif=index, table=MAIN_TABLE)
                if msg["type"] == RTN_UNICAST
            ),
            key=lambda n: (n.version, n.network_address, n.prefixlen),
        )
        return LinkState(
            name=name,
            kind=link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")),
            mtu=int(link.get("IFLA_MTU")),
            up=bool(link["flags"] & IFF_UP),
            addresses=tuple(str(a) for a in addresses),
            routes=tuple(str(r) for r in routes),
        )


def _default(family: int) -> str:
    return "::" if family == 10 else "0.0.0.0"


# --- creating and deleting -----------------------------------------------------------


def ensure_interface(name: str, *, mtu: int, userspace: str | None = "wireguard-go") -> bool:
    """Make sure a WireGuard link `name` exists with `mtu`; True when it was created.

    Uses the kernel link kind when the module is available; otherwise starts the
    userspace implementation (`userspace`, which daemonizes) and waits for its UAPI
    socket. `userspace=None` means kernel only.
    """
    if read_link(name) is not None:
        created = False
    elif _create_kernel_link(name):
        created = True
    elif userspace is None:
        raise MeshError(
            f"WireGuard interface {name}: the kernel has no WireGuard support",
            hint="load the wireguard module or install wireguard-go",
        )
    else:
        _start_userspace(name, userspace)
        created = True
    set_mtu(name, mtu)
    return created


def _create_kernel_link(name: str) -> bool:
    """Try the kernel implementation; False when the kernel does not offer it."""
    unsupported = (errno.EOPNOTSUPP, errno.EPROTONOSUPPORT, errno.ENOENT)
    with _iproute(name) as ipr:
        done = _netlink(
            name,
            "create kernel link",
            lambda: ipr.link("add", ifname=name, kind="wireguard") or True,
            ignore=unsupported,
        )
    return done is not None


def _start_userspace(name: str, program: str) -> None:
    try:
        run([program, name], what=f"start {program} for {name}", timeout=30)
    except CommandFailed as exc:
        raise MeshError(
            f"WireGuard interface {name}: {program} did not start: {exc.message}",
            hint="it needs root and /dev/net/tun",
            detail=exc.detail,
        ) from None
    deadline = time.monotonic() + SOCKET_WAIT_SECONDS
    backend = UapiBackend()
    while time.monotonic() < deadline:
        with contextlib.suppress(MeshError):
            if backend.read(name) is not None:
                return
        time.sleep(0.02)
    raise MeshError(
        f"WireGuard interface {name}: {program} started but its UAPI socket "
        f"{UAPI_DIR / (name + '.sock')} did not appear within {SOCKET_WAIT_SECONDS:.0f}s"
    )


def delete_interface(name: str) -> bool:
    """Delete the link and stop its userspace process, if any; True when it existed."""
    pids = userspace_pids(name)
    with _iproute(name) as ipr:
        index = _index(ipr, name)
        existed = index is not None
        if index is not None:
            _netlink(
                name, "delete link", lambda: ipr.link("del", index=index), ignore=(errno.ENODEV,)
            )
    _stop(pids)
    socket_file = UAPI_DIR / f"{name}.sock"
    if pids or not existed:
        with contextlib.suppress(FileNotFoundError):
            socket_file.unlink()
    return existed or bool(pids)


def userspace_pids(name: str) -> list[int]:
    """PIDs of `wireguard-go <name>` processes in this network namespace."""
    try:
        own_netns = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if len(argv) < 2 or not argv[0].endswith(b"wireguard-go"):
                continue
            if os.stat(entry / "ns" / "net").st_ino != own_netns:
                continue
        except OSError:
            continue
        args = [a for a in argv[1:] if a and not a.startswith(b"-")]
        if args and args[-1].decode(errors="replace") == name:
            pids.append(int(entry.name))
    return pids


def _stop(pids: list[int]) -> None:
    """Wait for processes to exit after their link went away; then TERM, then KILL."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return
        if sig is not None:
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while time.monotonic() < deadline and any(_alive(pid) for pid in alive):
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


# --- link settings -----------------------------------------------------------------


def set_mtu(name: str, mtu: int) -> bool:
    link = _require(name)
    if link.mtu == mtu:
        return False
    _set_link(name, "set mtu", mtu=mtu)
    return True


def set_up(name: str) -> bool:
    link = _require(name)
    if link.up:
        return False
    _set_link(name, "set up", state="up")
    return True


def _require(name: str) -> LinkState:
    link = read_link(name)
    if link is None:
        raise MeshError(
            f"WireGuard interface {name} does not exist",
            hint="create it first (ensure_interface)",
        )
    return link


def _set_link(name: str, what: str, **changes: Any) -> None:
    with _iproute(name) as ipr:
        index = _require_index(ipr, name)
        _netlink(name, what, lambda: ipr.link("set", index=index, **changes))


def add_address(name: str, address: str) -> bool:
    """Add `address` (`10.42.0.1/16`); False when it was already there."""
    iface = _interface(address)
    with _iproute(name) as ipr:
        index = _require_index(ipr, name)
        done = _netlink(
            name,
            f"add address {iface}",
            lambda: (
                ipr.addr(
                    "add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen
                )
                or True
            ),
            ignore=(errno.EEXIST,),
        )
    return done is not None


def remove_address(name: str, address: str) -> bool:
    iface = _interface(address)
    with _iproute(name) as ipr:
        index = _index(ipr, name)
        if index is None:
            return False
        done = _netlink(
            name,
            f"remove address {iface}",
            lambda: (
                ipr.addr(
                    "del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen
                )
                or True
            ),
            ignore=(errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH),
        )
    return done is not None


def ensure_route(cidr: str, name: str) -> bool:
    """Route `cidr` through the link (main table); False when it already was."""
    network = _network(cidr)
    link = _require(name)
    if str(network) in link.routes:
        return False
    with _iproute(name) as ipr:
        index = _require_index(ipr, name)
        _netlink(
            name, f"route {network}", lambda: ipr.route("replace", dst=str(network), oif=index)
        )
    return True


def remove_route(cidr: str, name: str) -> bool:
    network = _network(cidr)
    with _iproute(name) as ipr:
        index = _index(ipr, name)
        if index is None:
            return False
        done = _netlink(
            name,
            f"remove route {network}",
            lambda: ipr.route("del", dst=str(network), oif=index, table=MAIN_TABLE) or True,
            ignore=(errno.ESRCH, errno.ENOENT),
        )
    return done is not None


def _interface(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        return ipaddress.ip_interface(text)
    except ValueError:
        raise MeshError(f"{text!r} is not an interface address such as 10.42.0.1/16") from None


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise MeshError(f"{text!r} is not a CIDR such as 10.42.0.0/16") from None


# --- backends ----------------------------------------------------------------------


def open_backend(name: str) -> Backend:
    """UAPI when the userspace socket exists, else kernel generic netlink."""
    if (UAPI_DIR / f"{name}.sock").exists():
        return UapiBackend()
    from meshops.providers.wireguard.genetlink import GenetlinkBackend

    return GenetlinkBackend()
