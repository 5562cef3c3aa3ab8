"""Semantic checks: what relates fields to each other. Each returns located problems."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

from meshops.errors import Problem
from meshops.model.mesh import Mesh
from meshops.policy import MAX_GRANTS, AccessTable, compile_policies, grant_count

if TYPE_CHECKING:
    from meshops.model.loader import Document


def semantic_problems(mesh: Mesh, doc: Document) -> list[Problem]:
    problems: list[Problem] = []
    for check in (
        _references,
        _addresses,
        _endpoints,
        _wireguard_modes,
        _key_holders,
        _lifetimes,
        _proxies,
        _node_names,
        _ports,
        _rule_layers,
        _table_size,
    ):
        problems.extend(doc.problem(path, msg) for path, msg in check(mesh))
    return problems


Found = Iterator[tuple[tuple[str | int, ...], str]]


def _references(mesh: Mesh) -> Found:
    nodes, idents, groups = set(mesh.nodes), set(mesh.identities), set(mesh.groups)
    for name, ident in mesh.identities.items():
        for i, node in enumerate(ident.nodes):
            if node not in nodes:
                yield ("identities", name, "nodes", i), f"unknown node {node!r}{_near(node, nodes)}"
        if len(set(ident.nodes)) != len(ident.nodes):
            yield ("identities", name, "nodes"), "a node is listed twice"
    for group, members in mesh.groups.items():
        if group in idents:
            yield ("groups", group), f"group {group!r} has the same name as an identity"
        for i, member in enumerate(members):
            if member not in idents:
                yield ("groups", group, i), f"unknown identity {member!r}{_near(member, idents)}"
    for p, policy in enumerate(mesh.policies):
        for field, refs in (("from", policy.from_), ("to", policy.to)):
            for i, ref in enumerate(refs):
                problem = _principal_problem(ref, idents, groups)
                if problem:
                    yield ("policies", p, field, i), f"policy {policy.name!r}: {problem}"
    names = [policy.name for policy in mesh.policies]
    for p, name in enumerate(names):
        if name in names[:p]:
            yield ("policies", p, "name"), f"policy name {name!r} is used twice"
    for t, test in enumerate(mesh.tests):
        for field, ref in (("from", test.from_), ("to", test.to)):
            if ref not in idents:
                yield ("tests", t, field), f"unknown identity {ref!r}{_near(ref, idents)}"


def _principal_problem(ref: str, idents: set[str], groups: set[str]) -> str | None:
    if ref == "*":
        return None
    if ref.startswith("group:"):
        group = ref[len("group:") :]
        return None if group in groups else f"unknown group {group!r}{_near(group, groups)}"
    if ref in idents:
        return None
    if ref in groups:
        return f"{ref!r} is a group; write it as 'group:{ref}'"
    return f"unknown identity {ref!r}{_near(ref, idents)}"


def _near(word: str, choices: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _addresses(mesh: Mesh) -> Found:
    net, net6 = mesh.wireguard.network, mesh.wireguard.network6
    taken: dict[IPv4Address | IPv6Address, str] = {}
    for name, node in mesh.nodes.items():
        if node.address is not None:
            where = ("nodes", name, "address")
            if node.address not in net:
                yield where, f"address {node.address} is outside the network {net}"
            elif node.address in (net.network_address, net.broadcast_address):
                yield where, f"address {node.address} is the network or broadcast address of {net}"
            elif node.address in taken:
                yield (
                    where,
                    f"address {node.address} is already used by node {taken[node.address]!r}",
                )
            else:
                taken[node.address] = name
        if node.address6 is not None:
            where = ("nodes", name, "address6")
            if net6 is None:
                yield where, "address6 needs wireguard.network6 to be set"
            elif node.address6 not in net6:
                yield where, f"address6 {node.address6} is outside network6 {net6}"
            elif node.address6 in taken:
                yield where, f"address6 {node.address6} is already used by {taken[node.address6]!r}"
            else:
                taken[node.address6] = name
    tunnelled = sum(mesh.wireguard_on(name) for name in mesh.nodes)
    if tunnelled > net.num_addresses - 2:
        yield (
            ("wireguard", "network"),
            (
                f"network {net} has room for {net.num_addresses - 2} nodes, the mesh has "
                f"{tunnelled} WireGuard nodes"
            ),
        )


def _endpoints(mesh: Mesh) -> Found:
    seen: dict[str, str] = {}
    for name, node in mesh.nodes.items():
        if node.endpoint is None or not mesh.wireguard_on(name):
            continue
        key = str(node.endpoint)
        if key in seen:
            yield (
                ("nodes", name, "endpoint"),
                f"endpoint {key} is already used by node {seen[key]!r}",
            )
        else:
            seen[key] = name


def _wireguard_modes(mesh: Mesh) -> Found:
    """A WireGuard node needs an endpoint; a certificates-only node needs an address to
    publish (its certificates' IP SANs and /etc/hosts) and has no overlay address."""
    for name, node in mesh.nodes.items():
        if mesh.wireguard_on(name):
            if node.endpoint is None:
                yield (
                    ("nodes", name),
                    f"node {name!r} runs WireGuard and needs an endpoint (host:port where "
                    "peers reach it); or set `wireguard: false` for certificates only",
                )
            continue
        if not mesh.underlay_ips(name):
            yield (
                ("nodes", name),
                f"node {name!r} has no WireGuard (certificates only) and no address to "
                "publish: list its IPs in `ips: [...]` or give an endpoint whose host is "
                "an IP address",
            )
        for field in ("address", "address6"):
            if getattr(node, field) is not None:
                yield (
                    ("nodes", name, field),
                    f"{field} is an overlay address, and node {name!r} has no WireGuard; "
                    "remove it, or set `wireguard: true`",
                )


def _key_holders(mesh: Mesh) -> Found:
    """Sealed keys are sealed to the node's recipient: a sealed node needs one."""
    for name, node in mesh.nodes.items():
        if node.recipient is None and not mesh.host_held(name):
            yield (
                ("nodes", name),
                f"node {name!r} holds sealed keys (keys: sealed{_default_note(mesh, name)}) "
                "and needs a `recipient:` to seal them to (`meshops host init` prints one); "
                "or set `keys: host` to enrol keys born on the node (docs/keys.md)",
            )


def _default_note(mesh: Mesh, node: str) -> str:
    return ", the default of ca.node_keys" if mesh.nodes[node].keys is None else ""


def _lifetimes(mesh: Mesh) -> Found:
    root, node_ca = mesh.ca.root_ttl, mesh.ca.node_ca_ttl
    if node_ca > root:
        yield ("ca", "node_ca_ttl"), f"node_ca_ttl {node_ca} is longer than root_ttl {root}"
    if mesh.certs.ttl > node_ca:
        yield ("certs", "ttl"), f"ttl {mesh.certs.ttl} is longer than ca.node_ca_ttl {node_ca}"
    before = mesh.certs.renew_before
    if before.before_expiry(mesh.certs.ttl) >= mesh.certs.ttl:
        yield (
            ("certs", "renew_before"),
            f"renew_before {before} is not shorter than ttl {mesh.certs.ttl}",
        )
    for name, ident in mesh.identities.items():
        ttl = mesh.leaf_ttl(name)
        if ident.ttl is not None and ident.ttl > node_ca:
            yield (
                ("identities", name, "ttl"),
                (f"ttl {ident.ttl} is longer than ca.node_ca_ttl {node_ca}"),
            )
        if ident.ttl is not None and ident.ttl <= 0:
            yield ("identities", name, "ttl"), "ttl must be positive"
        renew = mesh.leaf_renew_before(name)
        if renew.before_expiry(ttl) >= ttl and (ident.ttl or ident.renew_before):
            field = "renew_before" if ident.renew_before else "ttl"
            yield (
                ("identities", name, field),
                (f"renew_before {renew} is not shorter than the ttl {ttl} of {name!r}"),
            )
    for field, value in (("root_ttl", root), ("node_ca_ttl", node_ca)):
        if value <= 0:
            yield ("ca", field), f"{field} must be positive"
    if mesh.certs.ttl <= 0:
        yield ("certs", "ttl"), "ttl must be positive"


def _proxies(mesh: Mesh) -> Found:
    listen: dict[tuple[str, int], str] = {}
    configs: dict[tuple[str, str], str] = {}
    for name, ident in mesh.identities.items():
        if ident.proxy is None:
            continue
        for node in ident.nodes:
            key = (node, ident.proxy.listen)
            if key in listen:
                yield (
                    ("identities", name, "proxy", "listen"),
                    (
                        f"port {ident.proxy.listen} on node {node!r} is already used by "
                        f"{listen[key]!r}'s proxy"
                    ),
                )
            listen.setdefault(key, name)
            if ident.proxy.config:
                ckey = (node, ident.proxy.config)
                if ckey in configs:
                    yield (
                        ("identities", name, "proxy", "config"),
                        (
                            f"config {ident.proxy.config} on node {node!r} is already written "
                            f"by {configs[ckey]!r}"
                        ),
                    )
                configs.setdefault(ckey, name)
        if ident.proxy.kind == "envoy" and ident.proxy.run == "import":
            yield (
                ("identities", name, "proxy", "run"),
                "an Envoy bootstrap is a whole config and cannot be imported into another: "
                "use run: standalone (the default for envoy)",
            )
        tunnelled = any(mesh.wireguard_on(n) for n in ident.nodes if n in mesh.nodes)
        if tunnelled and mesh.wireguard.port == ident.proxy.listen:
            yield (
                ("identities", name, "proxy", "listen"),
                (f"port {ident.proxy.listen} is the WireGuard port"),
            )


def _covers(name: str, target: str) -> bool:
    """Whether a DNS name constraint for `name` (`*.` dropped) permits `target`."""
    base = name[2:] if name.startswith("*.") else name
    return target == base or target.endswith("." + base)


def _node_names(mesh: Mesh) -> Found:
    """`<node>.<domain>` is what binds an identity to a node in Envoy's RBAC: only that
    node's CA may issue it. Refuse names that would let another node's CA issue it (its
    name constraints permit its identities' `<identity>.<domain>` and every `dns:` of the
    node and of its identities), and any `dns:` equal to or above the mesh domain (it
    would cover every node, present and future)."""
    domain = mesh.mesh.domain
    node_names = {f"{node}.{domain}": node for node in mesh.nodes}

    def reach(name: str, allowed: set[str]) -> Iterator[str]:
        if _covers(name, domain):
            yield f"the mesh domain {domain}, so every node's name"
            return
        for full, node in node_names.items():
            if node not in allowed and _covers(name, full):
                yield f"{full} (node {node!r})"

    for name, ident in mesh.identities.items():
        allowed = set(ident.nodes) if len(set(ident.nodes)) == 1 else set()
        for hit in reach(f"{name}.{domain}", allowed):
            yield (
                ("identities", name),
                f"identity {name!r} has the name of node {name!r} but runs on "
                f"{', '.join(ident.nodes)}: its certificate name {name}.{domain} would "
                f"be {hit}'s own, which proxies trust to mean 'issued by that node'; "
                "rename the identity, or run it on that node only",
            )
        for i, dns in enumerate(ident.dns):
            for hit in reach(dns, allowed):
                yield (
                    ("identities", name, "dns", i),
                    f"dns name {dns!r} covers {hit}: the node CAs of "
                    f"{', '.join(ident.nodes)} could then issue that node's name, which "
                    "proxies trust to mean 'issued by that node'; use a name outside "
                    f"the mesh domain {domain}",
                )
    for name, node in mesh.nodes.items():
        for i, dns in enumerate(node.dns):
            for hit in reach(dns, {name}):
                yield (
                    ("nodes", name, "dns", i),
                    f"dns name {dns!r} covers {hit}: the CA of node {name!r} could then "
                    "issue another node's name, which proxies trust to mean 'issued by "
                    f"that node'; use a name outside the mesh domain {domain}",
                )


def _ports(mesh: Mesh) -> Found:
    """An identity's `ports` are its own on each of its nodes: no other identity's port or
    proxy, not the WireGuard port, and (strict mTLS) never a port behind a proxy."""
    from meshops.model.port import Port

    taken: dict[tuple[str, Port], str] = {}  # (node, port) -> what holds it
    for name in sorted(mesh.identities):
        ident = mesh.identities[name]
        proxy = ident.proxy
        if proxy is None:
            continue
        for node in ident.nodes:
            taken.setdefault((node, Port(proxy.listen, "tcp")), f"{name!r}'s proxy")
            if mesh.mtls.mode == "permissive":
                taken.setdefault((node, Port(proxy.listen + 1, "tcp")), f"{name!r}'s plaintext")
            if mesh.mtls.mode == "strict":
                taken.setdefault(
                    (node, Port(proxy.upstream.port, "tcp")),
                    f"the upstream behind {name!r}'s proxy, which strict mTLS never opens "
                    "on the overlay",
                )
    wireguard = Port(mesh.wireguard.port, "udp")
    for name in sorted(mesh.identities):
        ident = mesh.identities[name]
        for i, port in enumerate(ident.ports):
            where = ("identities", name, "ports", i)
            if port in ident.ports[:i]:
                yield where, f"port {port} is listed twice"
                continue
            if port == wireguard:
                yield where, f"port {port} is the WireGuard port"
                continue
            for node in ident.nodes:
                holder = taken.setdefault((node, port), f"{name!r}")
                if holder != f"{name!r}":
                    yield where, f"port {port} on node {node!r} is already {holder}"
                    break


def _rule_layers(mesh: Mesh) -> Found:
    """Each rule must be able to apply to the callees it names: HTTP methods and paths
    need a proxy, ports must be exposed by the callee (`identities.X.ports`)."""
    from meshops.policy.table import expand_principal

    for p, policy in enumerate(mesh.policies):
        for r, rule in enumerate(policy.allow):
            where = ("policies", p, "allow", r)
            if not rule.is_l4:
                if not {"methods", "paths"} & rule.model_fields_set:
                    continue  # the implicit "any request" rule
                for ref in policy.to:
                    ident = mesh.identities.get(ref)
                    if ident is not None and ident.proxy is None:
                        yield (
                            where,
                            f"policy {policy.name!r} allows HTTP methods/paths on {ref!r}, "
                            f"which has no proxy to enforce them; give {ref!r} a proxy, or "
                            + _ports_hint(ident.ports),
                        )
                continue
            for i, port in enumerate(rule.ports):
                for ref in policy.to:
                    callees = expand_principal(ref, mesh.identities, mesh.groups)
                    known = [c for c in callees if c in mesh.identities]
                    if not known or any(port in mesh.identities[c].ports for c in known):
                        continue
                    whom = (
                        f"{ref!r} does not expose it"
                        if ref in mesh.identities
                        else f"no identity of {ref!r} exposes it"
                    )
                    yield (
                        (*where, "ports", i),
                        f"policy {policy.name!r} allows port {port}, but {whom}; "
                        "add it to the callee's ports or remove it here",
                    )


def _ports_hint(ports: list[Any]) -> str:
    if ports:
        return f"allow its ports ({', '.join(str(p) for p in ports)}) instead"
    return "expose ports (identities.<name>.ports) and allow those instead"


def _table_size(mesh: Mesh) -> Found:
    """Refuse policies whose access table would be too big to build (see MAX_GRANTS),
    naming the policy that crosses the limit, before anything tries to build it."""
    groups = {name: list(members) for name, members in mesh.groups.items()}
    total = 0
    for p, policy in enumerate(mesh.policies):
        total += grant_count(policy, mesh.identities, groups)
        if total > MAX_GRANTS:
            yield (
                ("policies", p),
                (
                    f"policy {policy.name!r} brings the access table to {total:,} grants "
                    f"(callers x callees x methods x paths), over the limit of "
                    f"{MAX_GRANTS:,}; narrow its from/to, methods or paths"
                ),
            )
            return


def access_table(mesh: Mesh) -> AccessTable:
    groups = {name: list(members) for name, members in mesh.groups.items()}
    exposed = {name: ident.ports for name, ident in mesh.identities.items() if ident.ports}
    return compile_policies(mesh.policies, mesh.identities, groups, exposed)


def _decide_l4(
    mesh: Mesh, table: AccessTable, caller: str, callee: str, port: Any
) -> tuple[str, str]:
    """An L4 test as the packet filters decide it: a source address is a node, so a
    caller is let through when any identity on one of its nodes is (`tcp/5432` from
    `web` passes if `api`, placed with `web`, may reach it)."""
    grant = table.decide_port(caller, callee, port)
    if grant is not None:
        return "allow", f" by policy {grant.policy!r}"
    for node in mesh.identities[caller].nodes:
        for neighbour in mesh.identities_on(node):
            if neighbour == caller:
                continue
            shared = table.decide_port(neighbour, callee, port)
            if shared is not None:
                return "allow", (
                    f" at the packet filter: {neighbour!r}, also on node {node!r}, is allowed "
                    f"by policy {shared.policy!r} (ports are node-granular; give {caller!r} "
                    "a node of its own to tell them apart)"
                )
    if port not in mesh.identities[callee].ports:
        return "deny", f" ({callee!r} does not expose {port})"
    return "deny", " (no policy allows it)"


def test_problems(mesh: Mesh, doc: Document, table: AccessTable) -> list[Problem]:
    """Evaluate `tests:`; each failing test is a problem at its own line."""
    problems = []
    for t, test in enumerate(mesh.tests):
        if test.from_ not in mesh.identities or test.to not in mesh.identities:
            continue  # already reported as a reference problem
        port = test.port
        if port is not None:
            got, why = _decide_l4(mesh, table, test.from_, test.to, port)
        else:
            grant = table.decide(test.from_, test.to, test.method, test.path)
            got = "allow" if grant else "deny"
            why = f" by policy {grant.policy!r}" if grant else " (no policy allows it)"
        if got != test.expect:
            named = f" {test.name!r}" if test.name else ""
            problems.append(
                doc.problem(
                    ("tests", t),
                    f"policy test{named} failed: {test.from_} -> {test.to} {test.request}: "
                    f"expected {test.expect}, got {got}{why}",
                )
            )
    return problems
