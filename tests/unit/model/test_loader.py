"""The located loader: YAML marks kept, duplicate keys refused, every error as file:line:col."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from factories import expect_problem, make_mesh, mesh_yaml, ssh_recipient, to_yaml

from meshops.errors import MeshError, ValidationFailed
from meshops.model import load_file, load_text
from meshops.model.loader import MAX_BYTES, parse_yaml


def problems_of(text: str | bytes) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        load_text(text)
    return [str(p) for p in caught.value.problems]


HANDWRITTEN = """\
version: 1
mesh:
  name: demo
  trust_domain: demo.internal
  domain: mesh.demo.internal
nodes:
  web-1:
    endpoint: 192.0.2.11:51820
    recipient: {recipient}
    labels: {{role: web}}
"""


def handwritten(**replace: str) -> str:
    text = HANDWRITTEN.format(recipient=ssh_recipient(1))
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def test_handwritten_mesh_loads_and_keeps_positions() -> None:
    loaded = load_text(handwritten())
    marks = loaded.document.marks
    assert (
        marks[("nodes", "web-1", "endpoint")].line,
        marks[("nodes", "web-1", "endpoint")].column,
    ) == (8, 5)
    assert marks[("nodes", "web-1", "labels", "role")].column == 14
    assert loaded.mesh.nodes["web-1"].labels == {"role": "web"}


def test_bad_endpoint_is_reported_at_exact_line_and_column() -> None:
    lines = problems_of(handwritten(**{"192.0.2.11:51820": "192.0.2.11"}))
    assert lines == [
        "mesh.yaml:8:5: nodes.web-1.endpoint: expected host:port such as 192.0.2.11:51820, "
        "got '192.0.2.11'"
    ]


def test_unknown_field_in_flow_mapping_points_at_the_key() -> None:
    lines = problems_of(handwritten(**{"{role: web}": "{role: web, zone: a}", "labels": "label"}))
    assert lines == [
        "mesh.yaml:10:5: nodes.web-1.label: unknown field 'label'; did you mean 'labels'?"
    ]


def test_unknown_top_level_field_lists_the_allowed_ones() -> None:
    lines = problems_of(handwritten() + "frobnicate: 1\n")
    assert lines[0].startswith("mesh.yaml:11:1: frobnicate: unknown field 'frobnicate' (allowed:")
    assert "identities" in lines[0]


def test_missing_required_field_points_at_its_parent() -> None:
    lines = problems_of(handwritten(**{"  trust_domain: demo.internal\n": ""}))
    assert lines == ["mesh.yaml:2:1: mesh.trust_domain: missing required field 'trust_domain'"]


def test_a_sealed_node_without_recipient_is_refused_at_the_node() -> None:
    lines = problems_of(handwritten(**{f"    recipient: {ssh_recipient(1)}\n": ""}))
    assert lines == [
        "mesh.yaml:7:3: nodes.web-1: node 'web-1' holds sealed keys (keys: sealed, the "
        "default of ca.node_keys) and needs a `recipient:` to seal them to (`meshops host "
        "init` prints one); or set `keys: host` to enrol keys born on the node (docs/keys.md)"
    ]


def test_a_host_held_node_needs_no_recipient() -> None:
    text = handwritten(**{f"    recipient: {ssh_recipient(1)}\n": "    keys: host\n"})
    loaded = load_text(text)
    assert loaded.mesh.host_held("web-1") and loaded.mesh.nodes["web-1"].recipient is None


def test_a_wireguard_node_without_endpoint_is_refused_at_the_node() -> None:
    lines = problems_of(handwritten(**{"    endpoint: 192.0.2.11:51820\n": ""}))
    assert lines == [
        "mesh.yaml:7:3: nodes.web-1: node 'web-1' runs WireGuard and needs an endpoint "
        "(host:port where peers reach it); or set `wireguard: false` for certificates only"
    ]


def test_duplicate_key_is_refused_at_the_second_occurrence_naming_the_first() -> None:
    text = handwritten() + "nodes: {}\n"
    lines = problems_of(text)
    assert lines == [
        "mesh.yaml:11:1: nodes: duplicate key 'nodes' (first defined at line 6); "
        "YAML would silently keep only the last one"
    ]


def test_duplicate_node_name_is_refused_never_merged() -> None:
    data = make_mesh(nodes=1)
    text = to_yaml(data)
    block = text[text.index("  node-1:") : text.index("identities:")]
    text = text.replace(block, block + block.replace("192.0.2.1:", "192.0.2.9:"))
    expect_problem(text, "node-1:", "nodes.node-1", "duplicate key 'node-1'", occurrence=2)


def test_duplicate_key_in_flow_mapping_is_refused() -> None:
    lines = problems_of(handwritten(**{"{role: web}": "{role: web, role: db}"}))
    assert lines[0].startswith("mesh.yaml:10:25: nodes.web-1.labels.role: duplicate key 'role'")


def test_yaml_syntax_error_has_line_and_column() -> None:
    lines = problems_of(handwritten(**{"  name: demo": "  name: [demo"}))
    assert lines[0].startswith("mesh.yaml:4:")
    assert "YAML syntax error" in lines[0]


def test_tab_indentation_is_a_located_syntax_error() -> None:
    lines = problems_of("version: 1\nmesh:\n\tname: x\n")
    assert lines[0].startswith("mesh.yaml:3:1: YAML syntax error")


def test_empty_file_is_refused_at_line_one() -> None:
    assert problems_of("")[0].startswith("mesh.yaml:1:1: the file is empty")
    assert problems_of("# only a comment\n")[0].startswith("mesh.yaml:1:1: the file is empty")


@pytest.mark.parametrize("text", ["hello", "[1, 2]", "42"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    assert problems_of(text) == ["mesh.yaml:1:1: the top level must be a mapping"]


def test_file_name_given_is_the_one_in_messages() -> None:
    with pytest.raises(ValidationFailed) as caught:
        load_text("version: 2\n", "repo/mesh.yaml")
    assert str(caught.value).startswith("repo/mesh.yaml:1:1: version:")


def test_merge_keys_are_expanded_and_explicit_keys_win() -> None:
    text = to_yaml(make_mesh(nodes=1))
    text = text.replace("wireguard:\n", "wireguard: &wg\n").replace(
        "nodes:\n", "x-unused: 1\nnodes:\n", 1
    )
    with pytest.raises(ValidationFailed) as caught:
        load_text(text)
    assert "x-unused" in str(caught.value)
    merged = text.replace("x-unused: 1\n", "").replace(
        "wireguard: &wg\n", "base: &wg\n  port: 1000\nwireguard:\n  <<: *wg\n"
    )
    doc = parse_yaml(merged, "mesh.yaml")
    assert doc.data["wireguard"]["port"] == 51820  # the explicit key wins over the merge


def test_merge_of_a_scalar_is_refused_with_location() -> None:
    lines = problems_of("a:\n  <<: 1\n")
    assert lines == ["mesh.yaml:2:7: '<<' merges only mappings"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: !!python/object:os.system x\n", "mesh.yaml:1:4: unsupported YAML tag"),
        ("a: !foo bar\n", "mesh.yaml:1:4: unsupported YAML tag !foo"),
        ("a: !foo [1]\n", "mesh.yaml:1:4: unsupported YAML tag !foo"),
        ("a: !!int abc\n", "mesh.yaml:1:4: 'abc' is not a valid int"),
        ("? [a]\n: b\n", "mesh.yaml:1:3: unsupported key"),
        ("true: 1\n", "mesh.yaml:1:1: unsupported key True"),
        ("~: 1\n", "mesh.yaml:1:1: unsupported key None"),
    ],
)
def test_unsafe_or_odd_yaml_is_refused_with_location(text: str, expected: str) -> None:
    lines = problems_of(text)
    assert lines[0].startswith(expected)


def test_timestamps_stay_strings() -> None:
    doc = parse_yaml("a: 2024-01-01\n", "m.yaml")
    assert doc.data == {"a": "2024-01-01"}


# -- hostile input ---------------------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels):
        lines.append(f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly_with_location() -> None:
    start = time.perf_counter()
    lines = problems_of(billion_laughs())
    assert time.perf_counter() - start < 1.0
    assert lines[0].startswith("mesh.yaml:")
    assert "expands to more than" in lines[0]


def test_small_aliases_are_fine() -> None:
    doc = parse_yaml("a: &x [1, 2]\nb: *x\n", "m.yaml")
    assert doc.data == {"a": [1, 2], "b": [1, 2]}


def test_recursive_alias_is_refused() -> None:
    assert problems_of("a: &a [*a]\n") == [
        "mesh.yaml:1:4: an alias refers to a node that contains it"
    ]


def test_ten_thousand_open_brackets_end_in_a_clean_error() -> None:
    start = time.perf_counter()
    lines = problems_of("[" * 10_000)
    assert time.perf_counter() - start < 5
    assert lines[0].startswith("mesh.yaml:")


def test_ten_thousand_nested_lists_are_refused_as_too_deep() -> None:
    lines = problems_of("[" * 10_000 + "]" * 10_000)
    assert lines[0].startswith("mesh.yaml:1:")
    assert "nesting deeper than" in lines[0]


def test_deeply_nested_block_mappings_are_refused() -> None:
    text = "".join(" " * i + f"k{i}:\n" for i in range(200)) + " " * 200 + "v\n"
    lines = problems_of(text)
    assert "nesting deeper than" in lines[0]


def test_non_utf8_bytes_are_located() -> None:
    text = mesh_yaml(nodes=1).encode().replace(b"name: test", b"name: t\xffst")
    lines = problems_of(text)
    assert lines == ["mesh.yaml:3:10: not valid UTF-8 (byte 0xff)"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: x\x1fy\n", "mesh.yaml:2:5: control character U+001F is not allowed in YAML"),
        ("\x00", "mesh.yaml:1:1: control character U+0000 is not allowed in YAML"),
        ("a: 1\nb: \ud800\n", "mesh.yaml:2:4: not valid Unicode (a lone surrogate)"),
    ],
)
def test_control_characters_and_surrogates_are_located(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]


def test_a_twenty_megabyte_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "mesh.yaml"
    big.write_bytes(b"# padding\n" * (2 * 1024 * 1024))
    assert big.stat().st_size > MAX_BYTES
    start = time.perf_counter()
    with pytest.raises(MeshError, match="larger than the limit"):
        load_file(big, "mesh.yaml")
    assert time.perf_counter() - start < 1.0
    with pytest.raises(MeshError, match="larger than the limit"):
        load_text(big.read_bytes())


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(MeshError) as caught:
        load_file(tmp_path / "mesh.yaml", "mesh.yaml")
    assert "mesh.yaml: no such file" in str(caught.value)
    assert "meshops init" in str(caught.value)


def test_directory_instead_of_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MeshError, match="is a directory"):
        load_file(tmp_path, "here")


def test_bytes_and_text_load_the_same() -> None:
    text = mesh_yaml(nodes=2)
    assert load_text(text).mesh == load_text(text.encode()).mesh
