"""`meshops` entry point: global options, command dispatch, error policy.

Each command lives in its own module with `add_arguments(parser)` and
`run(args, ctx) -> int`; modules import heavy libraries only inside `run`, so building
the parser (and `--version`, `--help`) stays cheap.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from meshops import __version__
from meshops.cli.exitcodes import ExitCode

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
    "host": (
        "meshops.cli.host",
        "host setup: `host init --node NAME` (identity, keys: host enrolment), `host rotate-keys`",
    ),
    "ca": ("meshops.cli.ca", "stage a new root CA: `ca rotate`, or `ca import` an existing one"),
}


# commands that run until stopped: they keep the garbage collector on
LONG_RUNNING = frozenset({"watch"})


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1, as every error does: exit 2 means "changes present"."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.ERROR, f"{self.prog}: error: {message}\n")


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
    """The full parser, or with `only`, one that knows that command alone.

    Each command's options need its module imported, and each sub-parser costs
    argparse about half a millisecond to build; `meshops validate` should not pay for
    every other command. `only` is a command already found on the command line
    (`command_in`), so the others cannot be needed to parse it.
    """
    parser = _Parser(
        prog="meshops",
        description="Run a WireGuard + mTLS service mesh from one reviewed mesh.yaml.",
        epilog="Exit codes: 0 success (no changes with --detailed-exitcode), 1 error, "
        "2 changes present (--detailed-exitcode), 130 interrupted. Documentation: "
        "docs/commands.md in meshops' repository.",
    )
    parser.add_argument("--version", action="version", version=f"meshops {__version__}")
    _add_globals(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name != only:
            continue
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module_name)
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
    """Run one command; as the console script (no `argv`), skip interpreter teardown."""
    # A one-shot command makes few reference cycles, and the collector's passes over
    # everything imported and loaded cost about 5% of a 1,000-node plan; `watch`, which
    # runs for days, turns it back on (see `_main`).
    collecting = gc.isenabled()
    gc.disable()
    try:
        code = _main(argv)
    finally:
        if collecting:
            gc.enable()
    if argv is None:
        _exit_now(code)
    return code


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list in (["--version"], ["-V"]):  # the fast path: no parser at all
        print(f"meshops {__version__}")
        return ExitCode.OK
    parser = build_parser(only=command_in(args_list))
    args = parser.parse_args(args_list)
    if not getattr(args, "command", None):
        parser.print_help()
        return ExitCode.ERROR
    _skip_pydantic_plugins()
    from meshops.cli.context import Context
    from meshops.errors import MeshError

    ctx = Context.from_args(args)
    if args.debug:  # what meshops runs and finds, on stderr (never a secret: see run.py)
        import logging

        logging.basicConfig(level=logging.DEBUG, format="debug: %(name)s: %(message)s")
    if args.command in LONG_RUNNING:
        gc.enable()
    try:
        module = importlib.import_module(args._module)
        return int(module.run(args, ctx))
    except MeshError as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        ctx.error(str(exc))
        return ExitCode.ERROR
    except KeyboardInterrupt:
        ctx.error("interrupted")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # a closed pipe (`meshops plan | head`) is not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.ERROR
    except Exception as exc:
        if args.debug:
            raise
        ctx.error(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in meshops; rerun with --debug for the traceback and report it."
        )
        return ExitCode.ERROR


def _skip_pydantic_plugins() -> None:
    """Spare pydantic its plugin search: it scans every installed distribution on the
    first model build, and even with plugins disabled its plugin loader imports
    `importlib.metadata` (email, csv, socket...): ~15 ms, 5% of `validate`.

    The stand-in loader answers "no plugins", which is what pydantic itself answers
    when PYDANTIC_DISABLE_PLUGINS disables them all; any other setting is left alone.
    """
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    name = "pydantic.plugin._loader"
    if os.environ["PYDANTIC_DISABLE_PLUGINS"] in ("__all__", "1", "true") and (
        name not in sys.modules
    ):
        import types

        stand_in = types.ModuleType(name, "meshops: pydantic plugins are disabled")
        stand_in.get_plugins = lambda: ()  # type: ignore[attr-defined]
        sys.modules[name] = stand_in


def _exit_now(code: int) -> None:
    """Exit without tearing the interpreter down, when nothing depends on teardown.

    Freeing every module and object at exit costs about 20 ms, 6% of a command such
    as `validate`. The exit handlers still run (logging flushes, finalizers),
    output is flushed, and a run with other threads alive exits the ordinary way.
    """
    import atexit

    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return  # the interpreter's own exit reports a closed pipe as it always has
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
