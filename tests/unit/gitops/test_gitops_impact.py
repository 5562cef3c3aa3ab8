from __future__ import annotations

import copy

from factories import make_mesh, web_api_mesh
from gitops_helpers import mesh_of

from meshops.gitops.impact import NodeImpact, node_impacts


def _impacts(before: dict, after: dict) -> dict[str, NodeImpact]:
    return {i.node: i for i in node_impacts(mesh_of(before), mesh_of(after))}


def test_unchanged_mesh_has_no_impact() -> None:
    data = web_api_mesh()
    assert _impacts(data, copy.deepcopy(data)) == {}


def test_removed_node_disappears_as_a_peer_on_every_remaining_host() -> None:
    before = make_mesh(nodes=4)
    after = copy.deepcopy(before)
    del after["nodes"]["node-4"]
    impacts = _impacts(before, after)
    assert impacts["node-4"].status == "removed"
    assert "disappears as a peer on 3 nodes" in impacts["node-4"].own_changes[0]
    for node in ("node-1", "node-2", "node-3"):
        assert impacts[node].peers_removed == ("node-4",)
        assert impacts[node].peers_added == ()
        assert impacts[node].hosts_changed


def test_added_node_gets_every_other_node_as_peer_and_its_certs() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["nodes"]["node-4"] = make_mesh(nodes=4)["nodes"]["node-4"]
    after["identities"]["api"]["nodes"].append("node-4")
    impacts = _impacts(before, after)
    new = impacts["node-4"]
    assert new.status == "added"
    assert new.all_peers_added and new.peer_count == 3
    assert new.certs_added == ("api",)
    assert new.proxies_changed == ('proxy.envoy["api"]',)
    assert impacts["node-1"].peers_added == ("node-4",)


def test_endpoint_change_is_one_peer_changed_in_place_on_the_others() -> None:
    before = make_mesh(nodes=3)
    after = copy.deepcopy(before)
    after["nodes"]["node-2"]["endpoint"] = "198.51.100.7:51820"
    impacts = _impacts(before, after)
    assert impacts["node-1"].peers_changed == ("node-2",)
    assert impacts["node-3"].peers_changed == ("node-2",)
    assert impacts["node-1"].session_resets == ()
    assert impacts["node-2"].own_changes[0].startswith("endpoint ")
    assert impacts["node-2"].peers_changed == ()


def test_moving_an_identity_removes_its_cert_on_one_node_and_adds_it_on_another() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["identities"]["admin"]["nodes"] = ["node-3"]
    impacts = _impacts(before, after)
    assert impacts["node-1"].certs_removed == ("admin",)
    assert impacts["node-3"].certs_added == ("admin",)


def test_policy_change_reloads_the_callee_proxy_only() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["identities"]["api"]["proxy"]["reload"] = ["systemctl", "restart", "envoy"]
    before["identities"]["api"]["proxy"]["reload"] = ["systemctl", "restart", "envoy"]
    after["policies"][0]["allow"][0]["methods"] = ["GET", "HEAD"]
    impacts = _impacts(before, after)
    assert set(impacts) == {"node-2"}  # api runs on node-2; web and db are untouched
    assert impacts["node-2"].proxies_changed == ('proxy.envoy["api"]',)
    assert impacts["node-2"].reloads == ("systemctl restart envoy",)


def test_interface_rename_resets_every_session() -> None:
    before = make_mesh(nodes=3)
    after = copy.deepcopy(before)
    after["wireguard"]["interface"] = "wg-new"
    impacts = _impacts(before, after)
    assert impacts["node-1"].session_resets == (
        "interface wg-mesh -> wg-new is recreated: every tunnel handshakes again",
    )


def test_keepalive_change_changes_every_peer_in_place_as_one_flag() -> None:
    before = make_mesh(nodes=3)
    after = copy.deepcopy(before)
    after["wireguard"]["keepalive"] = "10s"
    impacts = _impacts(before, after)
    assert all(i.all_peers_changed and i.peers_changed == () for i in impacts.values())
    assert impacts["node-1"].peer_count == 2


def test_ttl_change_reissues_certs_and_runs_on_renew_hooks() -> None:
    before = web_api_mesh()
    before["identities"]["admin"]["on_renew"] = [["systemctl", "reload", "admin"]]
    after = copy.deepcopy(before)
    after["identities"]["admin"]["ttl"] = "12h"
    impacts = _impacts(before, after)
    assert impacts["node-1"].certs_changed == ("admin",)
    assert impacts["node-1"].reloads == ("systemctl reload admin",)


def test_a_new_mesh_is_all_added_nodes() -> None:
    after = mesh_of(make_mesh(nodes=3))
    impacts = node_impacts(None, after)
    assert [(i.node, i.status, i.all_peers_added, i.peer_count) for i in impacts] == [
        ("node-1", "added", True, 2),
        ("node-2", "added", True, 2),
        ("node-3", "added", True, 2),
    ]
