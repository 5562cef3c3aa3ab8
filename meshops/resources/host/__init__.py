"""Host scope: certificates, WireGuard, /etc/hosts and proxies on one node."""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshops.errors import MeshError

if TYPE_CHECKING:
    from meshops.cli.context import Context
    from meshops.engine.plan import Plan
    from meshops.engine.resource import Resource
    from meshops.engine.run import ApplyResult
    from meshops.engine.runtime import Runtime
    from meshops.model import Loaded
    from meshops.resources import Scope
    from meshops.resources.host.scope import HostScope
    from meshops.resources.host.session import HostSession


def open_host_scope(
    loaded: Loaded,
    repo_dir: Path,
    node: str,
    root: Path,
    session: HostSession | None = None,
    *,
    pins: tuple[str, ...] | None = None,
    revision: str | None = None,
    now: datetime | None = None,
    commit: bool = False,
) -> HostScope:
    """This host's view of the mesh, from state/ as the pinned roots signed it.

    Host scope reads state/ only as it verified, from memory. `commit` (apply): the
    verified files become the last good material (the pack), and trust.json records
    the pins and the version (see `host/trust.py`). `session`
    (`watch`) keeps the parsed state.yaml and the live view between runs.
    """
    from meshops.engine import clock
    from meshops.resources.host.scope import LIB_DIR, HostScope, read_last_applied
    from meshops.resources.host.trust import Kept, establish
    from meshops.resources.repo.scope import suffix_for
    from meshops.resources.repo.state import StateDoc, StateLayout, state_from

    mesh = loaded.mesh
    if node not in mesh.nodes:
        raise MeshError(
            f"node {node!r} is not in mesh.yaml",
            hint=f"nodes are: {', '.join(sorted(mesh.nodes)) or '(none)'}",
        )
    from meshops.providers.files import inside_root

    lib = inside_root(root / LIB_DIR.lstrip("/"), root)
    suffix = suffix_for(mesh.secrets.format)
    when = (now or clock.now()).isoformat(timespec="seconds")
    kept = session.kept if session is not None else Kept()
    files, trust = establish(repo_dir=repo_dir, lib_dir=lib, node=node, suffix=suffix,
                             pins=pins, revision=revision, now=when, commit=commit,
                             kept=kept)  # fmt: skip
    # the parse cache of state.yaml lives with the trust material, not in the checkout
    layout = StateLayout(repo_dir, suffix, cache_dir=lib)
    text = files.read("state.yaml")
    if session is not None:
        state = session.state_of(layout, text)
    else:
        state = state_from(layout, text) if text is not None else StateDoc()
    rec = state.nodes.get(node)
    tunnel_ready = rec is not None and rec.wireguard is not None and bool(rec.address)
    if rec is None or rec.ca is None or (mesh.wireguard_on(node) and not tunnel_ready):
        raise MeshError(
            f"node {node!r} has no state yet in {layout.relative(layout.state_file)}",
            hint="run `meshops apply` at repo scope (without --node), commit state/, then pull",
        )
    scope = HostScope(loaded, node, layout, state, root, read_last_applied(lib), files, trust,
                      kept)  # fmt: skip
    live = session.live_view() if session is not None else None
    if live is not None:
        scope.use_live_view(*live)
    return scope


def compile_host(scope: HostScope, *, now: datetime) -> list[Resource[Any]]:
    """Desired resources for one host, in a readable order."""
    from meshops.resources.host.files import StaleFilesResource
    from meshops.resources.host.hosts import HostsResource

    mesh = scope.mesh
    out: list[Resource[Any]] = []
    identities = mesh.identities_on(scope.node)
    if identities:  # certificates, proxies and hooks: their modules only when needed
        from meshops.engine.plan import Impact
        from meshops.render.spec import NODE_CA_POOL
        from meshops.resources.host.hooks import HookResource
        from meshops.resources.host.tls import FileResource, LeafResource, OutputsResource
    # read only when a leaf needs them: the CRL bundle reads one file per node
    bundle = (scope.state_bytes(scope.layout.root_cert) or b"") if identities else b""
    crl = crl_bundle(scope) if identities else b""
    for identity in identities:
        ident = mesh.identities[identity]
        leaf = LeafResource(scope, identity)
        follows = [leaf.address]
        bundle_file = FileResource(f'tls.bundle["{identity}"]', leaf.dir / "ca.pem", bundle,
                                   what="trust bundle", owned=scope.owned,
                                   impact=Impact.RESTART, security=True)  # fmt: skip
        files: list[Resource[Any]] = [
            leaf,
            bundle_file,
            FileResource(f'tls.crl["{identity}"]', leaf.dir / "crl.pem", crl, what="CRL",
                         owned=scope.owned, security=True),
        ]  # fmt: skip
        pool: bytes | None = None
        if ident.proxy is not None and ident.proxy.kind == "caddy":
            path = leaf.dir / NODE_CA_POOL
            pool = node_ca_pool_pem(scope, path, crl, now)
            address = f'tls.trust_pool["{identity}"]'
            files.append(FileResource(address, path, pool, what="node CA trust pool",
                                      owned=scope.owned, impact=Impact.RESTART,
                                      security=True))  # fmt: skip
        follows += [f.address for f in files[1:]]
        if ident.outputs is not None and (
            ident.outputs.p12 or ident.outputs.combined_pem or ident.outputs.dir
        ):
            outputs = OutputsResource(scope, identity, leaf, bundle_file)
            files.append(outputs)
            follows.append(outputs.address)
        out += files
        proxy_resources = _proxy(scope, identity, follows, pool)
        out += proxy_resources
        if ident.on_renew:
            out.append(HookResource(f'hook.on_renew["{identity}"]', ident.on_renew,
                                    [leaf.address], env=hook_facts(scope, identity)))  # fmt: skip
    if scope.tunnelled:
        out += _firewall(scope)  # before the tunnel: default deny from the first packet
        out += _wireguard(scope)
    else:  # certificates only: a tunnel meshops made before goes, then its filter
        from meshops.resources.host.wireguard import RetiredTunnelResource

        out.append(RetiredTunnelResource(scope))
        out += _firewall(scope)
    out.append(HostsResource(scope))
    if scope.host_held:
        from meshops.resources.host.local_keys import LocalKeysResource

        out.append(LocalKeysResource(scope, after=[r.address for r in out]))
    out.append(StaleFilesResource(scope, [path for r in out for path in r.owns]))
    return out


def hook_facts(scope: HostScope, identity: str) -> dict[str, str]:
    """What a hook of `identity` is told, in its environment (docs/hardening.md)."""
    return {
        "MESHOPS_NODE": scope.node,
        "MESHOPS_WORKLOAD": identity,
        "MESHOPS_TLS_DIR": str(scope.tls_dir(identity)),
    }


def crl_bundle(scope: HostScope) -> bytes:
    """The root's CRL followed by every node CA's own CRL found in state/.

    A verifier that checks CRLs along the whole chain (nginx's `ssl_crl` turns on
    OpenSSL's CRL_CHECK_ALL) refuses a leaf whose issuing node CA has published no CRL
    ("unable to get certificate CRL"), so the node CAs' CRLs travel with the root's.
    """
    parts = [scope.state_bytes(scope.layout.crl) or b""]
    for node in sorted(scope.mesh.nodes):
        parts.append(scope.state_bytes(scope.layout.node_crl_name(node)) or b"")
    return b"".join(p if p.endswith(b"\n") else p + b"\n" for p in parts if p)


def node_ca_pool_pem(scope: HostScope, path: Path, crl: bytes, now: datetime) -> bytes:
    """`node-cas.pem` for a Caddy sidecar: every current node CA from state/, and the
    still-good ones the file at `path` held (see `meshops.pki.pool`)."""
    from meshops.pki import certs_pem
    from meshops.pki.parse import load_certificates, load_crls
    from meshops.pki.pool import node_ca_pool
    from meshops.providers.files import read_bytes

    base = scope.pool_base()
    previous: list[Any] = []
    with contextlib.suppress(MeshError, ValueError):  # a damaged file keeps nothing
        previous = load_certificates(read_bytes(path) or b"", what=str(path))
    crls: list[Any] = []
    with contextlib.suppress(MeshError, ValueError):
        crls = load_crls(crl)
    pool = node_ca_pool(current=base.current, previous=previous, roots=base.roots,
                        crls=crls, nodes=scope.mesh.nodes, now=now)  # fmt: skip
    return certs_pem(pool)


def _proxy(
    scope: HostScope, identity: str, follows: list[str], pool: bytes | None
) -> list[Resource[Any]]:
    from meshops.resources.host.proxy import proxy_resources

    return proxy_resources(scope, identity, follows, pool)


def _firewall(scope: HostScope) -> list[Resource[Any]]:
    from meshops.resources.host.firewall import firewall_resources

    return firewall_resources(scope)


def _wireguard(scope: HostScope) -> list[Resource[Any]]:
    from meshops.providers.wireguard import PeerConfig
    from meshops.resources.host.wireguard import (
        AddressResource,
        InterfaceResource,
        PeerResource,
        RouteResource,
        host_routes,
        resolve_endpoint,
    )

    mesh = scope.mesh
    interface = InterfaceResource(scope)
    addresses = AddressResource(scope, interface)
    out: list[Resource[Any]] = [interface, addresses, RouteResource(scope, addresses)]
    keepalive = int(mesh.wireguard.keepalive) if mesh.wireguard.keepalive else None
    last_peers: dict[str, str] = scope.last.get("peers", {})
    last_endpoints: dict[str, str] = scope.last.get("peer_endpoints", {})
    claimed: set[str] = set()
    wanted = wanted_peers(scope)
    for node in wanted:
        rec = scope.state.nodes.get(node)
        if rec is None or rec.wireguard is None or not rec.address:
            continue
        endpoint = mesh.nodes[node].endpoint
        if endpoint is None:
            continue  # only WireGuard nodes are wanted, and they have one
        want = PeerConfig(
            public_key=rec.wireguard.public_key,
            endpoint=resolve_endpoint(endpoint.host, endpoint.port),
            allowed_ips=host_routes(rec.address, rec.address6),
            keepalive=keepalive,
        )
        old = last_peers.get(node)
        claimed.add(want.public_key)
        if old:
            claimed.add(old)
        out.append(PeerResource(scope, interface, node, old, want,
                                old_endpoint=last_endpoints.get(node)))  # fmt: skip
    # peers on the device (or configured last time) that no node claims: remove them
    device = scope.device()
    device_keys = set(device.peers) if device else set()
    by_key = {key: name for name, key in last_peers.items() if key}
    unneeded = "not needed by the access table (wireguard.peers: policy)"
    for key in sorted((device_keys | set(by_key)) - claimed):
        name = by_key.get(key) or f"?{key[:8]}"
        why = None
        if name in wanted:
            name = f"{name}~old"  # the key it had before
        elif name in mesh.nodes and name != scope.node:
            why = unneeded
        out.append(PeerResource(scope, interface, name, key, None, removal=why))
    return out


def wanted_peers(scope: HostScope) -> list[str]:
    """The nodes this node peers with: every other node, or with `wireguard.peers:
    policy` only those its flows need (and the ops nodes); nodes without WireGuard never."""
    mesh = scope.mesh
    if mesh.wireguard.peers == "policy":
        nodes = sorted(scope.flows.peers(scope.node) & set(mesh.nodes))
    else:
        nodes = [node for node in sorted(mesh.nodes) if node != scope.node]
    return [node for node in nodes if mesh.wireguard_on(node)]  # never certificates-only ones


def open_host(
    loaded: Loaded, ctx: Context, node: str, rt: Runtime, *, commit: bool = False
) -> Scope:
    from meshops.resources import Scope, git_revision, mesh_digest
    from meshops.resources.host.accepted_mesh import checkout_mesh, read_accepted
    from meshops.resources.host.record import record_apply
    from meshops.resources.host.trust import parse_pins

    config = ctx.host_config() or {}
    session = ctx.session
    revision = git_revision(ctx.repo_dir)
    pins = parse_pins(config.get("trust"), str(ctx.host_path("/etc/meshops/host.yaml")))
    scope = open_host_scope(loaded, ctx.repo_dir, node, ctx.root, session, pins=pins,
                            revision=revision, now=rt.now, commit=commit)  # fmt: skip
    checked_out = checkout_mesh(loaded, ctx.mesh_file)
    accepted = read_accepted(scope.lib_dir) if scope.trust.error is not None else None
    held_mesh = accepted is not None and accepted.data != checked_out
    if held_mesh:
        # the refused revision's mesh.yaml is no more trusted than its state/: plan from
        # the mesh.yaml of the last revision this host accepted, with the state/ kept
        assert accepted is not None
        loaded = accepted.load()
        scope = open_host_scope(loaded, ctx.repo_dir, node, ctx.root, session, pins=pins,
                                revision=revision, now=rt.now, commit=commit)  # fmt: skip
    resources = compile_host(scope, now=rt.now)

    def record(plan: Plan, result: ApplyResult | None, plan_id: str | None, rt: Runtime) -> None:
        # files that already hold exactly what meshops would write are its own (a host
        # set up before meshops kept a record, or a file left unchanged)
        unchanged = {c.address for c in plan.changes if c.is_noop}
        scope.owned.adopt(p for r in resources if r.address in unchanged for p in r.owns)
        record_apply(scope, plan, result, plan_id, rt, revision=revision)
        if session is not None:  # read again by the record, right after the apply
            session.live = (scope.link(), scope.device())
        else:  # watch keeps its mesh in memory
            from meshops.resources.host.mesh_cache import keep

            keep(scope.lib_dir, loaded)
        if commit and scope.kept.seen is not None:  # what this run read of the checkout
            scope.kept.seen.save(scope.lib_dir)
        if scope.trust.error is None and checked_out is not None:
            from meshops.resources.host.accepted_mesh import keep_accepted

            keep_accepted(scope.lib_dir, checked_out)

    def preflight(plan: Plan, rt: Runtime) -> None:
        from meshops.engine.plan import Action
        from meshops.resources.host.scope import WIREGUARD_NEED

        if WIREGUARD_NEED in plan.needs():
            from meshops.providers.wireguard import userspace

            raise MeshError(
                f"WireGuard interface {scope.mesh.wireguard.interface}: "
                f"{userspace.support_problem() or 'no WireGuard implementation'}",
                hint=userspace.INSTALL_HINT,
            )
        if scope.key_need in plan.needs():
            if any(c.address.startswith("cert.leaf") for c in plan.actionable):
                scope.node_ca(rt)
            if any(c.address.startswith("wireguard.interface") and c.action is not Action.DELETE
                   for c in plan.actionable):  # fmt: skip
                scope.wg_private_key(rt)

    def notes(plan: Plan, rt: Runtime) -> list[str]:
        # what apply will refuse, said before it is tried: files in the way of a change
        from meshops.engine.plan import Action
        from meshops.providers.owned import REFUSAL_HINT

        changing = {c.address for c in plan.actionable if c.action is not Action.DELETE}
        paths = [p for r in resources if r.address in changing for p in r.owns]
        refusals = [refusal for p in paths if (refusal := scope.owned.refusal(p)) is not None]
        said = [f"apply will stop at this: {refusal} ({REFUSAL_HINT})" for refusal in refusals]
        if held_mesh:
            said.append("the refused revision's mesh.yaml is not used either: this host "
                        "keeps the mesh.yaml of the last revision it accepted")  # fmt: skip
        return said

    applied = {str(scope.last.get("plan_id"))} if scope.last.get("plan_id") else set()
    return Scope(
        name=f"node:{node}",
        resources=resources,
        lock_path=scope.lib_dir / "lock",
        revision=revision,
        mesh_sha256=mesh_digest(ctx.mesh_file),
        applied_ids=applied,
        preflight=preflight,
        record=record,
        notes=notes,
        keep_going=True,
        refused=scope.trust.error,
    )
