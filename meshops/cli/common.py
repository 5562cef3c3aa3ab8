"""Helpers shared by plan/apply/show/status: open the scope a command acts on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshops.cli.context import Context

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime
    from meshops.resources import Scope


def make_runtime(ctx: Context) -> Runtime:
    from meshops.engine.runtime import Runtime

    return Runtime(root=ctx.root, repo_dir=ctx.repo_dir, identity_files=list(ctx.identities))


def open_scope(ctx: Context, rt: Runtime) -> Scope:
    node = ctx.resolve_node()
    loaded = ctx.load(run_tests=False)
    if node is None:
        from meshops.resources import open_repo

        return open_repo(loaded, ctx.mesh_file, ctx.repo_dir, rt)
    from meshops.resources.host import open_host

    return open_host(loaded, ctx, node, rt)
