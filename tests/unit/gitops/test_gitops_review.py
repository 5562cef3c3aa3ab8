from __future__ import annotations

import copy
import json

from factories import make_mesh, test_case, to_yaml, web_api_mesh
from gitops_helpers import snap, state_for

from meshops.gitops.review import PlanLine, PlanSummary, build_review
from meshops.report.review_json import render_json
from meshops.report.review_markdown import render_markdown
from meshops.report.review_text import render_text


def test_policy_change_shows_exact_access_gained_and_lost() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["policies"][0]["allow"][0]["paths"] = ["/v2/*"]
    review = build_review(snap(before, "main"), snap(after))
    gained = [(g.caller, g.callee, g.method, g.path) for g in review.access.gained]
    lost = [(g.caller, g.callee, g.method, g.path) for g in review.access.lost]
    assert gained == [("admin", "api", "GET", "/v2/*"), ("web", "api", "GET", "/v2/*")]
    assert lost == [("admin", "api", "GET", "/v1/*"), ("web", "api", "GET", "/v1/*")]
    # web's test `GET /v1/users: allow` now fails: the review says so and exits 1
    assert [str(f).split(": ", 1)[1] for f in review.tests.failures] == [
        "tests[0]: policy test failed: web -> api GET /v1/users: expected allow, "
        "got deny (no policy allows it)"
    ]


def test_failing_policy_test_at_head_fails_the_review() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["policies"][0]["allow"][0]["methods"] = ["GET", "DELETE"]  # web may now DELETE
    review = build_review(snap(before, "main"), snap(after))
    assert not review.ok and review.exit_code == 1
    assert len(review.tests.failures) == 1
    assert "expected deny, got allow" in str(review.tests.failures[0])
    assert review.tests.passed == review.tests.total - 1
    markdown = render_markdown(review)
    assert "❌" in markdown and "1 policy test failed" in markdown


def test_invalid_head_is_reported_with_located_problems() -> None:
    before = web_api_mesh()
    text = to_yaml(before).replace("endpoint:", "endpont:", 1)
    review = build_review(snap(before, "main"), snap(None, text=text))
    assert review.exit_code == 1
    assert not review.head.valid
    assert any("mesh.yaml:" in str(p) and "endpont" in str(p) for p in review.head.problems)
    assert "does not validate" in render_text(review)
    doc = json.loads(render_json(review))
    assert doc["ok"] is False and doc["head"]["problems"][0]["line"] is not None


def test_missing_mesh_at_head_is_an_error_and_at_base_means_all_new() -> None:
    data = make_mesh(nodes=2)
    gone = build_review(snap(data, "main"), snap(None))
    assert gone.exit_code == 1 and "does not exist" in str(gone.head.problems[0])
    new = build_review(snap(None, "main"), snap(data))
    assert new.ok
    assert [c.action for c in new.changes] == ["added", "added"]
    assert any("everything is new" in n for n in new.notes)


def test_state_mismatch_is_flagged_but_does_not_fail() -> None:
    data = make_mesh(nodes=2)
    after = copy.deepcopy(data)
    after["nodes"]["node-3"] = make_mesh(nodes=3)["nodes"]["node-3"]
    state = state_for("node-1", "node-2")  # as applied at base: state/ did not change
    review = build_review(snap(data, "main", state=state), snap(after, state=state))
    assert review.ok
    assert review.state_issues == (
        "node 'node-3' is in mesh.yaml but not in state/state.yaml "
        "(run `meshops apply` at repo scope and commit state/)",
    )
    assert "state/ does not match mesh.yaml" in render_markdown(review)


def test_plan_section_seam_receives_head_and_state_and_is_rendered() -> None:
    seen = {}

    def plan(loaded, state):  # type: ignore[no-untyped-def]
        seen["nodes"] = sorted(loaded.mesh.nodes)
        seen["state"] = sorted(state)
        return PlanSummary(
            (
                PlanLine("create", 'ca.node["node-3"]', "new node"),
                PlanLine("destroy", 'wireguard.peer["node-9"]', "node removed"),
            ),
            note="needs the root CA identity",
        )

    data = make_mesh(nodes=3)
    review = build_review(
        snap(data, "main"), snap(data, state={"state.yaml": b"nodes: {}"}), plan_section=plan
    )
    assert seen == {"nodes": ["node-1", "node-2", "node-3"], "state": ["state.yaml"]}
    markdown = render_markdown(review)
    assert '```diff\n+ ca.node["node-3"]  # new node\n- wireguard.peer["node-9"]' in markdown
    assert "1 to create, 1 to destroy" in markdown
    assert json.loads(render_json(review))["plan"]["changes"][0]["symbol"] == "+"


def test_json_is_stable_and_complete() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    del after["nodes"]["node-3"]
    del after["identities"]["db"]
    after["policies"] = after["policies"][:2]
    after["tests"] = [t for t in after["tests"] if "db" not in (t["from"], t["to"])]
    review = build_review(snap(before, "main"), snap(after))
    first = render_json(review)
    assert first == render_json(build_review(snap(before, "main"), snap(after)))
    doc = json.loads(first)
    assert set(doc) == {
        "format_version",
        "ok",
        "base",
        "head",
        "notes",
        "summary",
        "changes",
        "access",
        "tests",
        "warnings",
        "nodes",
        "state",
        "enrolments",
        "plan",
    }
    assert doc["enrolments"] == {"changed": [], "summary": [], "errors": []}
    assert doc["summary"]["access_lost"] == 1
    assert {"code": "node-removed", "message": doc["warnings"][0]["message"]} in doc["warnings"]
    removed = next(n for n in doc["nodes"] if n["node"] == "node-3")
    assert removed["status"] == "removed" and removed["certs_removed"] == ["db"]
    assert next(n for n in doc["nodes"] if n["node"] == "node-1")["peers_removed"] == ["node-3"]


def test_markdown_for_a_thousand_node_change_stays_under_the_limit_with_a_note() -> None:
    before = make_mesh(nodes=10, identities=10)
    after = make_mesh(
        nodes=1000,
        identities=1000,
        wireguard={"network": "10.40.0.0/14"},
        tests=[test_case("id-1", "id-2", "GET /", "deny")],
    )
    review = build_review(snap(before, "main"), snap(after))
    markdown = render_markdown(review)
    assert len(markdown) < 65_000
    assert "trimmed to keep this comment under 65,000 characters" in markdown
    assert markdown.startswith("## ✅ meshops review")
    assert len(render_markdown(review, limit=10_000)) <= 10_000
