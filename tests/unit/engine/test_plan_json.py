"""The machine-readable plan and saved plan files: documented fields, round trip, refusal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshops import __version__
from meshops.engine import planfile
from meshops.engine.plan import Action, Change, Impact, Plan
from meshops.errors import MeshError, PlanRefused
from meshops.report.plan_json import plan_to_json, split_address
from meshops.report.plan_text import render_markdown, render_text

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def sample_plan(fingerprint: str = "abc") -> Plan:
    return Plan(
        scope="repo",
        changes=(
            Change("ca.root", Action.NOOP),
            Change(
                'ca.node["web-1"]',
                Action.REPLACE,
                "node recipient changed",
                {"serial": "01"},
                {"names": ["dns:web-1"]},
                sensitive=True,
                needs=("root CA key",),
                impact=Impact.SESSION_RESET,
            ),
            Change('ipam.address["web-2"]', Action.CREATE, "allocated: 10.42.0.9"),
            Change('wireguard.key["old"]', Action.DELETE, "node removed", sensitive=True),
        ),
        fingerprint=fingerprint,
        revision="0" * 40,
        created_at=NOW.isoformat(),
    )


def test_plan_json_has_the_documented_fields() -> None:
    data = plan_to_json(sample_plan())
    assert data["format_version"] == "1.0"
    assert data["meshops_version"] == __version__
    assert {"scope", "revision", "created_at", "live_fingerprint", "summary", "needs"} <= set(data)
    replace = data["resource_changes"][1]
    assert replace == {
        "address": 'ca.node["web-1"]',
        "type": "ca.node",
        "name": "web-1",
        "change": {
            "actions": ["delete", "create"],
            "before": {"serial": "01"},
            "after": {"names": ["dns:web-1"]},
        },
        "action_reason": "node recipient changed",
        "sensitive": True,
        "impact": "session-reset",
        "needs": ["root CA key"],
    }
    assert [rc["change"]["actions"] for rc in data["resource_changes"]] == [
        ["no-op"],
        ["delete", "create"],
        ["create"],
        ["delete"],
    ]
    assert data["summary"] == {"add": 2, "change": 0, "destroy": 2}
    json.dumps(data)  # serialisable


@given(
    st.from_regex(r"[a-z][a-z._]{0,20}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True),
)
def test_split_address_recovers_type_and_name(kind: str, name: str) -> None:
    address = f'{kind}["{name}"]'
    assert split_address(address) == (kind, name)
    assert split_address(kind) == (kind, None)


def test_text_and_markdown_show_symbols_reasons_and_sensitivity() -> None:
    text = render_text(sample_plan())
    assert '-/+ ca.node["web-1"]: node recipient changed  (sensitive) [session-reset]' in text
    assert '  + ipam.address["web-2"]: allocated: 10.42.0.9' in text
    assert "ca.root" not in text
    assert "Plan: 2 to add, 0 to change, 2 to destroy." in text
    md = render_markdown(sample_plan())
    assert "```diff\n-/+ ca.node" in md
    empty = Plan("repo", (Change("ca.root", Action.NOOP),), "f")
    assert render_text(empty).startswith("No changes.")


def test_needs_already_met_are_left_off_the_text_but_not_the_json() -> None:
    root = "root privileges (network configuration)"
    plan = Plan("node:web-1", (Change("hosts.block", Action.UPDATE, "x", needs=(root, "key")),),
                "f")  # fmt: skip
    assert f"Needs: key; {root}" in render_text(plan)
    assert render_text(plan, met={root}).splitlines()[-1] == "Needs: key"
    assert "Needs:" not in render_text(plan, met={root, "key"})
    assert plan_to_json(plan)["needs"] == ["key", root]


def test_saved_plan_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "p.plan"
    saved = planfile.save(path, sample_plan(), mesh_sha256="m", now=NOW)
    assert path.stat().st_mode & 0o777 == 0o644
    loaded = planfile.load(path)
    assert loaded == saved
    assert loaded.expires_at == (NOW + planfile.PLAN_LIFETIME).isoformat()


def _check(saved: planfile.SavedPlan, fresh: Plan, **kw: object) -> None:
    args: dict[str, object] = {"mesh_sha256": "m", "now": NOW, "applied_ids": set()}
    args.update(kw)
    planfile.check_still_valid(saved, fresh, **args)  # type: ignore[arg-type]


def test_saved_plan_is_accepted_while_nothing_moved(tmp_path: Path) -> None:
    saved = planfile.save(tmp_path / "p", sample_plan(), mesh_sha256="m", now=NOW)
    _check(saved, sample_plan())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fresh": sample_plan("moved")}, "live state changed"),
        ({"mesh_sha256": "other"}, "mesh.yaml changed"),
        ({"now": NOW + timedelta(days=2)}, "plan expired"),
        ({"applied": True}, "already applied"),
        ({"fresh": Plan("node:web-1", sample_plan().changes, "abc", "0" * 40)}, "scope"),
        ({"fresh": Plan("repo", sample_plan().changes, "abc", "1" * 40)}, "revision"),
        ({"fresh": Plan("repo", sample_plan().changes[:2], "abc", "0" * 40)}, "differ"),
    ],
)
def test_stale_saved_plan_is_refused(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    saved = planfile.save(tmp_path / "p", sample_plan(), mesh_sha256="m", now=NOW)
    fresh = change.pop("fresh", sample_plan())
    if change.pop("applied", False):
        change["applied_ids"] = {saved.plan_id}
    with pytest.raises(PlanRefused, match=message):
        _check(saved, fresh, **change)  # type: ignore[arg-type]


def test_a_file_that_is_not_a_plan_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("[]")
    with pytest.raises(MeshError, match="not a meshops plan file"):
        planfile.load(bad)
    with pytest.raises(MeshError, match="no such plan file"):
        planfile.load(tmp_path / "missing")
