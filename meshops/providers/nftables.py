"""The `nft` command: the only code that reads or writes the host's packet filter.

Reads are `nft -j list table inet meshops` (never another table, never the whole
ruleset); writes are one `nft -f -` script, which nft applies as one transaction: all
of it or nothing, with no moment where the table is half old and half new.

`generation` names the state of the whole ruleset without listing it: the kernel
advances its ruleset generation with every committed change to any table, so the same
generation (in the same boot and network namespace) means the same ruleset.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from meshops.errors import CommandFailed, MeshError
from meshops.providers.run import run

NFT = "nft"
_INSTALL_HINT = (
    "install nftables (Debian: apt-get install nftables), or set `firewall: {enabled: false}` "
    "in mesh.yaml to leave this host's packet filter alone"
)


def read_table(family: str, name: str) -> str | None:
    """nft's JSON for the table, or None when the table does not exist."""
    try:
        proc = run([NFT, "-j", "list", "table", family, name], check=False, timeout=30,
                   what=f"nft list table {family} {name}")  # fmt: skip
    except CommandFailed as exc:
        raise MeshError(exc.message, hint=_INSTALL_HINT) from None
    if proc.returncode == 0:
        return proc.stdout.decode(errors="replace")
    stderr = proc.stderr.decode(errors="replace").strip()
    if "No such file or directory" in stderr:
        return None
    raise MeshError(
        f"nft list table {family} {name} failed (exit {proc.returncode}): "
        f"{stderr.splitlines()[0] if stderr else 'no message'}",
        hint="meshops needs root (CAP_NET_ADMIN) to read and write its nftables table",
        detail=stderr,
    )


def load_script(script: str, *, what: str) -> None:
    """Apply an nft script as one transaction (`nft -f -`); nothing changes on failure."""
    try:
        run([NFT, "-f", "-"], input=script.encode(), timeout=60, what=what)
    except CommandFailed as exc:
        if "command not found" in exc.message:
            raise MeshError(exc.message, hint=_INSTALL_HINT) from None
        raise


NETLINK_NETFILTER = 12
NFT_MSG_GETGEN = (10 << 8) | 16  # NFNL_SUBSYS_NFTABLES, NFT_MSG_GETGEN
NFT_MSG_NEWGEN = (10 << 8) | 15
NFTA_GEN_ID = 1
SO_NETNS_COOKIE = 71  # Linux 5.14: a namespace's number, never reused before a reboot
_NFGENMSG = bytes(4)  # family AF_UNSPEC, version 0, resource id 0


def generation() -> str | None:
    """`<boot id>:<network namespace cookie>:<ruleset generation>`, or None when the
    kernel cannot tell (no nf_tables, an older kernel, no right to ask)."""
    from meshops.providers.wireguard.netlink import NLMSG_ERROR, Socket, attributes

    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        with Socket(NETLINK_NETFILTER) as nl:
            cookie = struct.unpack("=Q", nl.sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))
            for kind, body in nl.ask(NFT_MSG_GETGEN, _NFGENMSG, dump=False):
                if kind == NLMSG_ERROR or kind != NFT_MSG_NEWGEN:
                    return None
                for attr, payload in attributes(body[len(_NFGENMSG) :]):
                    if attr == NFTA_GEN_ID and len(payload) == 4:
                        return f"{boot}:{cookie[0]}:{struct.unpack('>I', payload)[0]}"
    except (OSError, struct.error):
        return None
    return None
