"""Validate a mesh.yaml that differs from a validated one inside a few node entries.

`watch` validates mesh.yaml again after every change, most often a commit that edits
one node (its endpoint, a label). Parsing a 1,000-node mesh.yaml with positions and
validating all of it is most of such a run, so `revalidate` does only what the edit
needs when it can prove the outcome is the same:

- the old and new texts have the same number of lines, hold no anchor (so no alias
  and no value written in one place and used in another), and every changed line lies
  inside the entry of a node that both have (from its key line up to the next key);
- each changed entry, parsed on its own, is that one node, and validates as a `Node`;
- `Mesh` and `Node` have no model validators (checked, not assumed): they validate
  field by field, so an entry that did not change validates to the same node again.

The new `Mesh` is the old one with those nodes replaced; the positions are the old
ones with those entries' replaced; the semantic checks run on the whole mesh, as
always. Whenever a condition fails (a new node, a policy edited, a line added), or
the new entry or mesh has a problem, the answer is None: the caller validates from
scratch, which also gives the located errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshops.errors import MeshError
from meshops.model.loader import MAX_VALUES, Document, parse_yaml

if TYPE_CHECKING:
    from meshops.model import Loaded


def revalidate(previous: Loaded, old: bytes, new: bytes, name: str) -> Loaded | None:
    """`new` validated as `from_document` would (no policy tests), or None."""
    from pydantic import ValidationError

    from meshops.model import Loaded
    from meshops.model.checks import semantic_problems
    from meshops.model.mesh import Mesh, Node

    if not _field_by_field(Mesh, Node) or b"&" in old or b"&" in new:
        return None
    try:
        old_lines, new_lines = old.decode().split("\n"), new.decode().split("\n")
    except UnicodeDecodeError:
        return None
    doc = previous.document
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=False)) if a != b]
    if len(old_lines) != len(new_lines) or not changed or not isinstance(doc.data, dict):
        return None
    entries = _node_entries(doc, len(old_lines))
    edited: dict[str, tuple[int, int]] = {}
    for index in changed:
        found = next(((n, r) for n, r in entries.items() if r[0] <= index < r[1]), None)
        if found is None:
            return None
        edited[found[0]] = found[1]
    data = dict(doc.data)
    data["nodes"] = dict(data["nodes"])
    spots = {k: v for k, v in doc.spots.items() if k[:2] not in {("nodes", n) for n in edited}}
    nodes = dict(previous.mesh.nodes)
    for node, (start, end) in edited.items():
        part = _parse_entry(new_lines[start:end], name, node)
        if part is None or len(spots) + len(part.spots) > MAX_VALUES:
            return None
        data["nodes"][node] = part.data[node]
        for path, (line, column) in part.spots.items():
            if path:
                spots[("nodes", *path)] = (line + start, column)
        try:
            nodes[node] = Node.model_validate(part.data[node])
        except ValidationError:
            return None
    fields = {f: getattr(previous.mesh, f) for f in Mesh.model_fields}
    fields["nodes"] = nodes
    mesh = Mesh.model_construct(previous.mesh.model_fields_set, **fields)
    updated = Document(name, data, spots)
    if semantic_problems(mesh, updated):
        return None
    return Loaded(mesh, updated)


def _field_by_field(*models: Any) -> bool:
    return all(not m.__pydantic_decorators__.model_validators for m in models)


def _node_entries(doc: Document, lines: int) -> dict[str, tuple[int, int]]:
    """Each node's entry as 0-based [first line, end): its key line up to the next
    node's key, or to the next top-level key after `nodes`."""
    assert isinstance(doc.data, dict)
    nodes = doc.data.get("nodes")
    if not isinstance(nodes, dict) or ("nodes",) not in doc.spots:
        return {}
    after_nodes = doc.spots[("nodes",)][0]
    tops = sorted(s[0] for k, s in doc.spots.items() if len(k) == 1 and s[0] > after_nodes)
    stop = (tops[0] - 1) if tops else lines
    keys = sorted((doc.spots[("nodes", n)][0] - 1, n) for n in nodes if ("nodes", n) in doc.spots)
    if len({line for line, _ in keys}) != len(keys):
        return {}  # two nodes on one line (flow style): no entry is a line range
    ends = [line for line, _ in keys[1:]] + [stop]
    return {n: (line, end) for (line, n), end in zip(keys, ends, strict=True)}


def _parse_entry(lines: list[str], name: str, node: str) -> Document | None:
    """One node entry, parsed alone: that node and nothing else, or None."""
    if any(line.startswith(("---", "...", "%")) for line in lines):
        return None
    try:
        part = parse_yaml("\n".join(lines) + "\n", name)
    except MeshError:
        return None
    if not isinstance(part.data, dict) or list(part.data) != [node]:
        return None
    return part
