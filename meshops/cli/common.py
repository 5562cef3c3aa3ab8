"""Helpers shared by plan/apply/show/status: open the scope a command acts on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshops.cli.context import Context

if TYPE_CHECKING:
    from pathlib import Path

    from meshops.engine.runtime import Runtime
    from meshops.resources import Scope


def make_runtime(ctx: Context) -> Runtime:
    from meshops.engine.runtime import Runtime

    return Runtime(root=ctx.root, repo_dir=ctx.repo_dir, identity_files=list(ctx.identities))


def open_scope(ctx: Context, rt: Runtime, *, commit: bool = False) -> Scope:
    """The scope this command acts on; `commit` (apply): a host takes the revision's
    verified state/ as its new material (see resources/host/trust.py)."""
    node = ctx.resolve_node()
    if node is None:
        from meshops.resources import open_repo

        return open_repo(ctx.load(run_tests=False), ctx.mesh_file, ctx.repo_dir, rt)
    from meshops.resources.host import open_host

    use_host_config(ctx, rt)
    return open_host(ctx.load_on_host(), ctx, node, rt, commit=commit)


def lock_path(ctx: Context) -> Path:
    """Where the scope this command acts on is locked, known before opening it."""
    if ctx.resolve_node() is not None:
        from meshops.resources.host.scope import LIB_DIR

        return ctx.host_path(LIB_DIR) / "lock"
    from meshops.resources import repo_lock_path

    return repo_lock_path(ctx.repo_dir)


def use_host_config(ctx: Context, rt: Runtime) -> None:
    """Host scope defaults: the repository and identity named in host.yaml, then the
    SSH host key (all under --root)."""
    from pathlib import Path

    from meshops.gitops.clone import CLONE_DIR, ensure_clone, is_git_url

    config = ctx.host_config() or {}
    repo = config.get("repo")
    if isinstance(repo, str) and str(ctx.repo_dir) == ".":
        # a URL: meshops keeps the checkout itself, cloned on first use
        ctx.repo_dir = ensure_clone(repo, ctx.host_path(CLONE_DIR)) if is_git_url(repo) \
            else Path(repo)  # fmt: skip
        if ctx.mesh_display == "mesh.yaml":
            ctx.mesh_file = ctx.repo_dir / "mesh.yaml"
            ctx.mesh_display = str(ctx.mesh_file)
    rt.repo_dir = ctx.repo_dir
    if not rt.identity_files:
        identity = config.get("identity")
        if isinstance(identity, str):
            rt.identity_files = [ctx.host_path(identity)]
        else:
            default = ctx.host_path("/etc/ssh/ssh_host_ed25519_key")
            if default.exists():
                rt.identity_files = [default]


CAP_NET_ADMIN = 12


def met_needs() -> frozenset[str]:
    """Needs this process already meets, so a plan need not ask for them: root
    privileges (network configuration) when it holds CAP_NET_ADMIN."""
    from pathlib import Path

    from meshops.resources.host.scope import ROOT_NEED

    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return frozenset()
    for line in status.splitlines():
        if line.startswith("CapEff:") and int(line.split()[1], 16) >> CAP_NET_ADMIN & 1:
            return frozenset({ROOT_NEED})
    return frozenset()
