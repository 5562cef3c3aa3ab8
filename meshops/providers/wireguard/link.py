"""The network side of a WireGuard device: the link, its addresses and routes, and
the userspace process when there is no kernel module.

Reads and changes go through our own rtnetlink client (`rtnl`): one socket per
operation, the link looked up once, then every change of the operation (all the
addresses to add and remove, all the routes) sent as one batch of acknowledged
requests. No pyroute2: its import alone cost about a quarter of a second, more than
the rest of a host's first apply.

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
from collections.abc import Callable, Sequence
from pathlib import Path

from meshops.errors import MeshError
from meshops.providers.wireguard import rtnl
from meshops.providers.wireguard.netlink import NetlinkError, Request
from meshops.providers.wireguard.state import Backend, LinkState
from meshops.providers.wireguard.uapi import UAPI_DIR, UapiBackend

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
    elif _create_kernel_link(name, mtu):
        created = True
    else:
        _start_userspace(name, userspace or userspace_program())
        created = True
    set_mtu(name, mtu)
    return created


def _create_kernel_link(name: str, mtu: int) -> bool:
    """Try the kernel implementation; False when the kernel does not offer it."""
    with rtnl.route_socket(name) as sock:
        try:
            sock.change([rtnl.create_wireguard_link(name, mtu)])
        except NetlinkError as exc:
            if exc.code in (errno.EOPNOTSUPP, errno.EPROTONOSUPPORT, errno.ENOENT):
                return False
            raise _refused(name, "create kernel link", exc.code) from None
        except OSError as exc:
            raise _refused(name, "create kernel link", exc.errno or errno.EIO) from None
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
        _on_link(name, "delete link", lambda index: [rtnl.delete_link(index)], missing_ok=True)
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
    return _on_link(name, f"set mtu {mtu}", lambda index: [rtnl.set_link(index, mtu=mtu)])


def set_up(name: str) -> bool:
    link = _require(name)
    if link.up:
        return False
    return _on_link(name, "set up", lambda index: [rtnl.set_link(index, up=True)])


def _require(name: str) -> LinkState:
    link = read_link(name)
    if link is None:
        raise _missing(name)
    return link


def _missing(name: str) -> MeshError:
    return MeshError(
        f"WireGuard interface {name} does not exist", hint="create it first (ensure_interface)"
    )


def _on_link(
    name: str,
    what: str,
    changes: Callable[[int], Sequence[Request]],
    *,
    missing_ok: bool = False,
) -> bool:
    """Look the link up and send `changes(index)` as one batch on one rtnetlink socket;
    True when any of them changed something (an errno a request lists as `ok` means
    it was already so). A missing link is an error, or nothing to do when `missing_ok`
    (removals)."""
    with rtnl.route_socket(name) as sock:
        link = rtnl.find_link(sock, name)
        if link is None:
            if missing_ok:
                return False
            raise _missing(name)
        requests = changes(link.index)
        try:
            return any(sock.change(requests))
        except NetlinkError as exc:
            raise _refused(name, what, exc.code) from None
        except OSError as exc:
            raise _refused(name, what, exc.errno or errno.EIO) from None


def change_addresses(name: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> bool:
    """Add and remove interface addresses (`10.42.0.1/16`) in one batch; True when
    anything changed (an address already there, or already gone, is no change)."""
    wanted = [_interface(a) for a in add]
    gone = [_interface(a) for a in remove]
    what = ", ".join([*(f"add address {a}" for a in wanted), *(f"remove {a}" for a in gone)])
    return _on_link(
        name, what or "addresses",
        lambda index: [*(rtnl.delete_address(index, str(a)) for a in gone),
                       *(rtnl.add_address(index, str(a)) for a in wanted)],
        missing_ok=not wanted,
    )  # fmt: skip


def add_address(name: str, address: str) -> bool:
    """Add `address` (`10.42.0.1/16`); False when it was already there."""
    return change_addresses(name, add=[address])


def remove_address(name: str, address: str) -> bool:
    return change_addresses(name, remove=[address])


def ensure_routes(cidrs: Sequence[str], name: str) -> bool:
    """Route each CIDR through the link (main table), in one batch; False when every
    one already was."""
    networks = [_network(c) for c in cidrs]
    present = _require(name).routes
    missing = [n for n in networks if str(n) not in present]
    if not missing:
        return False
    return _on_link(
        name, f"route {', '.join(map(str, missing))}",
        lambda index: [rtnl.replace_route(index, str(n)) for n in missing],
    )  # fmt: skip


def ensure_route(cidr: str, name: str) -> bool:
    """Route `cidr` through the link (main table); False when it already was."""
    return ensure_routes([cidr], name)


def remove_route(cidr: str, name: str) -> bool:
    network = _network(cidr)
    return _on_link(name, f"remove route {network}",
                    lambda index: [rtnl.delete_route(index, str(network))],
                    missing_ok=True)  # fmt: skip


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
