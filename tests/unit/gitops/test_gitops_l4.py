"""L4 in review and graph: a change that opens a port shows in the access diff (text,
markdown, JSON), in the per-node impact as a firewall change, on the graph as an L4
edge, and with `wireguard.peers: policy` as the peers it adds."""

from __future__ import annotations

import copy
import json
from typing import Any

from factories import identity, make_mesh, proxy, test_case, to_yaml
from gitops_helpers import snap

from meshops.gitops.review import build_review
from meshops.model import load_text
from meshops.render import proxy_spec, render
from meshops.report.graph import render_dot, render_mermaid
from meshops.report.review_json import review_to_dict
from meshops.report.review_markdown import render_markdown
from meshops.report.review_text import render_text

DB_RULE = {"ports": ["5432/tcp"]}


def base_mesh(**sections: Any) -> dict[str, Any]:
    return make_mesh(
        nodes=3,
        identities={
            "api": identity("node-1", proxy=proxy()),
            "db": identity("node-2", ports=["5432/tcp", "53/udp"]),
            "web": identity("node-3"),
        },
        policies=[{"name": "web-api", "from": "web", "to": "api"}],
        **sections,
    )


def opened(data: dict[str, Any]) -> dict[str, Any]:
    after = copy.deepcopy(data)
    after["policies"].append({"name": "api-db", "from": "api", "to": "db", "allow": [DB_RULE]})
    after["tests"] = [test_case("api", "db", "tcp/5432", "allow")]
    return after


def test_a_change_that_opens_a_port_shows_it_in_the_access_diff_everywhere() -> None:
    before = base_mesh()
    review = build_review(snap(before, "main"), snap(opened(before)))
    assert review.ok and review.tests.total == 1 and not review.tests.failures
    gained = [(g.caller, g.callee, str(g.port), g.policy) for g in review.access.ports_gained]
    assert gained == [("api", "db", "5432/tcp", "api-db")]
    assert review.access.gained == () and review.access.lost == ()
    line = "+ api -> db  5432/tcp (L4)  (policy api-db)"
    assert line in render_text(review, color=False)
    markdown = render_markdown(review)
    assert line in markdown and "access +1 / -0" in markdown
    data = review_to_dict(review)
    assert data["access"]["ports_gained"] == [
        {"caller": "api", "callee": "db", "port": "5432/tcp", "policy": "api-db"}
    ]
    assert data["summary"]["ports_gained"] == 1 and data["access"]["ports_lost"] == []
    json.dumps(data)  # serialisable as it is


def test_per_node_impact_lists_the_firewall_change_on_the_callee_node_only() -> None:
    before = base_mesh()
    review = build_review(snap(before, "main"), snap(opened(before)))
    impacts = {i.node: i for i in review.impacts}
    assert impacts["node-2"].firewall_changes == ("db:5432/tcp: +node-1",)
    assert "node-3" not in impacts  # web's node: nothing changes there
    assert "firewall db:5432/tcp: +node-1" in render_text(review, color=False)
    nodes = {n["node"]: n for n in review_to_dict(review)["nodes"]}
    assert nodes["node-2"]["firewall_changes"] == ["db:5432/tcp: +node-1"]


def test_firewall_settings_show_on_every_node() -> None:
    before = base_mesh()
    after = copy.deepcopy(before)
    after["firewall"] = {"icmp": False}
    review = build_review(snap(before, "main"), snap(after))
    assert {i.node: i.firewall_changes for i in review.impacts} == {
        n: ("icmp off",) for n in ("node-1", "node-2", "node-3")
    }
    text = render_text(review, color=False)
    assert "  firewall changed\n      icmp: true -> false" in text
    assert "firewall icmp off" in text


def test_with_policy_peers_a_new_flow_adds_exactly_those_peers() -> None:
    before = base_mesh(wireguard={"peers": "policy"})
    review = build_review(snap(before, "main"), snap(opened(before)))
    impacts = {i.node: i for i in review.impacts}
    assert impacts["node-1"].peers_added == ("node-2",)
    assert impacts["node-2"].peers_added == ("node-1",)
    assert impacts["node-1"].peer_count == 2 and impacts["node-2"].peer_count == 1
    assert "node-3" not in impacts
    # with every node peered (the default) the same change adds no peer anywhere
    full = build_review(snap(base_mesh(), "main"), snap(opened(base_mesh())))
    assert all(not i.peers_added for i in full.impacts)


def test_the_graph_draws_l4_edges_with_their_ports() -> None:
    before = base_mesh()
    review = build_review(snap(before, "main"), snap(opened(before)))
    assert review.graph is not None
    l4 = [e for e in review.graph.edges if e.layer == "l4"]
    assert [(e.caller, e.callee, e.label, e.status) for e in l4] == [
        ("api", "db", "L4 5432/tcp", "gained")
    ]
    assert "gained: L4 5432/tcp" in render_mermaid(review.graph)
    assert '"api" -> "db" [label="gained: L4 5432/tcp"' in render_dot(review.graph)
    assert "arrowhead=empty" in render_dot(review.graph)


def test_l4_rules_leave_the_rendered_proxy_rbac_exactly_as_it_was() -> None:
    plain = load_text(to_yaml(base_mesh()))
    with_l4 = opened(base_mesh())
    with_l4["policies"].append({"name": "web-db", "from": "web", "to": "db", "allow": [DB_RULE]})
    l4 = load_text(to_yaml(with_l4))
    for kind in ("caddy", "nginx", "envoy"):
        specs = []
        for loaded in (plain, l4):
            mesh = loaded.mesh.model_copy(deep=True)
            proxied = mesh.identities["api"].model_copy(
                update={"proxy": mesh.identities["api"].proxy.model_copy(update={"kind": kind})}
            )
            mesh.identities["api"] = proxied
            specs.append(render(proxy_spec(mesh, loaded.access, "api", tls_dir="/tls")))
        assert specs[0] == specs[1], kind
    assert l4.access.grants == plain.access.grants
