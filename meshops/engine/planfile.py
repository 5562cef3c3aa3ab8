"""Saved plans: bound to what they were made from, refused when that has moved.

A plan file records the scope, the git revision, a hash of mesh.yaml, the live-state
fingerprint, the meshops version, an expiry, and the changes (public facts only).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from meshops import __version__
from meshops.engine.plan import Action, Change, Impact, Plan
from meshops.errors import MeshError, PlanRefused
from meshops.providers.files import write_atomic

PLANFILE_FORMAT = 1
PLAN_LIFETIME = timedelta(hours=24)


@dataclass(frozen=True)
class SavedPlan:
    plan: Plan
    plan_id: str
    mesh_sha256: str
    expires_at: str
    version: str


def save(path: Path, plan: Plan, *, mesh_sha256: str, now: datetime) -> SavedPlan:
    from meshops.report.plan_json import plan_to_json

    saved = SavedPlan(
        plan=plan,
        plan_id=str(uuid.uuid4()),
        mesh_sha256=mesh_sha256,
        expires_at=(now + PLAN_LIFETIME).isoformat(timespec="seconds"),
        version=__version__,
    )
    body = plan_to_json(plan)
    body["planfile"] = {
        "format": PLANFILE_FORMAT,
        "plan_id": saved.plan_id,
        "mesh_sha256": mesh_sha256,
        "expires_at": saved.expires_at,
        "meshops_version": __version__,
    }
    write_atomic(path, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode(), mode=0o644)
    return saved


def load(path: Path) -> SavedPlan:
    try:
        data = json.loads(path.read_bytes())
        meta = data["planfile"]
        if meta["format"] != PLANFILE_FORMAT:
            raise PlanRefused(f"{path}: plan file format {meta['format']} is not supported")
        changes = tuple(_change(rc) for rc in data["resource_changes"])
        plan = Plan(
            scope=data["scope"],
            changes=changes,
            fingerprint=data["live_fingerprint"],
            revision=data.get("revision"),
            created_at=data.get("created_at", ""),
        )
        return SavedPlan(
            plan, meta["plan_id"], meta["mesh_sha256"], meta["expires_at"], meta["meshops_version"]
        )
    except FileNotFoundError:
        raise MeshError(f"{path}: no such plan file") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise MeshError(f"{path}: not a meshops plan file ({exc})") from None


def _change(rc: dict[str, Any]) -> Change:
    actions = rc["change"]["actions"]
    action = Action.REPLACE if actions == ["delete", "create"] else Action(actions[0])
    return Change(
        address=rc["address"],
        action=action,
        reason=rc.get("action_reason", ""),
        before=rc["change"].get("before"),
        after=rc["change"].get("after"),
        sensitive=bool(rc.get("sensitive")),
        needs=tuple(rc.get("needs", ())),
        impact=Impact(rc.get("impact", "none")),
    )


def check_still_valid(
    saved: SavedPlan, fresh: Plan, *, mesh_sha256: str, now: datetime, applied_ids: set[str]
) -> None:
    """Refuse a saved plan that no longer describes what apply would do."""
    if saved.plan_id in applied_ids:
        raise PlanRefused("this plan was already applied; run `meshops plan` again")
    if saved.version != __version__:
        raise PlanRefused(
            f"plan was made by meshops {saved.version}, this is {__version__}; plan again"
        )
    if now.isoformat(timespec="seconds") > saved.expires_at:
        raise PlanRefused(f"plan expired at {saved.expires_at}; run `meshops plan` again")
    if saved.plan.scope != fresh.scope:
        raise PlanRefused(f"plan is for scope {saved.plan.scope}, not {fresh.scope}")
    if saved.plan.revision != fresh.revision:
        raise PlanRefused(
            f"plan was made at revision {saved.plan.revision}, the repository is now at "
            f"{fresh.revision}; plan again"
        )
    if saved.mesh_sha256 != mesh_sha256:
        raise PlanRefused("mesh.yaml changed since the plan was made; plan again")
    if saved.plan.fingerprint != fresh.fingerprint:
        raise PlanRefused(
            "live state changed since the plan was made (another apply ran, or files "
            "changed); run `meshops plan` again"
        )
    want = [(c.address, c.action) for c in saved.plan.actionable]
    got = [(c.address, c.action) for c in fresh.actionable]
    if want != got:
        raise PlanRefused("the changes apply would make differ from the saved plan; plan again")
