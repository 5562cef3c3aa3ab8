"""`meshops init [DIR]`: scaffold a mesh repository with a commented mesh.yaml."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from meshops.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", default=None, help="directory (default: -C or .)")
    parser.add_argument("--name", help="mesh name (default: the directory's name)")
    parser.add_argument(
        "--recipient",
        action="append",
        default=[],
        help="age or SSH public key that may unseal the root CA key (repeatable)",
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    import shutil
    import subprocess
    from importlib import resources

    from meshops.errors import MeshError
    from meshops.model import load_text
    from meshops.model.types import NAME_RE, Recipient
    from meshops.providers.files import write_atomic

    target = Path(args.dir) if args.dir else ctx.repo_dir
    mesh_file = target / "mesh.yaml"
    if mesh_file.exists():
        raise MeshError(f"{mesh_file} already exists; not overwriting it")
    name = args.name or re.sub(r"[^a-z0-9-]+", "-", target.resolve().name.lower()).strip("-")
    name = name or "mesh"
    if not NAME_RE.fullmatch(name):
        raise MeshError(
            f"--name: {name!r} is not a valid mesh name",
            hint="use lowercase letters, digits and '-', 1-63 characters",
        )
    recipients = []
    for text in args.recipient:
        try:
            recipients.append(str(Recipient.parse(text)))
        except ValueError as exc:
            raise MeshError(f"--recipient: {exc}") from None
    lines = "".join(f"    - {r}\n" for r in recipients) or (
        "    []\n    # - age1...                            # `age-keygen` prints one\n"
    )
    starter = resources.files("meshops").joinpath("data/starter-mesh.yaml").read_text()
    text = starter.replace("__NAME__", name).replace("__RECIPIENTS__\n", lines)
    load_text(text, str(mesh_file))  # the starter must always validate
    target.mkdir(parents=True, exist_ok=True)
    write_atomic(mesh_file, text.encode(), mode=0o644)
    if not (target / ".git").exists() and shutil.which("git"):
        inside = subprocess.run(
            ["git", "-C", str(target), "rev-parse", "--is-inside-work-tree"],
            capture_output=True,
        )
        if inside.returncode != 0:
            # `main` whatever git's own default: hosts pull the branch a checkout was
            # cloned on, and the docs and CI examples say main
            subprocess.run(["git", "init", "-q", str(target)], check=False)
            subprocess.run(["git", "-C", str(target), "symbolic-ref", "HEAD", "refs/heads/main"],
                           check=False)  # fmt: skip
    ctx.out(f"created {mesh_file}")
    ctx.out("next: on each node, `meshops host init --node NAME --repo <checkout>` makes its")
    ctx.out("      keys there and writes enroll/NAME.yaml; add the node under `nodes:`, commit")
    ctx.out("      both in a pull request, then `meshops validate` and `meshops plan`")
    return 0
