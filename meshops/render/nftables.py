"""meshops' nftables table as plain values, compiled from a node's openings, and its
text for `nft -f` (pure).

One table of our own, `inet meshops`, never another. Its `input` chain hooks input and
sends what arrives on the WireGuard interface to `overlay`; everything else is left to
the host's other tables. `overlay` is default deny:

    ct state established,related ct direction reply accept   replies to what we started
    ct state related accept                                   ICMP errors of our flows
    ip saddr @<set> tcp dport <port> accept                   one per opening (and ip6)
    icmp type echo-request accept                             firewall.icmp
    limit rate 5/minute log prefix "meshops drop: "           firewall.log
    counter drop

Connections a peer opened are checked against the sets on every packet, not only the
first: removing a grant cuts an open connection too, while adding one disturbs nothing.
Peer addresses live in named sets, one per opening and IP version, so a change of who
may connect rewrites a set's elements and leaves the rules (and their counters) alone.
Every rule carries its name as a comment: that is how a live rule is told apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from meshops.policy.flows import Opening

FAMILY = "inet"
TABLE = "meshops"
INPUT_CHAIN = "input"
OVERLAY_CHAIN = "overlay"
LOG_PREFIX = "meshops drop: "
LOG_RATE = (5, "minute", 5)  # at most 5 lines a minute (burst 5): a scan must not flood logs

SetType = Literal["ipv4_addr", "ipv6_addr"]


@dataclass(frozen=True)
class Match:
    """One comparison, as nft writes it: `ip saddr @allow_db_5432_tcp`, `tcp dport 5432`."""

    key: str  # "iifname", "ct state", "ct direction", "ip saddr", "tcp dport", "icmp type"
    value: str  # "wg-mesh" (a quoted string), "established,related", "@set", "5432"

    def text(self) -> str:
        value = f'"{self.value}"' if self.key in _QUOTED else self.value
        return f"{self.key} {value}"


_QUOTED = {"iifname", "oifname"}


@dataclass(frozen=True)
class Counter:
    packets: int = field(default=0, compare=False)  # live values never make rules differ
    bytes: int = field(default=0, compare=False)

    def text(self) -> str:
        if self.packets or self.bytes:  # carried over into a replacement table
            return f"counter packets {self.packets} bytes {self.bytes}"
        return "counter"


@dataclass(frozen=True)
class Limit:
    rate: int
    per: str
    burst: int = 5

    def text(self) -> str:
        return f"limit rate {self.rate}/{self.per} burst {self.burst} packets"


@dataclass(frozen=True)
class Log:
    prefix: str
    level: str = "info"

    def text(self) -> str:
        return f'log prefix "{self.prefix}" level {self.level}'


@dataclass(frozen=True)
class Verdict:
    kind: Literal["accept", "drop", "jump"]
    target: str = ""

    def text(self) -> str:
        return f"jump {self.target}" if self.kind == "jump" else self.kind


@dataclass(frozen=True)
class Unknown:
    """Something in a live rule that meshops never writes (kept as nft's JSON)."""

    json: str

    def text(self) -> str:
        return f"(unknown: {self.json})"


Statement = Counter | Limit | Log | Verdict | Unknown


@dataclass(frozen=True)
class Rule:
    name: str  # its comment; "" for a rule without one (never ours)
    matches: tuple[Match, ...] = ()
    statements: tuple[Statement, ...] = ()

    def text(self, *, comment: bool = True) -> str:
        parts = [m.text() for m in self.matches] + [s.text() for s in self.statements]
        if comment and self.name:
            parts.append(f'comment "{self.name}"')
        return " ".join(parts)

    @property
    def shape(self) -> str:
        """The rule without live values (counters): what makes two rules the same."""
        return Rule(self.name, self.matches, tuple(
            Counter() if isinstance(s, Counter) else s for s in self.statements
        )).text()  # fmt: skip

    @property
    def counter(self) -> Counter | None:
        return next((s for s in self.statements if isinstance(s, Counter)), None)


@dataclass(frozen=True)
class Hook:
    type: str = "filter"
    hook: str = "input"
    priority: int = 0
    policy: str = "accept"

    def text(self) -> str:
        return f"type {self.type} hook {self.hook} priority {self.priority}; policy {self.policy};"


@dataclass(frozen=True)
class Chain:
    name: str
    hook: Hook | None = None
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class NamedSet:
    name: str
    type: SetType | str  # a live set of another type, or with flags, is read as it is
    elements: tuple[str, ...] = ()  # canonical addresses, sorted


@dataclass(frozen=True)
class Table:
    chains: tuple[Chain, ...] = ()
    sets: tuple[NamedSet, ...] = ()
    family: str = FAMILY
    name: str = TABLE

    def chain(self, name: str) -> Chain | None:
        return next((c for c in self.chains if c.name == name), None)

    def set(self, name: str) -> NamedSet | None:
        return next((s for s in self.sets if s.name == name), None)


# -- compile -------------------------------------------------------------------------------


def set_name(opening: Opening, version: int) -> str:
    """`allow_db_5432_tcp` (IPv4), `allow6_db_5432_tcp` (IPv6): nft identifiers, since
    identity names are [a-z0-9-] and the prefix starts with a letter."""
    prefix = "allow" if version == 4 else "allow6"
    return f"{prefix}_{opening.identity}_{opening.port.number}_{opening.port.protocol}"


def rule_name(opening: Opening, version: int) -> str:
    return opening.name if version == 4 else f"{opening.name}:v6"


def compile_table(
    openings: Sequence[Opening],
    addresses: Mapping[str, Sequence[str]],
    *,
    interface: str,
    icmp: bool,
    log: bool,
    ipv6: bool,
) -> Table:
    """The table for one node: `addresses` maps each source node to its overlay
    address(es); a node without an address yet is left out of the sets."""
    versions = (4, 6) if ipv6 else (4,)
    sets: list[NamedSet] = []
    rules: list[Rule] = [
        Rule("established", (Match("ct state", "established,related"),
                             Match("ct direction", "reply")), (Verdict("accept"),)),
        Rule("related", (Match("ct state", "related"),), (Verdict("accept"),)),
    ]  # fmt: skip
    for opening in sorted(openings, key=lambda o: (o.identity, o.port)):
        for version in versions:
            name = set_name(opening, version)
            elements = sorted(
                {
                    a
                    for node in opening.sources
                    for a in addresses.get(node, ())
                    if _v(a) == version
                },
                key=_sort_key,
            )
            sets.append(
                NamedSet(name, "ipv4_addr" if version == 4 else "ipv6_addr", tuple(elements))
            )
            saddr = "ip saddr" if version == 4 else "ip6 saddr"
            rules.append(
                Rule(
                    rule_name(opening, version),
                    (Match(saddr, f"@{name}"),
                     Match(f"{opening.port.protocol} dport", str(opening.port.number))),
                    (Verdict("accept"),),
                )
            )  # fmt: skip
    if icmp:
        rules.append(Rule("icmp", (Match("icmp type", "echo-request"),), (Verdict("accept"),)))
        if ipv6:
            echo6 = Match("icmpv6 type", "echo-request")
            rules.append(Rule("icmpv6", (echo6,), (Verdict("accept"),)))
    if log:
        rate, per, burst = LOG_RATE
        rules.append(Rule("log", (), (Limit(rate, per, burst), Log(LOG_PREFIX))))
    rules.append(Rule("drop", (), (Counter(), Verdict("drop"))))
    entry = Rule("overlay", (Match("iifname", interface),), (Verdict("jump", OVERLAY_CHAIN),))
    return Table(
        chains=(Chain(INPUT_CHAIN, Hook(), (entry,)), Chain(OVERLAY_CHAIN, None, tuple(rules))),
        sets=tuple(sets),
    )


def _v(address: str) -> int:
    return 6 if ":" in address else 4


def _sort_key(address: str) -> tuple[int, ...]:
    import ipaddress

    return (_v(address), int(ipaddress.ip_address(address)))


# -- text for `nft -f` -----------------------------------------------------------------


def render_table(table: Table) -> str:
    """The table's definition, as `nft list table` would print it (nearly)."""
    lines = [f"table {table.family} {table.name} {{"]
    for named in table.sets:
        lines.append(f"\tset {named.name} {{")
        lines.append(f"\t\ttype {named.type}")
        if named.elements:
            lines.append(f"\t\telements = {{ {', '.join(named.elements)} }}")
        lines.append("\t}")
    for chain in table.chains:
        lines.append(f"\tchain {chain.name} {{")
        if chain.hook is not None:
            lines.append(f"\t\t{chain.hook.text()}")
        lines += [f"\t\t{rule.text()}" for rule in chain.rules]
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def replace_script(table: Table) -> str:
    """One transaction that replaces the whole table: `nft -f` applies all or nothing.
    The first line makes `delete` work when the table does not exist yet."""
    head = f"table {table.family} {table.name}\ndelete table {table.family} {table.name}\n"
    return head + render_table(table)


def delete_script(family: str = FAMILY, name: str = TABLE) -> str:
    return f"table {family} {name}\ndelete table {family} {name}\n"


def set_update_script(sets: Sequence[NamedSet], family: str = FAMILY, name: str = TABLE) -> str:
    """One transaction that rewrites the elements of existing sets (the rules that use
    them, and their counters, stay as they are)."""
    lines = []
    for named in sets:
        lines.append(f"flush set {family} {name} {named.name}")
        if named.elements:
            lines.append(
                f"add element {family} {name} {named.name} {{ {', '.join(named.elements)} }}"
            )
    return "\n".join(lines) + "\n"


def with_counters(table: Table, live: Table | None) -> Table:
    """`table` with each counter set to the live rule's of the same name and chain, so a
    replace keeps counting where the old table stood."""
    if live is None:
        return table
    chains = []
    for chain in table.chains:
        old = live.chain(chain.name)
        counted = {r.name: r.counter for r in (old.rules if old else ()) if r.counter}
        rules = tuple(
            Rule(r.name, r.matches, tuple(
                counted.get(r.name) or s if isinstance(s, Counter) else s for s in r.statements
            ))
            for r in chain.rules
        )  # fmt: skip
        chains.append(Chain(chain.name, chain.hook, rules))
    return Table(tuple(chains), table.sets, table.family, table.name)
