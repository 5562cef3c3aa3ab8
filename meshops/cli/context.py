"""What every command needs: where the repository is, the scope, output helpers."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshops.model import Loaded

HOST_CONFIG = "etc/meshops/host.yaml"


@dataclass
class Context:
    repo_dir: Path
    mesh_file: Path
    mesh_display: str
    node: str | None
    root: Path
    identities: list[Path] = field(default_factory=list)
    debug: bool = False
    color: bool = True
    # `watch`: what it keeps between runs (a HostSession); None for one-shot commands
    session: Any = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        repo = Path(args.repo_dir or ".")
        if args.mesh_file:
            mesh_file = Path(args.mesh_file)
            if not mesh_file.is_absolute() and args.repo_dir:
                mesh_file = repo / mesh_file
            display = args.mesh_file
        else:
            mesh_file = repo / "mesh.yaml"
            display = str(mesh_file) if args.repo_dir else "mesh.yaml"
        identities = [Path(p) for p in (args.identity or [])]
        env_identity = os.environ.get("MESHOPS_IDENTITY")
        if not identities and env_identity:
            identities = [Path(p) for p in env_identity.split(os.pathsep) if p]
        color = not args.no_color and "NO_COLOR" not in os.environ
        return cls(
            repo_dir=repo,
            mesh_file=mesh_file,
            mesh_display=display,
            node=args.node or os.environ.get("MESHOPS_NODE") or None,
            root=Path(args.root or "/"),
            identities=identities,
            debug=bool(args.debug),
            color=color,
        )

    def resolve_node(self) -> str | None:
        """The host this command acts on: --node, MESHOPS_NODE, then host.yaml."""
        if self.node:
            return self.node
        config = self.host_config()
        return config.get("node") if config else None

    def host_config(self) -> dict[str, Any] | None:
        """/etc/meshops/host.yaml under --root, if present."""
        path = self.host_path(HOST_CONFIG)
        if not path.is_file():
            return None
        from meshops.errors import MeshError
        from meshops.model.loader import read_document

        doc = read_document(path)
        if not isinstance(doc.data, dict) or not isinstance(doc.data.get("node"), str):
            raise MeshError(f"{path}: expected a mapping with `node: NAME`")
        return doc.data

    def host_path(self, path: str) -> Path:
        """A host path (`/etc/meshops/...`) under `--root`; refused when a symlink on
        the way leads out of the root (see `providers.files.inside_root`)."""
        from meshops.providers.files import inside_root

        return inside_root(self.root / path.lstrip("/"), self.root)

    def load(self, *, run_tests: bool = True) -> Loaded:
        from meshops.model import load_file

        if self.session is not None and not run_tests:
            return self.session.load(self.mesh_file, self.mesh_display)  # type: ignore[no-any-return]
        return load_file(self.mesh_file, self.mesh_display, run_tests=run_tests)

    def load_on_host(self) -> Loaded:
        """The validated mesh (no policy tests) for host scope, through the host's
        cache of validated meshes (resources/host/mesh_cache.py)."""
        from meshops.resources.host.mesh_cache import load_validated
        from meshops.resources.host.scope import LIB_DIR

        if self.session is not None:
            return self.session.load(self.mesh_file, self.mesh_display, self.host_path(LIB_DIR))  # type: ignore[no-any-return]
        return load_validated(self.mesh_file, self.mesh_display, self.host_path(LIB_DIR))

    @property
    def is_tty(self) -> bool:
        return sys.stdout.isatty()

    def out(self, text: str = "") -> None:
        sys.stdout.write(text + "\n")

    def error(self, text: str) -> None:
        from meshops.report.escape import visible_lines

        text = visible_lines(text)  # messages quote files and commands' output
        prefix = "error: "
        if self.color and sys.stderr.isatty():
            prefix = "\x1b[1;31merror:\x1b[0m "
        sys.stderr.write(prefix + text + "\n")

    def note(self, text: str) -> None:
        from meshops.report.escape import visible_lines

        sys.stderr.write(visible_lines(text) + "\n")

    def console(self, *, stderr: bool = False) -> Any:
        """A rich Console, created only by commands that print rich output."""
        from rich.console import Console

        return Console(stderr=stderr, no_color=not self.color, highlight=False)


def not_built(name: str) -> int:
    from meshops.errors import MeshError

    raise MeshError(f"`meshops {name}` is not available in this version yet")
