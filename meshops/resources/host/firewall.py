"""The host's packet filter: `firewall.table["inet meshops"]`, one `firewall.set[...]`
per opening and IP version (the nodes allowed in), one `firewall.rule[...]` per rule of
the `overlay` chain (see `meshops/render/nftables.py` for the table's shape).

The plan shows each set and rule on its own; apply sends them to the kernel together,
as one nft transaction, at the first firewall change: only the changed sets' elements
when nothing else changed (rules and counters untouched), else the whole table,
replaced atomically with its counters carried over.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshops.engine.plan import Action, Change, Impact
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.errors import MeshError
from meshops.render import nftables as nft
from meshops.resources.host.scope import ROOT_NEED, HostScope

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime
    from meshops.policy.flows import Opening

TABLE_ADDRESS = f'firewall.table["{nft.FAMILY} {nft.TABLE}"]'
VIEW_FILE = "firewall.json"  # under /var/lib/meshops: the last read, by generation


def read_live(lib_dir: Path | None = None, *, planning: bool = False) -> nft.Table | None:
    """meshops' table as the kernel has it now (None: absent).

    With `lib_dir`, each read is kept there with the ruleset's generation, taken before
    it (`providers.nftables.generation`: every committed change to any table advances
    it), and `planning` takes the kept text instead of running nft while the generation
    has not moved: the same chains, rules and set elements. Only counters move without
    a new generation, and planning ignores them; writing (which carries them over) and
    status (which reports them) read afresh.
    """
    from meshops.providers.nftables import generation, read_table
    from meshops.render.nftables_json import parse_table

    now = generation() if lib_dir is not None else None
    kept = _kept_view(lib_dir) if lib_dir is not None and planning and now else None
    if kept is not None and kept.get("generation") == now:
        text = kept.get("table")
    else:
        text = read_table(nft.FAMILY, nft.TABLE)
        if lib_dir is not None and now is not None and lib_dir.is_dir():
            _keep_view(lib_dir, now, text)
    return None if text is None else parse_table(text, family=nft.FAMILY, name=nft.TABLE)


def _kept_view(lib_dir: Path) -> dict[str, Any] | None:
    from meshops.providers.files import read_private

    data = read_private(lib_dir / VIEW_FILE)  # one someone else could write is no view
    try:
        kept = json.loads(data) if data is not None else None
    except ValueError:
        return None
    if not isinstance(kept, dict) or not isinstance(kept.get("table"), str | None):
        return None
    return kept


def _keep_view(lib_dir: Path, generation: str, text: str | None) -> None:
    from meshops.providers.files import write_atomic

    body = json.dumps({"generation": generation, "table": text}).encode()
    with contextlib.suppress(MeshError):  # a cache: the next plan runs nft
        write_atomic(lib_dir / VIEW_FILE, body, mode=0o600, fsync=False, make_dirs=False)


class Firewall:
    """What the firewall resources of one host share: the desired table, the live one
    (read once per refresh), who owns which address, and the one transaction."""

    def __init__(self, scope: HostScope) -> None:
        mesh = scope.mesh
        self.lib_dir = scope.lib_dir
        self.enabled = mesh.firewall.enabled and scope.tunnelled  # no tunnel, no filter
        self.why_off = "firewall.enabled is false" if scope.tunnelled else \
            "WireGuard is off for this node (certificates only)"  # fmt: skip
        self.openings: dict[str, Opening] = {}
        self.owners: dict[str, str] = {}  # overlay address -> node
        addresses: dict[str, list[str]] = {}
        for node, rec in scope.state.nodes.items():
            ips = [a for a in (rec.address, rec.address6) if a]
            addresses[node] = ips
            self.owners.update((ip, node) for ip in ips)
        self.desired: nft.Table | None = None
        if self.enabled:
            openings = scope.flows.openings(scope.node)
            for opening in openings:
                for version in (4, 6):
                    self.openings[nft.rule_name(opening, version)] = opening
                    self.openings[nft.set_name(opening, version)] = opening
            self.desired = nft.compile_table(
                openings,
                addresses,
                interface=mesh.wireguard.interface,
                icmp=mesh.firewall.icmp,
                log=mesh.firewall.log,
                ipv6=mesh.wireguard.network6 is not None,
            )
        self._live: nft.Table | None = None
        self._read = False
        self.members: list[Resource[Any]] = []
        self.sent = False
        self.failed: MeshError | None = None  # the transaction's error, for every member

    def live(self) -> nft.Table | None:
        if not self._read:
            try:
                self._live = read_live(self.lib_dir, planning=True)
            except MeshError:
                if self.enabled:
                    raise
                self._live = None  # no nft and nothing to manage: nothing to remove
            self._read = True
        return self._live

    def forget(self) -> None:
        self._read = False

    def nodes_of(self, elements: tuple[str, ...]) -> list[str]:
        return [f"{self.owners.get(e, '?')} ({e})" for e in elements]

    def send(self, rt: Runtime) -> None:
        """Apply every actionable firewall change of the plan, in one nft transaction."""
        if self.failed is not None:  # a host apply keeps going: fail each member once, fast
            raise self.failed
        if self.sent:
            return
        try:
            self._send(rt)
        except MeshError as exc:
            self.failed = exc
            raise

    def _send(self, rt: Runtime) -> None:
        from meshops.providers.nftables import load_script

        todo = [
            (member, change)
            for member in self.members
            if isinstance(change := rt.planned.get(member.address), Change) and not change.is_noop
        ]
        live = read_live()
        if self.desired is None:
            if live is not None:
                load_script(nft.delete_script(), what="nft: delete table inet meshops")
        elif todo and all(
            isinstance(m, SetResource) and c.action is Action.UPDATE for m, c in todo
        ):
            sets = [s for m, _ in todo if isinstance(m, SetResource) and (s := m.want) is not None]
            load_script(nft.set_update_script(sets), what="nft: update sets of inet meshops")
        else:
            table = nft.with_counters(self.desired, live)
            load_script(nft.replace_script(table), what="nft: replace table inet meshops")
        self.sent = True
        self.forget()


class TableResource(Resource[Any]):
    """The table itself: its chains, the hook into input, the order of the rules."""

    address = TABLE_ADDRESS

    def __init__(self, firewall: Firewall) -> None:
        self.firewall = firewall
        firewall.members.append(self)

    def read(self, rt: Runtime) -> Observed[Any]:
        live = self.firewall.live()
        return Observed(live, fingerprint_of(_skeleton(live)))

    def plan(self, observed: Observed[Any], rt: Runtime) -> Change:
        live: nft.Table | None = observed.value
        want = self.firewall.desired
        before = _skeleton(live) if live is not None else None
        after = _skeleton(want) if want is not None else None
        if want is None:
            if live is None:
                return Change(self.address, Action.NOOP)
            return Change(self.address, Action.DELETE, f"{self.firewall.why_off}: meshops' "
                          "table goes, the overlay is no longer filtered", before, None,
                          needs=(ROOT_NEED,), impact=Impact.IN_PLACE)  # fmt: skip
        if live is None:
            interface = _interface(want)
            return Change(self.address, Action.CREATE, f"no table yet: inbound on {interface} "
                          "becomes default deny", None, after, needs=(ROOT_NEED,),
                          impact=Impact.IN_PLACE)  # fmt: skip
        reasons = _skeleton_differences(live, want)
        if not reasons:
            return Change(self.address, Action.NOOP, "", before, before)
        return Change(self.address, Action.UPDATE, "; ".join(reasons), before, after,
                      needs=(ROOT_NEED,), impact=Impact.IN_PLACE)  # fmt: skip

    def apply(self, change: Change, rt: Runtime) -> None:
        self.firewall.send(rt)


class SetResource(Resource[Any]):
    """The overlay addresses allowed through one opening (one IP version)."""

    def __init__(self, firewall: Firewall, name: str) -> None:
        self.firewall = firewall
        self.name = name
        self.address = f'firewall.set["{name}"]'
        self.depends_on = (TABLE_ADDRESS,)
        want = firewall.desired.set(name) if firewall.desired else None
        self.want = want
        firewall.members.append(self)

    def read(self, rt: Runtime) -> Observed[Any]:
        live = self.firewall.live()
        found = live.set(self.name) if live else None
        return Observed(found, fingerprint_of(repr(found)))

    def plan(self, observed: Observed[Any], rt: Runtime) -> Change:
        live: nft.NamedSet | None = observed.value
        want = self.want
        before = self._view(live)
        after = self._view(want)
        if want is None:
            if live is None:
                return Change(self.address, Action.NOOP)
            return Change(self.address, Action.DELETE, "no longer used", before, None,
                          needs=(ROOT_NEED,), impact=Impact.IN_PLACE)  # fmt: skip
        opening = self.firewall.openings.get(self.name)
        what = f"who may reach {_describe(opening)}" if opening else "allowed sources"
        if live is None:
            nodes = ", ".join(self.firewall.nodes_of(want.elements)) or "nobody yet"
            return Change(self.address, Action.CREATE, f"{what}: {nodes}", None, after,
                          needs=(ROOT_NEED,), impact=Impact.IN_PLACE)  # fmt: skip
        if live.type != want.type:
            return Change(self.address, Action.REPLACE, f"type {live.type} -> {want.type}",
                          before, after, needs=(ROOT_NEED,), impact=Impact.IN_PLACE)  # fmt: skip
        if live.elements == want.elements:
            return Change(self.address, Action.NOOP, "", before, before)
        added = [e for e in want.elements if e not in live.elements]
        removed = [e for e in live.elements if e not in want.elements]
        parts = [f"+{n}" for n in self.firewall.nodes_of(tuple(added))]
        parts += [f"-{n}" for n in self.firewall.nodes_of(tuple(removed))]
        return Change(self.address, Action.UPDATE, f"{what}: {', '.join(parts)}", before,
                      after, needs=(ROOT_NEED,), impact=Impact.IN_PLACE)  # fmt: skip

    def _view(self, named: nft.NamedSet | None) -> dict[str, Any] | None:
        if named is None:
            return None
        return {"type": named.type, "elements": list(named.elements),
                "nodes": [self.firewall.owners.get(e) for e in named.elements]}  # fmt: skip

    def apply(self, change: Change, rt: Runtime) -> None:
        self.firewall.send(rt)


class RuleResource(Resource[Any]):
    """One rule of the `overlay` chain, known by its comment."""

    def __init__(self, firewall: Firewall, name: str) -> None:
        self.firewall = firewall
        self.name = name
        self.address = f'firewall.rule["{name}"]'
        chain = firewall.desired.chain(nft.OVERLAY_CHAIN) if firewall.desired else None
        self.want = next((r for r in (chain.rules if chain else ()) if r.name == name), None)
        sets = [m.value[1:] for m in (self.want.matches if self.want else ()) if m.value[:1] == "@"]
        self.depends_on = (TABLE_ADDRESS, *(f'firewall.set["{s}"]' for s in sets))
        firewall.members.append(self)

    def read(self, rt: Runtime) -> Observed[Any]:
        found = _live_rules(self.firewall.live()).get(self.name)
        return Observed(found, fingerprint_of(found.shape if found else None))

    def plan(self, observed: Observed[Any], rt: Runtime) -> Change:
        live: nft.Rule | None = observed.value
        want = self.want
        before = {"rule": live.shape} if live else None
        after = {"rule": want.shape} if want else None
        if want is None:
            if live is None:
                return Change(self.address, Action.NOOP)
            return Change(self.address, Action.DELETE, _closing(self.name), before, None,
                          needs=(ROOT_NEED,), impact=Impact.IN_PLACE)  # fmt: skip
        if live is None:
            return Change(self.address, Action.CREATE, self._purpose(), None, after,
                          needs=(ROOT_NEED,), impact=Impact.IN_PLACE)  # fmt: skip
        if live.shape == want.shape:
            return Change(self.address, Action.NOOP, "", before, before)
        return Change(self.address, Action.UPDATE, f"differs from mesh.yaml: {live.shape}",
                      before, after, needs=(ROOT_NEED,), impact=Impact.IN_PLACE)  # fmt: skip

    def _purpose(self) -> str:
        opening = self.firewall.openings.get(self.name)
        if opening is not None:
            return f"open {_describe(opening)} to its allowed nodes"
        return _FIXED.get(self.name, "new rule")

    def apply(self, change: Change, rt: Runtime) -> None:
        self.firewall.send(rt)


_FIXED = {
    "established": "accept replies to connections this node opened",
    "related": "accept ICMP errors about this node's connections",
    "icmp": "accept ping (firewall.icmp)",
    "icmpv6": "accept IPv6 ping (firewall.icmp)",
    "log": "log dropped packets, at most 5 a minute (firewall.log)",
    "drop": "drop and count everything else",
}


def _describe(opening: Opening) -> str:
    kinds = {"proxy": "'s mTLS proxy", "plaintext": "'s plaintext port (permissive mTLS)",
             "port": ""}  # fmt: skip
    return f"{opening.identity}{kinds[opening.kind]} on {opening.port}"


def _closing(name: str) -> str:
    if name in _FIXED:
        return f"no longer wanted ({_FIXED[name]})"
    return "no identity here exposes this port any more"


def _live_rules(live: nft.Table | None) -> dict[str, nft.Rule]:
    chain = live.chain(nft.OVERLAY_CHAIN) if live else None
    return {r.name: r for r in (chain.rules if chain else ()) if r.name}


def _interface(table: nft.Table) -> str:
    chain = table.chain(nft.INPUT_CHAIN)
    match = chain.rules[0].matches[0] if chain and chain.rules and chain.rules[0].matches else None
    return match.value if match else "?"


def _skeleton(table: nft.Table | None) -> dict[str, Any] | None:
    """What the table resource owns: chains with their hooks, the entry rules, and the
    order of the overlay rules (each rule's content is its own resource's)."""
    if table is None:
        return None
    chains = {}
    for chain in table.chains:
        entry: dict[str, Any] = {"hook": chain.hook.text() if chain.hook else None}
        if chain.name == nft.OVERLAY_CHAIN:
            entry["order"] = [r.name or r.shape for r in chain.rules]
        else:
            entry["rules"] = [r.shape for r in chain.rules]
        chains[chain.name] = entry
    return {"chains": chains}


def _skeleton_differences(live: nft.Table, want: nft.Table) -> list[str]:
    reasons = []
    have, need = _skeleton(live) or {}, _skeleton(want) or {}
    for name in sorted(set(have["chains"]) - set(need["chains"])):
        reasons.append(f"chain {name} is not meshops' (removed)")
    for name in sorted(set(need["chains"]) - set(have["chains"])):
        reasons.append(f"chain {name} missing")
    for name in sorted(set(need["chains"]) & set(have["chains"])):
        old, new = have["chains"][name], need["chains"][name]
        if old["hook"] != new["hook"]:
            reasons.append(f"chain {name}: hook {old['hook']} -> {new['hook']}")
        if old.get("rules") != new.get("rules"):
            reasons.append(f"chain {name}: rules {old.get('rules')} -> {new.get('rules')}")
        if old.get("order") != new.get("order"):
            kept = [r for r in old.get("order", []) if r in new.get("order", [])]
            wanted = [r for r in new.get("order", []) if r in kept]
            if kept != wanted:
                reasons.append(f"chain {name}: rules out of order")
            stray = [r for r in old.get("order", []) if not _named(r, live)]
            if stray:
                reasons.append(f"chain {name}: {len(stray)} rule(s) without a meshops name")
    return reasons


def _named(entry: str, live: nft.Table) -> bool:
    return entry in _live_rules(live)


def firewall_resources(scope: HostScope) -> list[Resource[Any]]:
    """The table, then its sets and rules: desired ones, and live ones that must go."""
    firewall = Firewall(scope)
    out: list[Resource[Any]] = [TableResource(firewall)]
    live = firewall.live()
    want = firewall.desired
    set_names = [s.name for s in want.sets] if want else []
    set_names += [s.name for s in (live.sets if live else ()) if s.name not in set_names]
    out += [SetResource(firewall, name) for name in set_names]
    want_chain = want.chain(nft.OVERLAY_CHAIN) if want else None
    rule_names = [r.name for r in want_chain.rules] if want_chain else []
    rule_names += [n for n in _live_rules(live) if n not in rule_names]
    out += [RuleResource(firewall, name) for name in rule_names]
    return out
