"""The `nft` command: the only code that reads or writes the host's packet filter.

Reads are `nft -j list table inet meshops` (never another table, never the whole
ruleset); writes are one `nft -f -` script, which nft applies as one transaction: all
of it or nothing, with no moment where the table is half old and half new.
"""

from __future__ import annotations

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
