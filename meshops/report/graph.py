"""The access graph (who may call whom) rendered as Mermaid or Graphviz DOT (pure).

Built from the one access table: one edge per (caller, callee) with HTTP access (L7,
labelled with methods and paths) and one per pair with plain ports (L4, labelled `L4
5432/tcp`; node-granular at the packet filter). Each node is one box holding the
identities that run on it alone; an identity on several nodes is drawn once, outside the
boxes, labelled with its nodes (Mermaid and DOT cannot place one vertex in two
subgraphs, and a box per node set would draw a node once per set). Output is
deterministic: everything is sorted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from meshops.policy import AccessTable
from meshops.report.escape import dot_string, mermaid_label

EdgeStatus = Literal["same", "gained", "lost", "changed"]
Layer = Literal["l7", "l4"]
MAX_LABEL = 60
_GROUP_LABEL_NODES = 4

_STYLE_MERMAID: dict[EdgeStatus, str] = {
    "gained": "stroke:#2da44e,stroke-width:3px",
    "lost": "stroke:#cf222e,stroke-width:2px,stroke-dasharray:5 5",
    "changed": "stroke:#bf8700,stroke-width:2px",
}
_ARROW_MERMAID: dict[EdgeStatus, str] = {
    "same": "-->",
    "gained": "==>",
    "lost": "-.->",
    "changed": "-->",
}
_STYLE_DOT: dict[EdgeStatus, str] = {
    "same": "",
    "gained": ', color="#2da44e", penwidth=2',
    "lost": ', color="#cf222e", style=dashed',
    "changed": ', color="#bf8700"',
}


@dataclass(frozen=True)
class Edge:
    caller: str
    callee: str
    label: str
    status: EdgeStatus = "same"
    layer: Layer = "l7"


@dataclass(frozen=True)
class Group:
    """Identities that run on exactly these nodes: one node (a box), or several (one
    identity, drawn outside the boxes)."""

    nodes: tuple[str, ...]
    identities: tuple[str, ...]

    @property
    def label(self) -> str:
        shown = ", ".join(self.nodes[:_GROUP_LABEL_NODES])
        extra = len(self.nodes) - _GROUP_LABEL_NODES
        return f"{shown} +{extra} more" if extra > 0 else shown


@dataclass(frozen=True)
class Graph:
    groups: tuple[Group, ...]  # one per node
    edges: tuple[Edge, ...]
    spread: tuple[Group, ...] = ()  # one per identity that runs on several nodes

    def count(self, status: EdgeStatus) -> int:
        return sum(1 for edge in self.edges if edge.status == status)


def pair_label(table: AccessTable, caller: str, callee: str) -> str:
    """What `caller` may do on `callee`, in a line: `GET,HEAD /v1/*; POST /v1/jobs`."""
    parts = []
    for rule in table.rules_for(callee):
        if rule.caller != caller:
            continue
        methods = "any method" if rule.methods == ("*",) else ",".join(rule.methods)
        paths = "any path" if rule.paths == ("*",) else ", ".join(rule.paths)
        parts.append(
            "any request"
            if (methods, paths) == ("any method", "any path")
            else f"{methods} {paths}"
        )
    label = "; ".join(parts)
    if len(label) > MAX_LABEL:
        label = label[: MAX_LABEL - 1].rstrip() + "…"
    return label


def ports_label(table: AccessTable, caller: str, callee: str) -> str:
    """The ports `caller` may reach on `callee`: `L4 5432/tcp, 53/udp`."""
    label = "L4 " + ", ".join(str(p) for p in table.ports_of(caller, callee))
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1].rstrip() + "…"


def _graph(placements: Mapping[str, Sequence[str]], edges: Sequence[Edge]) -> Graph:
    by_node: dict[str, list[str]] = defaultdict(list)
    spread = []
    for identity, nodes in sorted(placements.items()):
        placed = tuple(sorted(set(nodes)))
        if len(placed) == 1:
            by_node[placed[0]].append(identity)
        else:
            spread.append(Group(placed, (identity,)))
    groups = tuple(Group((node,), tuple(ids)) for node, ids in sorted(by_node.items()))
    return Graph(groups, tuple(edges), tuple(spread))


def access_graph(placements: Mapping[str, Sequence[str]], table: AccessTable) -> Graph:
    """The graph of one mesh: identity -> nodes placements and its access table."""
    edges = [
        Edge(caller, callee, pair_label(table, caller, callee))
        for caller, callee in sorted(table.edges())
    ]
    edges += [
        Edge(caller, callee, ports_label(table, caller, callee), layer="l4")
        for caller, callee in sorted(table.port_edges())
    ]
    return _graph(placements, edges)


def change_graph(
    base_placements: Mapping[str, Sequence[str]],
    base: AccessTable,
    head_placements: Mapping[str, Sequence[str]],
    head: AccessTable,
) -> Graph:
    """The union of two graphs, each edge marked gained, lost, changed or the same."""
    placements = {**base_placements, **head_placements}
    base_pairs, head_pairs = base.edges(), head.edges()
    base_keys = _keys_by_pair(base)
    head_keys = _keys_by_pair(head)
    edges = []
    for caller, callee in sorted(base_pairs | head_pairs):
        pair = (caller, callee)
        if pair not in base_pairs:
            edges.append(Edge(caller, callee, pair_label(head, caller, callee), "gained"))
        elif pair not in head_pairs:
            edges.append(Edge(caller, callee, pair_label(base, caller, callee), "lost"))
        else:
            status: EdgeStatus = "same" if base_keys[pair] == head_keys[pair] else "changed"
            edges.append(Edge(caller, callee, pair_label(head, caller, callee), status))
    base_l4, head_l4 = base.port_edges(), head.port_edges()
    for caller, callee in sorted(base_l4 | head_l4):
        old, new = base.ports_of(caller, callee), head.ports_of(caller, callee)
        status = "gained" if not old else "lost" if not new else "same" if old == new else "changed"
        label = ports_label(base if status == "lost" else head, caller, callee)
        edges.append(Edge(caller, callee, label, status, "l4"))
    return _graph(placements, edges)


def _keys_by_pair(table: AccessTable) -> dict[tuple[str, str], set[tuple[str, str]]]:
    index: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for grant in table.grants:
        index[(grant.caller, grant.callee)].add((grant.method, grant.path))
    return index


def _mermaid_id(identity: str) -> str:
    # names are [a-z0-9-]; the prefix keeps ids clear of Mermaid keywords (`end`), and
    # anything else (an old revision in review) becomes its code point
    return "id_" + "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):x}_" for c in identity)


def render_mermaid(graph: Graph, *, direction: str = "LR") -> str:
    """A Mermaid `flowchart`; gained edges thick green, lost dashed red, changed amber."""
    lines = [f"flowchart {direction}"]
    for index, group in enumerate(graph.groups):
        lines.append(f'  subgraph g{index}["{mermaid_label(group.label)}"]')
        for identity in group.identities:
            lines.append(f'    {_mermaid_id(identity)}["{mermaid_label(identity)}"]')
        lines.append("  end")
    for group in graph.spread:
        (identity,) = group.identities
        # the HTML is meshops' own; the names in it are escaped
        label = f"{mermaid_label(identity)}<br/><small>on {mermaid_label(group.label)}</small>"
        lines.append(f'  {_mermaid_id(identity)}["{label}"]')
    styles: dict[EdgeStatus, list[str]] = defaultdict(list)
    for index, edge in enumerate(graph.edges):
        label = edge.label
        if edge.status in ("gained", "lost"):
            label = f"{edge.status}: {label}"
        arrow = _ARROW_MERMAID[edge.status]
        lines.append(
            f'  {_mermaid_id(edge.caller)} {arrow}|"{mermaid_label(label)}"| '
            f"{_mermaid_id(edge.callee)}"
        )
        if edge.status in _STYLE_MERMAID:
            styles[edge.status].append(str(index))
    marked: tuple[EdgeStatus, ...] = ("gained", "lost", "changed")
    for status in marked:
        if styles[status]:
            lines.append(f"  linkStyle {','.join(styles[status])} {_STYLE_MERMAID[status]}")
    return "\n".join(lines) + "\n"


def render_dot(graph: Graph) -> str:
    """Graphviz DOT: one cluster per node set, labelled edges."""
    lines = ["digraph access {", "  rankdir=LR;", '  node [shape=box, fontname="sans-serif"];']
    for index, group in enumerate(graph.groups):
        lines.append(f'  subgraph "cluster_{index}" {{')
        lines.append(f'    label="{dot_string(group.label)}";')
        for identity in group.identities:
            lines.append(f'    "{dot_string(identity)}";')
        lines.append("  }")
    for group in graph.spread:
        (identity,) = group.identities
        lines.append(
            f'  "{dot_string(identity)}" '
            f'[label="{dot_string(identity)}\\non {dot_string(group.label)}"];'
        )
    for edge in graph.edges:
        label = edge.label if edge.status in ("same", "changed") else f"{edge.status}: {edge.label}"
        caller, callee = dot_string(edge.caller), dot_string(edge.callee)
        lines.append(
            f'  "{caller}" -> "{callee}" [label="{dot_string(label)}"'
            f"{_STYLE_DOT[edge.status]}{', arrowhead=empty' if edge.layer == 'l4' else ''}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"
