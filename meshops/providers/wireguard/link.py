"""The network side of a WireGuard device: the link, its addresses and routes, and
the userspace process when there is no kernel module.

Reads go through our own read-only rtnetlink client (`rtnl.read_link_state`), so a
no-op plan never imports pyroute2 (about a quarter of a second). Every change (create
or delete a link, MTU, up, addresses, routes) is made with pyroute2's `IPRoute`,
imported only when a change is actually needed, through one lookup-then-act helper.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshops.errors import MeshError
from meshops.providers.wireguard import rtnl
from meshops.providers.wireguard.state import Backend, LinkState
from meshops.providers.wireguard.uapi import UAPI_DIR, UapiBackend

MAIN_TABLE = 254
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255
SOCKET_WAIT_SECONDS = 10.0
STOP_WAIT_SECONDS = 3.0


def _refused(name: str, what: str, code: int) -> MeshError:
    """The kernel refused a change: what failed, and the fix when it is permissions."""
    return MeshError(
        f"WireGuard interface {name}: {what} failed: {os.strerror(code)}",
        hint="meshops needs root (CAP_NET_ADMIN) to manage interfaces"
        if code in (errno.EPERM, errno.EACCES)
        else None,
    )


# --- reading -----------------------------------------------------------------------


def read_link(name: str) -> LinkState | None:
    """The link named `name` with its addresses and main-table routes, or None.

    Plain rtnetlink over a socket, no pyroute2: a no-op plan reads it in about a
    millisecond.
    """
    return rtnl.read_link_state(name)


# --- creating and deleting -----------------------------------------------------------


def ensure_interface(name: str, *, mtu: int, userspace: str | None = None) -> bool:
    """Make sure a WireGuard link `name` exists with `mtu`; True when it was created.

    Uses the kernel link kind when the module is available; otherwise starts the
    userspace implementation (`userspace`, default wireguard-go or
    $MESHOPS_WIREGUARD_GO) detached from meshops, and waits for its UAPI socket.
    """
    if read_link(name) is not None:
        created = False
    elif _create_kernel_link(name):
        created = True
    else:
        _start_userspace(name, userspace or userspace_program())
        created = True
    set_mtu(name, mtu)
    return created


def _create_kernel_link(name: str) -> bool:
    """Try the kernel implementation; False when the kernel does not offer it."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=name, kind="wireguard")
    except NetlinkError as exc:
        if exc.code in (errno.EOPNOTSUPP, errno.EPROTONOSUPPORT, errno.ENOENT):
            return False
        if exc.code != errno.EEXIST:
            raise _refused(name, "create kernel link", exc.code) from None
    return True


def _start_userspace(name: str, program: str) -> None:
    from meshops.providers.wireguard import userspace

    userspace.start(name, program)
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


def userspace_program() -> str:
    from meshops.providers.wireguard.userspace import program

    return program()


def delete_interface(name: str) -> bool:
    """Delete the link and stop its userspace process, if any; True when it existed."""
    pids = userspace_pids(name)
    existed = read_link(name) is not None
    if existed:
        # gone in between (ENODEV) still counts: it existed when we looked
        _on_link(
            name, "delete link", lambda ipr, index: ipr.link("del", index=index),
            already=(errno.ENODEV,), missing_ok=True,
        )  # fmt: skip
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
    _set_link(name, f"set mtu {mtu}", mtu=mtu)
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
        raise _missing(name)
    return link


def _missing(name: str) -> MeshError:
    return MeshError(
        f"WireGuard interface {name} does not exist", hint="create it first (ensure_interface)"
    )


def _set_link(name: str, what: str, **settings: object) -> None:
    _on_link(name, what, lambda ipr, index: ipr.link("set", index=index, **settings))


def _on_link(
    name: str,
    what: str,
    change: Callable[[Any, int], object],
    *,
    already: tuple[int, ...] = (),
    missing_ok: bool = False,
) -> bool:
    """Open pyroute2's IPRoute, look the link up, make one change; True when it changed.

    `change(ipr, index)` makes the call. Errnos in `already` mean the change was
    already so (False). A missing link is an error, or nothing to do when
    `missing_ok` (removals). pyroute2 is imported here, only when a change is due.
    """
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=name)
            if not found:
                if missing_ok:
                    return False
                raise _missing(name)
            change(ipr, int(found[0]))
    except NetlinkError as exc:
        if exc.code in already:
            return False
        raise _refused(name, what, exc.code) from None
    return True


def add_address(name: str, address: str) -> bool:
    """Add `address` (`10.42.0.1/16`); False when it was already there."""
    iface = _interface(address)
    return _on_link(
        name, f"add address {iface}", lambda ipr, index: _address(ipr, "add", index, iface),
        already=(errno.EEXIST,),
    )  # fmt: skip


def remove_address(name: str, address: str) -> bool:
    iface = _interface(address)
    return _on_link(
        name, f"remove address {iface}", lambda ipr, index: _address(ipr, "del", index, iface),
        already=(errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH), missing_ok=True,
    )  # fmt: skip


def _address(
    ipr: Any, command: str, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface
) -> None:
    ipr.addr(command, index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)


def ensure_route(cidr: str, name: str) -> bool:
    """Route `cidr` through the link (main table); False when it already was.

    Made as `ip route replace CIDR dev NAME` makes it (protocol boot, link scope for
    IPv4), so it looks the same whichever tool made it.
    """
    network = _network(cidr)
    if str(network) in _require(name).routes:
        return False
    scope = RT_SCOPE_LINK if network.version == 4 else RT_SCOPE_UNIVERSE
    return _on_link(
        name, f"route {network}",
        lambda ipr, index: ipr.route(
            "replace", dst=str(network), oif=index, table=MAIN_TABLE, proto="boot", scope=scope
        ),
    )  # fmt: skip


def remove_route(cidr: str, name: str) -> bool:
    network = _network(cidr)
    # scope "nowhere" matches the route whatever scope the tool that made it gave it
    return _on_link(
        name, f"remove route {network}",
        lambda ipr, index: ipr.route(
            "del", dst=str(network), oif=index, table=MAIN_TABLE, scope=RT_SCOPE_NOWHERE
        ),
        already=(errno.ESRCH, errno.ENOENT), missing_ok=True,
    )  # fmt: skip


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
