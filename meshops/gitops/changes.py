"""Desired-state changes between two meshes, in words (pure).

Each change names what moved (`nodes["web-1"]`, `ca`) and lists its field changes as
short sentences a reviewer reads in a pull request: `endpoint: 192.0.2.11:51820 ->
192.0.2.99:51820`, `placed on api-3`, `recipient removed age1c3uu…9luv`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from meshops.model.mesh import Mesh, Policy, PolicyTest

Action = Literal["added", "removed", "changed"]

SETTINGS = ("mesh", "secrets", "ca", "certs", "wireguard", "mtls", "firewall")
# list fields where order carries no meaning: show what joined and what left
_SET_FIELDS = {"nodes", "dns", "ips", "recipients", "from", "to", "ports"}
_KEYS = {"recipient", "recipients"}


@dataclass(frozen=True)
class DesiredChange:
    section: str  # nodes | identities | groups | policies | tests | mesh | ca | ...
    name: str  # the entry's name; "" for a settings section
    action: Action
    details: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return f'{self.section}["{self.name}"]' if self.name else self.section


def short_key(text: str) -> str:
    """A public key shortened for reading: `age1c3uu…9luv`, `ssh-ed25519 AAAA…4TYS`."""
    kind, _, body = text.rpartition(" ")
    short = body if len(body) <= 16 else f"{body[:8]}…{body[-6:]}"
    return f"{kind} {short}" if kind else short


def _show(value: Any, key: str = "") -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, str):
        return short_key(value) if key in _KEYS else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[" + ", ".join(value) + "]"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(", ", ": "), sort_keys=True)
    return str(value)


def field_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """Readable differences between two plain (model_dump) mappings, sorted by field."""
    out: list[str] = []
    for key in sorted(set(before) | set(after)):
        if key in before and key in after and before[key] == after[key]:
            continue
        old, new = before.get(key), after.get(key)
        name = f"{prefix}{key}"
        if isinstance(old, dict) and isinstance(new, dict):
            out.extend(field_changes(old, new, f"{name}."))
        elif key in _SET_FIELDS and _str_list(old) and _str_list(new):
            out.append(f"{name}: {_set_delta(old or [], new or [], key)}")
        else:
            out.append(f"{name}: {_show(old, key)} -> {_show(new, key)}")
    return out


def _str_list(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _set_delta(old: Sequence[str], new: Sequence[str], key: str = "") -> str:
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    parts = [f"+{_show(v, key)}" for v in added] + [f"-{_show(v, key)}" for v in removed]
    return ", ".join(parts) if parts else "order changed"


def _dump(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    return data


def _keyed(
    section: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[DesiredChange]:
    changes = []
    for name in sorted(set(before) | set(after)):
        if name not in before:
            changes.append(DesiredChange(section, name, "added", tuple(_summary(after[name]))))
        elif name not in after:
            changes.append(DesiredChange(section, name, "removed"))
        else:
            details = _entry_changes(section, before[name], after[name])
            if details:
                changes.append(DesiredChange(section, name, "changed", tuple(details)))
    return changes


def _summary(value: Any) -> list[str]:
    """The facts worth a line when an entry is added."""
    if isinstance(value, list):  # a group's members
        return [f"members: {_show(value)}"]
    data = _dump(value)
    facts = []
    for key in ("endpoint", "address", "nodes", "from", "to", "ttl"):
        if data.get(key) is not None:
            facts.append(f"{key}: {_show(data[key], key)}")
    if data.get("proxy"):
        facts.append(f"proxy: {data['proxy']['kind']} on :{data['proxy']['listen']}")
    if "allow" in data:
        facts.append(f"allow: {_rules(data['allow'])}")
    return facts


def _rules(rules: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(
        f"ports {', '.join(rule['ports'])}"
        if rule.get("ports")
        else f"{','.join(rule['methods'])} {', '.join(rule['paths'])}"
        for rule in rules
    )


def _entry_changes(section: str, before: Any, after: Any) -> list[str]:
    if section == "groups":
        return [f"members: {_set_delta(before, after)}"] if before != after else []
    old, new = _dump(before), _dump(after)
    out = []
    if section == "identities" and old["nodes"] != new["nodes"]:
        placed = sorted(set(new["nodes"]) - set(old["nodes"]))
        moved_off = sorted(set(old["nodes"]) - set(new["nodes"]))
        if placed:
            out.append(f"placed on {', '.join(placed)}")
        if moved_off:
            out.append(f"removed from {', '.join(moved_off)}")
        old, new = {**old, "nodes": None}, {**new, "nodes": None}
    if section == "policies" and old.get("allow") != new.get("allow"):
        out.append(f"allow: {_rules(old['allow'])} -> {_rules(new['allow'])}")
        old, new = {**old, "allow": None}, {**new, "allow": None}
    return out + field_changes(old, new)


def _test_text(test: PolicyTest) -> str:
    return f"{test.from_} -> {test.to} {test.request}: expect {test.expect}"


def _tests(before: Sequence[PolicyTest], after: Sequence[PolicyTest]) -> list[DesiredChange]:
    old = {_test_text(t) for t in before}
    new = {_test_text(t) for t in after}
    details = [f"+ {t}" for t in sorted(new - old)] + [f"- {t}" for t in sorted(old - new)]
    return [DesiredChange("tests", "", "changed", tuple(details))] if details else []


def _policies(mesh: Mesh | None) -> dict[str, Policy]:
    return {p.name: p for p in mesh.policies} if mesh else {}


def desired_changes(before: Mesh | None, after: Mesh) -> list[DesiredChange]:
    """What changed from `before` (None: nothing, a new mesh) to `after`, in words."""
    changes: list[DesiredChange] = []
    if before is not None:
        for section in SETTINGS:
            details = field_changes(_dump(getattr(before, section)), _dump(getattr(after, section)))
            if details:
                changes.append(DesiredChange(section, "", "changed", tuple(details)))
    changes += _keyed("nodes", before.nodes if before else {}, after.nodes)
    changes += _keyed("identities", before.identities if before else {}, after.identities)
    changes += _keyed("groups", before.groups if before else {}, after.groups)
    changes += _keyed("policies", _policies(before), _policies(after))
    changes += _tests(before.tests if before else [], after.tests)
    return changes
