"""`meshops host init` and `meshops host rotate-keys`: set up this host.

`host init` creates the host's age identity and host.yaml, and for a node that holds its
keys on the host (`keys: host`, docs/keys.md) its WireGuard and node CA keys and the
enrolment request to commit. `host rotate-keys` makes new keys beside the current ones
and a new request; host apply switches to them once state/ carries them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from meshops.cli.context import Context

if TYPE_CHECKING:
    from meshops.model.mesh import Mesh
    from meshops.pki.specs import IPAddress
    from meshops.resources.host.local_keys import KeyStore, Slot

IDENTITY = "/etc/meshops/host.key"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from meshops.cli.main import _add_globals

    sub = parser.add_subparsers(dest="host_command", metavar="SUBCOMMAND", required=True)
    about = (
        "create this host's age identity (0600) and /etc/meshops/host.yaml for one node; "
        "for a node whose keys are born on it (keys: host) also its WireGuard and node CA "
        "keys (0600 in /etc/meshops/keys) and the enrolment request enroll/NAME.yaml to "
        "commit; --node NAME is required (the host's key under `nodes:` in mesh.yaml)"
    )
    init = sub.add_parser(
        "init",
        help="set up this host: `host init --node NAME [--repo DIR]`",
        description=about,
        usage="meshops host init --node NAME [--repo DIR] [--keys host|sealed] [--out FILE] "
        "[--force] [--root DIR]",
    )
    # like every command, `host init` takes --root/--node after its name too
    _add_globals(init, top=False)
    init.add_argument("--repo", help="path of the mesh repository checkout, saved in host.yaml")
    init.add_argument(
        "--keys",
        choices=["host", "sealed"],
        help="where this node's keys live (default: the node's `keys:` in mesh.yaml, else "
        "ca.node_keys); host: make them here and write an enrolment request",
    )
    init.add_argument("--out", metavar="FILE", help="write the request here (default: "
                      "enroll/NAME.yaml in the mesh repository)")  # fmt: skip
    init.add_argument("--force", action="store_true", help="replace an existing identity and keys")
    rotate = sub.add_parser(
        "rotate-keys",
        help="make new keys and an enrolment request: `host rotate-keys --node NAME`",
        description="make a new WireGuard key and node CA key beside the current ones "
        "(keys: host) and a new enrolment request to commit; after the repo apply that "
        "enrols them, host apply uses them and removes the old ones",
        usage="meshops host rotate-keys --node NAME [--repo DIR] [--out FILE] [--force]",
    )
    _add_globals(rotate, top=False)
    rotate.add_argument("--repo", help="path of the mesh repository checkout")
    rotate.add_argument("--out", metavar="FILE", help="write the request here")
    rotate.add_argument("--force", action="store_true", help="replace keys already waiting")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.errors import MeshError

    if not ctx.node:
        # host.yaml without `node:` would make every later command on this host fail
        raise MeshError(
            f"host {args.host_command} records which node this host is: pass --node NAME",
            hint="NAME is the key this host gets under `nodes:` in mesh.yaml (or set MESHOPS_NODE)",
        )
    if args.host_command == "rotate-keys":
        return _rotate(args, ctx, ctx.node)
    return _init(args, ctx, ctx.node)


def _init(args: argparse.Namespace, ctx: Context, node: str) -> int:
    from meshops.errors import MeshError
    from meshops.providers.files import write_atomic
    from meshops.secrets import generate_age_identity

    mesh = _mesh(args, ctx, required=args.keys == "host")
    host_keys = args.keys == "host" or (
        args.keys is None and mesh is not None and _host_held(mesh, node)
    )
    store = _store(ctx)
    if host_keys and store.exists("ca") and not args.force:
        raise MeshError(
            f"this host already has node keys in {store.dir}",
            hint=f"`meshops host rotate-keys --node {node}` makes new ones (or pass --force "
            "to replace them before they were ever enrolled)",
        )
    key_path = ctx.host_path(IDENTITY)
    if key_path.exists() and not args.force and not host_keys:
        raise MeshError(f"{key_path} already exists", hint="pass --force to replace it")
    recipient = None
    if not key_path.exists() or args.force:
        secret, recipient = generate_age_identity()
        write_atomic(key_path, (secret.strip() + "\n").encode(), mode=0o600)
        ctx.note(f"created {key_path} (0600)")
    config_path = ctx.host_path("/etc/meshops/host.yaml")
    lines = ["# meshops host configuration", f"node: {node}"]
    if args.repo:
        lines.append(f"repo: {args.repo}")
    lines.append(f"identity: {IDENTITY}")
    if not config_path.exists() or args.force:
        write_atomic(config_path, ("\n".join(lines) + "\n").encode(), mode=0o644)
    if recipient is not None:
        ctx.out(f"recipient: {recipient}")
    if host_keys:
        assert mesh is not None
        _enrol(args, ctx, mesh, node, store, "current")
    return 0


def _rotate(args: argparse.Namespace, ctx: Context, node: str) -> int:
    from meshops.errors import MeshError

    mesh = _mesh(args, ctx, required=True)
    assert mesh is not None
    store = _store(ctx)
    if not store.exists("ca"):
        raise MeshError(
            f"this host has no node keys in {store.dir} to rotate",
            hint=f"run `meshops host init --node {node} --keys host` to make the first ones",
        )
    if store.exists("ca", "next") and not args.force:
        raise MeshError(
            f"new keys already wait in {store.dir} for their enrolment",
            hint="commit the request `host rotate-keys` wrote and apply; or pass --force to "
            "replace the waiting keys with newer ones",
        )
    _enrol(args, ctx, mesh, node, store, "next")
    return 0


def _host_held(mesh: Mesh, node: str) -> bool:
    return mesh.host_held(node) if node in mesh.nodes else mesh.ca.node_keys == "host"


def _store(ctx: Context) -> KeyStore:
    from meshops.resources.host.local_keys import KEYS_DIR, KeyStore

    return KeyStore(ctx.host_path(KEYS_DIR))


def _mesh_dir(args: argparse.Namespace, ctx: Context) -> Path:
    return Path(args.repo) if args.repo else ctx.repo_dir


def _mesh(args: argparse.Namespace, ctx: Context, *, required: bool) -> Mesh | None:
    """The mesh the request is for (its name, domain and ca.key_type), from --repo or -C."""
    from meshops.errors import MeshError
    from meshops.model import load_file

    path = _mesh_dir(args, ctx) / "mesh.yaml" if args.repo else ctx.mesh_file
    if not path.is_file():
        if required:
            raise MeshError(
                f"{path}: no mesh.yaml to make the enrolment request for",
                hint="pass --repo DIR, the checkout of the mesh repository on this host",
            )
        return None
    return load_file(path, str(path), run_tests=False).mesh


def _enrol(
    args: argparse.Namespace, ctx: Context, mesh: Mesh, node: str, store: KeyStore, slot: Slot
) -> None:
    """Make the node's keys in `slot`, write the request, say what to do next."""
    from meshops.engine import clock
    from meshops.enroll.checks import request_path
    from meshops.enroll.make import make_request
    from meshops.enroll.request import short_key
    from meshops.pki import generate_key
    from meshops.providers.files import write_atomic
    from meshops.providers.wireguard.keys import generate_private_key

    tunnel = mesh.wireguard_on(node) if node in mesh.nodes else mesh.wireguard.enabled
    wireguard = generate_private_key() if tunnel else None
    ca_key = generate_key(mesh.ca.key_type)
    dns, ips = _known_names(mesh, node, _mesh_dir(args, ctx))
    request = make_request(
        mesh=mesh.mesh.name, node=node, dns=dns, ips=ips, ca_key=ca_key,
        wireguard_private=wireguard, now=clock.now(), crl_ttl_seconds=float(mesh.ca.root_ttl),
    )  # fmt: skip
    written = store.write(slot, wireguard=wireguard, node_ca=ca_key)
    out = Path(args.out) if args.out else _mesh_dir(args, ctx) / request_path(node)
    write_atomic(out, request.render(), mode=0o644)
    ctx.note(f"created {', '.join(str(p) for p in written)} (0600; they never leave this host)")
    parts = [f"WireGuard key {short_key(request.wireguard_key)}"] if request.wireguard_key else []
    parts.append(f"node CA request for {node}.{mesh.mesh.domain} ({request.key_type})")
    ctx.out(f"wrote {out}: {', '.join(parts)}")
    ctx.out("next:")
    declare = "" if node in mesh.nodes and mesh.host_held(node) else (
        f" with `keys: host` on node {node} in mesh.yaml"
    )  # fmt: skip
    ctx.out(f"  1. commit {request_path(node)}{declare} on a branch and open a pull request")
    ctx.out("     (`meshops review` shows the enrolment and checks its signatures)")
    ctx.out("  2. once it is merged, `meshops apply` at repo scope signs the node CA and records")
    ctx.out("     the WireGuard key (it needs the root identity); commit state/")
    how = "uses these keys" if slot == "current" else "switches to the new keys, removing the old"
    ctx.out(f"  3. then `meshops apply --node {node}` on this host {how}")


def _known_names(mesh: Mesh, node: str, mesh_dir: Path) -> tuple[list[str], list[IPAddress]]:
    """The names this host knows its node CA will carry: `<node>.<domain>`, the node's
    `dns`, and its addresses when known (pinned, or allocated in state.yaml)."""
    from ipaddress import ip_address

    from meshops.resources.repo.state import StateLayout, load_state

    dns = [f"{node}.{mesh.mesh.domain}"]
    ips: list[IPAddress] = []
    spec = mesh.nodes.get(node)
    if spec is None:
        return dns, ips
    dns += [name[2:] if name.startswith("*.") else name for name in spec.dns]
    if not mesh.wireguard_on(node):
        return dns, list(mesh.underlay_ips(node))
    record = load_state(StateLayout(mesh_dir)).nodes.get(node)
    for pinned, recorded in ((spec.address, record and record.address),
                             (spec.address6, record and record.address6)):  # fmt: skip
        if pinned is not None:
            ips.append(pinned)
        elif recorded:
            ips.append(ip_address(recorded))
    return list(dict.fromkeys(dns)), ips
