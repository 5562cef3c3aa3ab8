from __future__ import annotations

import copy
import re

from factories import identity, make_mesh, policy, web_api_mesh
from gitops_helpers import mesh_of
from hypothesis import given, settings
from hypothesis import strategies as st

from meshops.model.checks import access_table
from meshops.report.graph import access_graph, change_graph, render_dot, render_mermaid


def _graph_of(data: dict):  # type: ignore[no-untyped-def]
    mesh = mesh_of(data)
    placements = {n: i.nodes for n, i in mesh.identities.items()}
    return access_graph(placements, access_table(mesh))


def test_mermaid_groups_identities_by_their_nodes_and_labels_edges() -> None:
    text = render_mermaid(_graph_of(web_api_mesh()))
    assert text.startswith("flowchart LR\n")
    assert '  subgraph g0["node-1"]\n    id_admin["admin"]\n    id_web["web"]\n  end' in text
    assert '  id_web -->|"GET /v1/*"| id_api' in text
    assert '  id_admin -->|"DELETE,GET,POST /v1/*"| id_api' in text
    assert '  id_api -->|"any method /query"| id_db' in text


def test_dot_has_one_cluster_per_node_set_and_labelled_edges() -> None:
    text = render_dot(_graph_of(web_api_mesh()))
    assert text.startswith("digraph access {")
    assert 'subgraph "cluster_0" {\n    label="node-1";' in text
    assert '"web" -> "api" [label="GET /v1/*"];' in text


def test_identity_on_several_nodes_appears_once_outside_the_node_boxes() -> None:
    data = make_mesh(nodes=3, identities={"api": identity(["node-2", "node-1"])})
    graph = _graph_of(data)
    assert graph.groups == ()
    assert [(g.nodes, g.identities) for g in graph.spread] == [(("node-1", "node-2"), ("api",))]
    assert '  id_api["api<br/><small>on node-1, node-2</small>"]' in render_mermaid(graph)
    assert '  "api" [label="api\\non node-1, node-2"];' in render_dot(graph)


def test_identities_sharing_a_node_draw_that_node_once() -> None:
    data = make_mesh(
        nodes=2,
        identities={
            "api": identity(["node-1", "node-2"]),
            "web": identity("node-1"),
            "db": identity("node-2"),
            "cache": identity(["node-1", "node-2"]),
        },
        policies=[policy("p", "web", ["api", "cache"])],
    )
    mermaid = render_mermaid(_graph_of(data))
    # one box per node, never a box per node set ("node-1, node-2" beside "node-1")
    assert re.findall(r'subgraph g\d+\["([^"]+)"\]', mermaid) == ["node-1", "node-2"]
    for name in ("api", "web", "db", "cache"):  # each identity is drawn once
        assert len(re.findall(rf"^ +id_{name}\[", mermaid, re.MULTILINE)) == 1
    dot = render_dot(_graph_of(data))
    assert dot.count('label="node-1";') == 1 and dot.count('label="node-2";') == 1


def test_change_graph_marks_gained_lost_and_changed_edges() -> None:
    before = web_api_mesh()
    after = copy.deepcopy(before)
    after["policies"] = [
        policy(
            "frontends-read-api",
            ["group:frontends"],
            "api",
            methods=["GET", "HEAD"],
            paths=["/v1/*"],
        ),
        policy("web-db", "web", "db", methods=["GET"], paths=["/health"]),
    ]
    old, new = mesh_of(before), mesh_of(after)
    graph = change_graph(
        {n: i.nodes for n, i in old.identities.items()},
        access_table(old),
        {n: i.nodes for n, i in new.identities.items()},
        access_table(new),
    )
    status = {(e.caller, e.callee): e.status for e in graph.edges}
    assert status == {
        ("admin", "api"): "changed",
        ("api", "db"): "lost",
        ("web", "api"): "changed",
        ("web", "db"): "gained",
    }
    text = render_mermaid(graph)
    assert 'id_api -.->|"lost: any method /query"| id_db' in text
    assert 'id_web ==>|"gained: GET /health"| id_db' in text
    assert "linkStyle 3 stroke:#2da44e" in text
    assert "linkStyle 1 stroke:#cf222e" in text


@settings(max_examples=30, deadline=None)
@given(st.permutations(["a-1", "b", "end", "c-2-x"]), st.integers(min_value=1, max_value=4))
def test_graph_output_is_deterministic_whatever_the_input_order(
    names: list[str], nodes: int
) -> None:
    idents = {name: identity([f"node-{1 + k % nodes}"]) for k, name in enumerate(sorted(names))}
    data = make_mesh(
        nodes=nodes,
        identities={n: idents[n] for n in names},
        policies=[policy("all", "*", "*", methods=["GET"])],
    )
    shuffled = make_mesh(
        nodes=nodes,
        identities=dict(sorted(idents.items())),
        policies=[policy("all", "*", "*", methods=["GET"])],
    )
    assert render_mermaid(_graph_of(data)) == render_mermaid(_graph_of(shuffled))
    assert "id_end" in render_mermaid(_graph_of(data))  # `end` is a Mermaid keyword
