"""What a reviewer should not miss in a change, even when the diff looks small (pure)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass

from meshops.gitops.changes import short_key
from meshops.model.durations import format_duration
from meshops.model.mesh import Mesh, Policy

MANY_NODES = 10  # a new identity on at least this many nodes is worth a second look


@dataclass(frozen=True)
class ReviewWarning:
    code: str  # stable, for scripts: wildcard-policy, longer-ttl, node-removed, ...
    message: str


def _wildcards(policy: Policy) -> list[str]:
    found = []
    if "*" in policy.from_:
        found.append("any caller (from: '*')")
    if "*" in policy.to:
        found.append("any callee (to: '*')")
    http = [rule for rule in policy.allow if not rule.is_l4]
    if any("*" in rule.methods for rule in http):
        found.append("any method")
    if any(p in ("*", "/*") for rule in http for p in rule.paths):
        found.append("any path")
    return found


def review_warnings(
    before: Mesh | None, after: Mesh, *, many_nodes: int = MANY_NODES
) -> list[ReviewWarning]:
    """Warnings about `after` relative to `before` (None: a new mesh), in a stable order."""
    return list(_warnings(before, after, many_nodes))


def _warnings(before: Mesh | None, after: Mesh, many_nodes: int) -> Iterator[ReviewWarning]:
    yield from _host_effects(before, after)
    old_policies = {p.name: p for p in before.policies} if before else {}
    for policy in after.policies:
        if old_policies.get(policy.name) == policy:
            continue
        wild = _wildcards(policy)
        if wild:
            verb = "changed" if policy.name in old_policies else "new"
            yield ReviewWarning(
                "wildcard-policy",
                f"{verb} policy {policy.name!r} allows {', '.join(wild)}",
            )
    if before is None:
        return
    yield from _lifetimes(before, after)
    if before.ca.key_type != after.ca.key_type:
        yield ReviewWarning(
            "root-rotation",
            f"ca.key_type {before.ca.key_type} -> {after.ca.key_type}: the root CA is rotated "
            "in three applies, each held 1h (new root trusted, node CAs re-issued, old root "
            "retired); every host must apply each phase",
        )
    old_recipients = {r.text for r in before.ca.recipients}
    for text in sorted(old_recipients - {r.text for r in after.ca.recipients}):
        yield ReviewWarning(
            "ca-recipient-removed",
            f"CA recipient {short_key(text)} removed: the root key is resealed without it",
        )
    for node in sorted(set(before.nodes) - set(after.nodes)):
        yield ReviewWarning(
            "node-removed",
            f"node {node!r} removed: its node CA is revoked and it leaves every peer list",
        )
    for node in sorted(set(before.nodes) & set(after.nodes)):
        if after.host_held(node):
            continue  # no recipient in use: its keys are its request's (see enrolments)
        if before.nodes[node].recipient != after.nodes[node].recipient:
            yield ReviewWarning(
                "node-recipient-changed",
                f"node {node!r} gets a new recipient: check that the new key is really that host's",
            )
    if before.mtls.mode != "permissive" and after.mtls.mode == "permissive":
        yield ReviewWarning(
            "mtls-permissive",
            "mtls.mode -> permissive: proxies accept plaintext and clients without certificates",
        )
    if float(after.mtls.min_tls) < float(before.mtls.min_tls):
        yield ReviewWarning(
            "min-tls-lowered", f"mtls.min_tls lowered {before.mtls.min_tls} -> {after.mtls.min_tls}"
        )
    if before.mesh.trust_domain != after.mesh.trust_domain:
        yield ReviewWarning(
            "trust-domain-changed",
            f"trust_domain {before.mesh.trust_domain} -> {after.mesh.trust_domain}: every "
            "SPIFFE ID changes; every certificate is reissued",
        )
    if before.wireguard.network != after.wireguard.network:
        yield ReviewWarning(
            "network-changed",
            f"wireguard.network {before.wireguard.network} -> {after.wireguard.network}: "
            "overlay addresses change on every node",
        )
    if before.secrets.format != after.secrets.format:
        yield ReviewWarning(
            "secrets-format-changed",
            f"secrets.format {before.secrets.format} -> {after.secrets.format}: every "
            "sealed secret is rewritten",
        )
    yield from _spread(before, after, many_nodes)


OWN_DIR = "/etc/meshops/"


def _host_effects(before: Mesh | None, after: Mesh) -> Iterator[ReviewWarning]:
    """New or changed commands hosts will run (reload, on_renew) and paths outside
    /etc/meshops they will write (proxy.config, outputs.dir): each by name, since a
    mesh.yaml change is a change to what runs as root on every node it names."""
    for name, ident in sorted(after.identities.items()):
        old = before.identities.get(name) if before else None
        where = _where(ident.nodes)
        reload = ident.proxy.reload if ident.proxy else []
        old_reload = old.proxy.reload if old and old.proxy else []
        if reload and reload != old_reload:
            verb = "changed" if old_reload else "new"
            yield ReviewWarning(
                "runs-command",
                f"{verb} proxy reload of identity {name!r} runs `{shlex.join(reload)}` {where}",
            )
        old_hooks = old.on_renew if old else []
        for argv in ident.on_renew:
            if argv not in old_hooks:
                yield ReviewWarning(
                    "runs-command",
                    f"new on_renew command of identity {name!r} runs `{shlex.join(argv)}` {where}",
                )
        paths = [
            ("proxy.config", ident.proxy.config if ident.proxy else None,
             old.proxy.config if old and old.proxy else None),
            ("outputs.dir", ident.outputs.dir if ident.outputs else None,
             old.outputs.dir if old and old.outputs else None),
        ]  # fmt: skip
        for field, path, old_path in paths:
            if path and path != old_path and not (path.rstrip("/") + "/").startswith(OWN_DIR):
                verb = "changed" if old_path else "new"
                yield ReviewWarning(
                    "writes-outside-meshops",
                    f"{verb} {field} of identity {name!r} writes to {path}, outside "
                    f"/etc/meshops, {where}",
                )


def _where(nodes: list[str]) -> str:
    shown = ", ".join(nodes[:5]) + (f" and {len(nodes) - 5} more" if len(nodes) > 5 else "")
    return f"as root on {shown}"


def _lifetimes(before: Mesh, after: Mesh) -> Iterator[ReviewWarning]:
    pairs = [
        ("ca.root_ttl", before.ca.root_ttl, after.ca.root_ttl),
        ("ca.node_ca_ttl", before.ca.node_ca_ttl, after.ca.node_ca_ttl),
        ("certs.ttl", before.certs.ttl, after.certs.ttl),
    ]
    for name in sorted(set(before.identities) & set(after.identities)):
        pairs.append((f"identities.{name} ttl", before.leaf_ttl(name), after.leaf_ttl(name)))
    for what, old, new in pairs:
        if new > old:
            yield ReviewWarning(
                "longer-ttl",
                f"{what} longer: {format_duration(old)} -> {format_duration(new)} "
                "(a stolen key stays valid longer)",
            )


def _spread(before: Mesh, after: Mesh, many_nodes: int) -> Iterator[ReviewWarning]:
    total = len(after.nodes)
    for name, ident in sorted(after.identities.items()):
        old = set(before.identities[name].nodes) if name in before.identities else set()
        new_nodes = set(ident.nodes) - old
        if not new_nodes:
            continue
        everywhere = total >= 3 and len(ident.nodes) == total
        if len(new_nodes) >= many_nodes or everywhere:
            where = "every node" if everywhere else f"{len(new_nodes)} more nodes"
            verb = "new identity" if not old else "identity"
            yield ReviewWarning(
                "identity-on-many-nodes",
                f"{verb} {name!r} now runs on {where} ({len(ident.nodes)} in all): "
                "its key and certificate exist on each of them",
            )
