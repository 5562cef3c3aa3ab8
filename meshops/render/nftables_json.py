"""Read `nft -j list table inet meshops` back into the values of `nftables.py` (pure).

Only what meshops writes is understood; anything else (another match, a set of
intervals, an unknown statement) becomes an `Unknown` part, which never equals a
desired rule, so a hand-edited table is planned back to what mesh.yaml says.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from meshops.errors import MeshError
from meshops.render.nftables import (
    Chain,
    Counter,
    Hook,
    Limit,
    Log,
    Match,
    NamedSet,
    Rule,
    Statement,
    Table,
    Unknown,
    Verdict,
)

# nft's JSON names for the keys meshops matches on (`meta iifname` prints as `iifname`)
_META = {"iifname", "oifname"}
_SET_TYPES = {"ipv4_addr", "ipv6_addr"}


def parse_table(text: str, *, family: str, name: str) -> Table | None:
    """The table in nft's JSON output, or None when the output holds no such table."""
    try:
        document = json.loads(text)
        items = document["nftables"]
        if not isinstance(items, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise MeshError(
            f"nft printed something that is not its JSON ruleset: {text[:80]!r}"
        ) from None
    try:
        return _table(items, family=family, name=name)
    except (TypeError, ValueError, AttributeError) as exc:  # valid JSON, not nft's shapes
        raise MeshError(f"cannot read nft's JSON for table {family} {name}: {exc}") from None


def _table(items: list[Any], *, family: str, name: str) -> Table | None:
    found = False
    sets: list[NamedSet] = []
    chains: dict[str, tuple[Hook | None, list[Rule]]] = {}
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        kind, body = next(iter(item.items()))
        if not isinstance(body, dict) or body.get("family") != family:
            continue
        if kind == "table" and body.get("name") == name:
            found = True
        elif body.get("table") != name:
            continue
        elif kind == "set":
            sets.append(_set(body))
        elif kind == "chain":
            chains[str(body.get("name"))] = (_hook(body), [])
        elif kind == "rule":
            chain = chains.setdefault(str(body.get("chain")), (None, []))
            chain[1].append(_rule(body))
    if not found:
        return None
    return Table(
        chains=tuple(Chain(n, hook, tuple(rules)) for n, (hook, rules) in chains.items()),
        sets=tuple(sets),
        family=family,
        name=name,
    )


def _set(body: dict[str, Any]) -> NamedSet:
    kind = body.get("type")
    raw = body.get("elem") or []
    raw = raw if isinstance(raw, list) else [raw]
    elements = tuple(sorted((_element(e) for e in raw), key=_order))
    if kind not in _SET_TYPES or body.get("flags"):
        # a set meshops never makes (typed otherwise, intervals, timeouts): never ours
        flags = body.get("flags")
        return NamedSet(
            str(body.get("name")),
            _dump(kind) + (f" flags {_dump(flags)}" if flags else ""),
            elements,
        )
    return NamedSet(str(body["name"]), kind, elements)


def _element(value: Any) -> str:
    if isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value
    return _dump(value)  # a prefix, a range or an element with options: never ours


def _order(element: str) -> tuple[int, int, str]:
    try:
        ip = ipaddress.ip_address(element)
    except ValueError:
        return (9, 0, element)
    return (ip.version, int(ip), "")


def _hook(body: dict[str, Any]) -> Hook | None:
    if "hook" not in body:
        return None
    return Hook(
        str(body.get("type", "")),
        str(body["hook"]),
        int(body.get("prio", 0)),
        str(body.get("policy", "accept")),
    )


def _rule(body: dict[str, Any]) -> Rule:
    matches: list[Match] = []
    statements: list[Statement] = []
    exprs = body.get("expr") or []
    for expr in exprs if isinstance(exprs, list) else [exprs]:
        part = _expr(expr)
        if isinstance(part, Match):
            if statements:  # a match after a statement: not a shape meshops writes
                statements.append(Unknown(_dump(expr)))
            else:
                matches.append(part)
        else:
            statements.append(part)
    return Rule(str(body.get("comment", "")), tuple(matches), tuple(statements))


def _expr(expr: Any) -> Match | Statement:
    if not isinstance(expr, dict) or len(expr) != 1:
        return Unknown(_dump(expr))
    kind, body = next(iter(expr.items()))
    if kind == "match" and isinstance(body, dict) and body.get("op") in ("==", "in"):
        key, value = _key(body.get("left")), _value(body.get("right"))
        if key is not None and value is not None:
            return Match(key, value)
    elif kind == "counter" and isinstance(body, dict):
        return Counter(int(body.get("packets", 0)), int(body.get("bytes", 0)))
    elif (
        kind == "limit" and isinstance(body, dict) and body.get("rate_unit", "packets") == "packets"
    ):
        return Limit(int(body.get("rate", 0)), str(body.get("per", "")), int(body.get("burst", 0)))
    elif kind == "log" and isinstance(body, dict) and set(body) <= {"prefix", "level"}:
        return Log(str(body.get("prefix", "")), str(body.get("level", "warn")))
    elif kind in ("accept", "drop") and body is None:
        return Verdict(kind)
    elif kind == "jump" and isinstance(body, dict) and isinstance(body.get("target"), str):
        return Verdict("jump", body["target"])
    return Unknown(_dump(expr))


def _key(left: Any) -> str | None:
    if not isinstance(left, dict) or len(left) != 1:
        return None
    kind, body = next(iter(left.items()))
    if not isinstance(body, dict):
        return None
    if kind == "meta" and body.get("key") in _META:
        return str(body["key"])
    if kind == "ct" and set(body) == {"key"}:
        return f"ct {body['key']}"
    if kind == "payload" and set(body) == {"protocol", "field"}:
        return f"{body['protocol']} {body['field']}"
    return None


def _value(right: Any) -> str | None:
    if isinstance(right, bool):
        return None
    if isinstance(right, str | int):
        return str(right)
    if isinstance(right, list) and right and all(isinstance(v, str) for v in right):
        return ",".join(sorted(right))  # flags such as `ct state established,related`
    return None


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
