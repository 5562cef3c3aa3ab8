"""`meshops host init`: create this host's age identity and print its recipient."""

from __future__ import annotations

import argparse

from meshops.cli.context import Context

IDENTITY = "/etc/meshops/host.key"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from meshops.cli.main import _add_globals

    sub = parser.add_subparsers(dest="host_command", metavar="SUBCOMMAND", required=True)
    about = (
        "create this host's age identity (0600) and /etc/meshops/host.yaml for one node; "
        "--node NAME is required (the host's key under `nodes:` in mesh.yaml)"
    )
    init = sub.add_parser(
        "init",
        help="create this host's identity: `host init --node NAME [--repo DIR]`",
        description=about,
        usage="meshops host init --node NAME [--repo DIR] [--force] [--root DIR]",
    )
    # like every command, `host init` takes --root/--node after its name too
    _add_globals(init, top=False)
    init.add_argument("--repo", help="path of the mesh repository checkout, saved in host.yaml")
    init.add_argument("--force", action="store_true", help="replace an existing identity")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from meshops.errors import MeshError
    from meshops.providers.files import write_atomic
    from meshops.secrets import generate_age_identity

    if not ctx.node:
        # host.yaml without `node:` would make every later command on this host fail
        raise MeshError(
            "host init records which node this host is: pass --node NAME",
            hint="NAME is the key this host gets under `nodes:` in mesh.yaml (or set MESHOPS_NODE)",
        )
    key_path = ctx.host_path(IDENTITY)
    if key_path.exists() and not args.force:
        raise MeshError(f"{key_path} already exists", hint="pass --force to replace it")
    secret, recipient = generate_age_identity()
    write_atomic(key_path, (secret.strip() + "\n").encode(), mode=0o600)
    config_path = ctx.host_path("/etc/meshops/host.yaml")
    lines = ["# meshops host configuration", f"node: {ctx.node}"]
    if args.repo:
        lines.append(f"repo: {args.repo}")
    lines.append(f"identity: {IDENTITY}")
    if not config_path.exists() or args.force:
        write_atomic(config_path, ("\n".join(lines) + "\n").encode(), mode=0o644)
    ctx.note(f"created {key_path} (0600)")
    ctx.out(f"recipient: {recipient}")
    return 0
