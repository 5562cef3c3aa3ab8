"""`meshops apply --format json`: what an apply did, for scripts and CI.

Stable: `format_version` "1.0"; a new minor version only adds fields. Layout:

    {
      "format_version": "1.0",
      "scope": "repo" | "node:<name>",
      "revision": "<git commit>" | null,
      "result": "ok" | "failed" | "no-op",
      "applied": [{"address": "cert.leaf[\"api\"]", "actions": ["delete", "create"]}],
      "failures": [{"address": "proxy.nginx[\"api\"]", "actions": ["update"],
                    "error": "nginx -t rejected ...", "hint": "..." | null}],
      "skipped": ["hook.reload[\"api\"]"],
      "summary": {"add": 1, "change": 0, "destroy": 1}
    }

`failures` lists every change that failed (a host keeps going past a failure);
`skipped` the changes not attempted because something they need failed.
"""

from __future__ import annotations

from typing import Any

from meshops.engine.plan import Action, Plan
from meshops.engine.run import ApplyResult

FORMAT_VERSION = "1.0"


def apply_to_json(plan: Plan, result: ApplyResult | None) -> dict[str, Any]:
    done = [c.action for c in result.applied] if result else []
    return {
        "format_version": FORMAT_VERSION,
        "scope": plan.scope,
        "revision": plan.revision,
        "result": "no-op" if result is None else ("ok" if result.ok else "failed"),
        "applied": [
            {"address": c.address, "actions": c.action.terraform_actions}
            for c in (result.applied if result else [])
        ],
        "failures": [
            {
                "address": change.address,
                "actions": change.action.terraform_actions,
                "error": error.message,
                "hint": error.hint,
            }
            for change, error in (result.failures if result else [])
        ],
        "skipped": [c.address for c in (result.skipped if result else [])],
        "summary": {
            "add": sum(a in (Action.CREATE, Action.REPLACE) for a in done),
            "change": sum(a is Action.UPDATE for a in done),
            "destroy": sum(a in (Action.DELETE, Action.REPLACE) for a in done),
        },
    }
