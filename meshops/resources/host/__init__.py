"""Host scope: certificates, WireGuard, /etc/hosts and proxies on one node."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshops.errors import MeshError

if TYPE_CHECKING:
    from meshops.cli.context import Context
    from meshops.engine.runtime import Runtime
    from meshops.model import Loaded
    from meshops.resources import Scope


def open_host(loaded: Loaded, ctx: Context, node: str, rt: Runtime) -> Scope:
    raise MeshError("host scope (--node) is not available in this version yet")
