"""The access table: every policy compiled into (caller, callee, method, path) grants
for the proxies (L7) and (caller, callee, port) grants for plain ports (L4).

Default deny: a request passes only if some grant matches it. This table is the one
source for proxy RBAC (L7 grants only), each host's packet filter, `validate`'s policy
tests, `review`'s access diff and `graph`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

from meshops.model.port import Port

ANY = "*"


def path_matches(pattern: str, path: str) -> bool:
    """Exact (`/healthz`), prefix (`/v1/*` matches `/v1/` and below) or all (`*`)."""
    if pattern in (ANY, "/*"):
        return True
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return path == pattern


def method_matches(pattern: str, method: str) -> bool:
    return pattern == ANY or pattern == method.upper()


@dataclass(frozen=True, order=True)
class Grant:
    """One allowed (caller, callee, method, path pattern), and the policy that allowed it."""

    caller: str
    callee: str
    method: str
    path: str
    policy: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.caller, self.callee, self.method, self.path)

    def matches(self, caller: str, callee: str, method: str, path: str) -> bool:
        return (
            self.caller == caller
            and self.callee == callee
            and method_matches(self.method, method)
            and path_matches(self.path, path)
        )


@dataclass(frozen=True, order=True)
class PortGrant:
    """One allowed (caller, callee, L4 port), and the policy that allowed it."""

    caller: str
    callee: str
    port: Port
    policy: str = ""

    @property
    def key(self) -> tuple[str, str, Port]:
        return (self.caller, self.callee, self.port)


@dataclass(frozen=True)
class CallerRule:
    """What one caller may do on one callee: the shape proxies render."""

    caller: str
    methods: tuple[str, ...]  # ("*",) for any
    paths: tuple[str, ...]  # ("*",) for any


@dataclass(frozen=True)
class AccessTable:
    grants: tuple[Grant, ...]  # L7: what the proxies render
    ports: tuple[PortGrant, ...] = ()  # L4: what the packet filters open

    @cached_property
    def _ports_by_pair(self) -> dict[tuple[str, str], list[PortGrant]]:
        index: dict[tuple[str, str], list[PortGrant]] = defaultdict(list)
        for grant in self.ports:
            index[(grant.caller, grant.callee)].append(grant)
        return index

    def decide_port(self, caller: str, callee: str, port: Port) -> PortGrant | None:
        """The grant letting `caller` reach `callee` on `port`, or None (deny)."""
        for grant in self._ports_by_pair.get((caller, callee), ()):
            if grant.port == port:
                return grant
        return None

    def port_edges(self) -> set[tuple[str, str]]:
        """Pairs (caller, callee) with any L4 access."""
        return set(self._ports_by_pair)

    def ports_of(self, caller: str, callee: str) -> list[Port]:
        return sorted({grant.port for grant in self._ports_by_pair.get((caller, callee), ())})

    @cached_property
    def _by_pair(self) -> dict[tuple[str, str], list[Grant]]:
        index: dict[tuple[str, str], list[Grant]] = defaultdict(list)
        for grant in self.grants:
            index[(grant.caller, grant.callee)].append(grant)
        return index

    def decide(self, caller: str, callee: str, method: str, path: str) -> Grant | None:
        """The first grant allowing this request, or None (deny)."""
        for grant in self._by_pair.get((caller, callee), ()):
            if grant.matches(caller, callee, method, path):
                return grant
        return None

    def allows(self, caller: str, callee: str, method: str, path: str) -> bool:
        return self.decide(caller, callee, method, path) is not None

    def edges(self) -> set[tuple[str, str]]:
        """Pairs (caller, callee) with any access at all."""
        return {pair for pair, grants in self._by_pair.items() if grants}

    def keys(self) -> set[tuple[str, str, str, str]]:
        return {grant.key for grant in self.grants}

    def rules_for(self, callee: str) -> list[CallerRule]:
        """Grants into `callee`, grouped per caller and (methods, paths) product.

        Grants from one rule are a product of methods x paths; regroup them so each
        rendered matcher is `caller AND method in M AND path in P`.
        """
        per_caller: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for grant in self.grants:
            if grant.callee == callee:
                per_caller[grant.caller][grant.path].add(grant.method)
        rules: list[CallerRule] = []
        for caller in sorted(per_caller):
            by_methods: dict[tuple[str, ...], list[str]] = defaultdict(list)
            for path, methods in per_caller[caller].items():
                key = (ANY,) if ANY in methods else tuple(sorted(methods))
                by_methods[key].append(path)
            for methods_key in sorted(by_methods):
                paths = sorted(by_methods[methods_key])
                if any(p in (ANY, "/*") for p in paths):
                    paths = [ANY]
                rules.append(CallerRule(caller, methods_key, tuple(paths)))
        return rules

    def callees(self) -> list[str]:
        return sorted({grant.callee for grant in self.grants})


if TYPE_CHECKING:  # structural types only: Protocol classes cost time at import

    class _RuleLike(Protocol):
        @property
        def methods(self) -> Sequence[str]: ...
        @property
        def paths(self) -> Sequence[str]: ...

    class _PolicyLike(Protocol):
        @property
        def name(self) -> str: ...
        @property
        def from_(self) -> Sequence[str]: ...
        @property
        def to(self) -> Sequence[str]: ...
        @property
        def allow(self) -> Sequence[_RuleLike]: ...


def expand_principal(
    ref: str, identities: Iterable[str], groups: Mapping[str, Sequence[str]]
) -> list[str]:
    """`api` -> [api]; `group:frontends` -> its members; `*` -> every identity."""
    if ref == ANY:
        return sorted(identities)
    if ref.startswith("group:"):
        return sorted(groups.get(ref[len("group:") :], ()))
    return [ref]


# The table is explicit (one grant per caller, callee, method and path), so its size is
# a product: `from: "*"` to `to: "*"` over 1,000 identities is a million grants, about
# 5 s and 270 MB to build. Meshes are refused past this many (checked before building).
MAX_GRANTS = 250_000


def _parties(
    policy: _PolicyLike, names: Sequence[str], groups: Mapping[str, Sequence[str]]
) -> tuple[set[str], set[str]]:
    callers = {c for ref in policy.from_ for c in expand_principal(ref, names, groups)}
    callees = {c for ref in policy.to for c in expand_principal(ref, names, groups)}
    return callers, callees


def _rule_ports(rule: _RuleLike) -> Sequence[Port]:
    """An L4 rule's ports (mesh.yaml's `Rule.ports`); rules that predate ports have none."""
    ports: Sequence[Port] = getattr(rule, "ports", ())
    return ports


def _axes(rule: _RuleLike) -> tuple[list[str], list[str]]:
    methods = [ANY] if ANY in rule.methods else sorted(set(rule.methods))
    paths = [ANY] if any(p in (ANY, "/*") for p in rule.paths) else sorted(set(rule.paths))
    return methods, paths


def grant_count(
    policy: _PolicyLike, identities: Iterable[str], groups: Mapping[str, Sequence[str]]
) -> int:
    """How many grants `policy` adds before duplicates fold: what building it costs."""
    callers, callees = _parties(policy, sorted(identities), groups)
    pairs = len(callers) * len(callees)
    return sum(
        pairs * len(_rule_ports(rule)) if _rule_ports(rule) else pairs * len(m) * len(p)
        for rule, (m, p) in zip(policy.allow, map(_axes, policy.allow), strict=True)
    )


def compile_policies(
    policies: Sequence[_PolicyLike],
    identities: Iterable[str],
    groups: Mapping[str, Sequence[str]],
    exposed: Mapping[str, Sequence[Port]] | None = None,
) -> AccessTable:
    """Compile policies into the access table (default deny, duplicates folded).

    A rule with `ports` is an L4 rule: it grants each port only on the callees that
    expose it (`exposed`: identity -> its `ports`), so a group or `*` never opens a
    port of one member through another member that shares its node.
    """
    names = sorted(identities)
    seen: dict[tuple[str, str, str, str], Grant] = {}
    seen_ports: dict[tuple[str, str, Port], PortGrant] = {}
    for policy in policies:
        callers, callees = _parties(policy, names, groups)
        for rule in policy.allow:
            if _rule_ports(rule):
                for callee in sorted(callees):
                    offered = set((exposed or {}).get(callee, ()))
                    for port in sorted(set(_rule_ports(rule)) & offered):
                        for caller in sorted(callers):
                            l4 = PortGrant(caller, callee, port, policy.name)
                            seen_ports.setdefault(l4.key, l4)
                continue
            methods, paths = _axes(rule)
            for caller in sorted(callers):
                for callee in sorted(callees):
                    for method in methods:
                        for path in paths:
                            grant = Grant(caller, callee, method, path, policy.name)
                            seen.setdefault(grant.key, grant)
    return AccessTable(tuple(sorted(seen.values())), tuple(sorted(seen_ports.values())))


@dataclass(frozen=True)
class AccessDiff:
    gained: tuple[Grant, ...]
    lost: tuple[Grant, ...]
    ports_gained: tuple[PortGrant, ...] = ()
    ports_lost: tuple[PortGrant, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.gained or self.lost or self.ports_gained or self.ports_lost)


def access_diff(before: AccessTable, after: AccessTable) -> AccessDiff:
    """Which exact (caller, callee, method, path) and (caller, callee, port) grants
    appear or disappear."""
    old = {g.key: g for g in before.grants}
    new = {g.key: g for g in after.grants}
    gained = tuple(sorted(new[k] for k in new.keys() - old.keys()))
    lost = tuple(sorted(old[k] for k in old.keys() - new.keys()))
    old_ports = {g.key: g for g in before.ports}
    new_ports = {g.key: g for g in after.ports}
    ports_gained = tuple(sorted(new_ports[k] for k in new_ports.keys() - old_ports.keys()))
    ports_lost = tuple(sorted(old_ports[k] for k in old_ports.keys() - new_ports.keys()))
    return AccessDiff(gained, lost, ports_gained, ports_lost)
