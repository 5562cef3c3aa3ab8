"""`meshops` entry point: global options, command dispatch, error policy.

Each command lives in its own module with `add_arguments(parser)` and
`run(args, ctx) -> int`; modules import heavy libraries only inside `run`, so building
the parser (and `--version`, `--help`) stays cheap.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from meshops import __version__

# name -> (module, one-line help). Order is the order of `meshops --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("meshops.cli.init", "scaffold a mesh repository with a commented mesh.yaml"),
    "validate": ("meshops.cli.validate", "check mesh.yaml: schema, references, policy tests"),
    "schema": ("meshops.cli.schema", "print the JSON Schema of mesh.yaml"),
    "plan": ("meshops.cli.plan", "show what apply would change, with a reason per change"),
    "apply": ("meshops.cli.apply", "apply the changes (or a saved plan)"),
    "show": ("meshops.cli.show", "render a saved plan"),
    "status": ("meshops.cli.status", "live view: certificates, WireGuard peers, last apply"),
    "review": ("meshops.cli.review", "review a mesh change between two git revisions"),
    "graph": ("meshops.cli.graph", "the access graph: who may call whom"),
    "watch": ("meshops.cli.watch", "reconcile this host continuously"),
    "host": ("meshops.cli.host", "host setup: `host init` creates this host's identity"),
    "ca": ("meshops.cli.ca", "stage a new root CA: `ca rotate`, or `ca import` an existing one"),
}


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1, as every error does: exit 2 means "changes present"."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


# Global options that take a value: their value is never the command name.
_VALUED = frozenset(("-C", "-f", "--file", "--node", "--root", "--identity"))


def command_in(argv: Sequence[str]) -> str | None:
    """The command named on this command line, if it is a known one."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in _VALUED:
            skip = True
        elif token == "--":
            return None
        elif not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with `only`, one whose other commands are bare names.

    Each command's options need its module imported; `meshops validate` should not
    pay for importing and wiring up every other command.
    """
    parser = _Parser(
        prog="meshops",
        description="Run a WireGuard + mTLS service mesh from one reviewed mesh.yaml.",
        epilog="Exit codes: 0 success (no changes with --detailed-exitcode), 1 error, "
        "2 changes present (--detailed-exitcode).",
    )
    parser.add_argument("--version", action="version", version=f"meshops {__version__}")
    _add_globals(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module_name)
        if only is None or name == only:
            _add_globals(command, top=False)
            module = importlib.import_module(module_name)
            module.add_arguments(command)
    return parser


def _add_globals(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Accepted before and after the command; SUPPRESS keeps a later default from
    # overwriting a value given earlier.
    default = None if top else argparse.SUPPRESS
    g = parser.add_argument_group("global options")
    g.add_argument(
        "-C",
        dest="repo_dir",
        metavar="REPO_DIR",
        default=default,
        help="mesh repository directory (default: .)",
    )
    g.add_argument(
        "-f",
        "--file",
        dest="mesh_file",
        metavar="FILE",
        default=default,
        help="the desired-state file (default: REPO_DIR/mesh.yaml)",
    )
    g.add_argument(
        "--node",
        metavar="NAME",
        default=default,
        help="act on this host (host scope); also MESHOPS_NODE or host.yaml",
    )
    g.add_argument(
        "--root", metavar="DIR", default=default, help="prefix for every host path (default: /)"
    )
    g.add_argument(
        "--identity",
        action="append",
        metavar="FILE",
        default=default,
        help="age identity or SSH private key to unseal with (repeatable; MESHOPS_IDENTITY)",
    )
    g.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show tracebacks and debug logs",
    )
    g.add_argument(
        "--no-color",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="never use colour",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list in (["--version"], ["-V"]):  # the fast path: no parser at all
        print(f"meshops {__version__}")
        return 0
    parser = build_parser(only=command_in(args_list))
    args = parser.parse_args(args_list)
    if not getattr(args, "command", None):
        parser.print_help()
        return 1
    # pydantic otherwise scans every installed distribution for plugins on the first
    # model build: a measurable share of `meshops validate`'s start-up, for nothing.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from meshops.cli.context import Context
    from meshops.errors import MeshError

    ctx = Context.from_args(args)
    try:
        module = importlib.import_module(args._module)
        return int(module.run(args, ctx))
    except MeshError as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        ctx.error(str(exc))
        return 1
    except KeyboardInterrupt:
        ctx.error("interrupted")
        return 130
    except BrokenPipeError:
        # a closed pipe (`meshops plan | head`) is not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if args.debug:
            raise
        ctx.error(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in meshops; rerun with --debug for the traceback and report it."
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
