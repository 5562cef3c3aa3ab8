"""The machine-readable plan, modelled on `terraform show -json`.

Stable: `format_version` "1.0"; a new minor version only adds fields. Layout:

    {
      "format_version": "1.0",
      "meshops_version": "0.1.0",
      "scope": "repo" | "node:<name>",
      "revision": "<git commit>" | null,
      "created_at": "<ISO 8601>",
      "live_fingerprint": "<hex>",
      "resource_changes": [
        {"address": "ca.node[\"web-1\"]", "type": "ca.node", "name": "web-1",
         "change": {"actions": ["create"], "before": {...} | null, "after": {...} | null},
         "action_reason": "new node", "sensitive": true, "impact": "none",
         "needs": ["root CA key (...)"]}
      ],
      "summary": {"add": 1, "change": 0, "destroy": 0},
      "needs": [...]
    }

`actions` is one of ["no-op"], ["create"], ["update"], ["delete", "create"], ["delete"].
`before`/`after` carry public facts only (serials, expiry, fingerprints, public keys).
"""

from __future__ import annotations

import re
from typing import Any

from meshops import __version__
from meshops.engine.plan import Change, Plan

FORMAT_VERSION = "1.0"
_ADDRESS = re.compile(r'(?P<type>[^\[]+)(\["(?P<name>.*)"\])?')


def split_address(address: str) -> tuple[str, str | None]:
    m = _ADDRESS.fullmatch(address)
    if not m:
        return address, None
    return m.group("type"), m.group("name")


def change_to_json(change: Change) -> dict[str, Any]:
    kind, name = split_address(change.address)
    return {
        "address": change.address,
        "type": kind,
        "name": name,
        "change": {
            "actions": change.action.terraform_actions,
            "before": change.before,
            "after": change.after,
        },
        "action_reason": change.reason,
        "sensitive": change.sensitive,
        "impact": change.impact.value,
        "needs": list(change.needs),
    }


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "meshops_version": __version__,
        "scope": plan.scope,
        "revision": plan.revision,
        "created_at": plan.created_at,
        "live_fingerprint": plan.fingerprint,
        "resource_changes": [change_to_json(c) for c in plan.changes],
        "summary": plan.counts(),
        "needs": plan.needs(),
    }
