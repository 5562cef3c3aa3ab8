"""Text in mesh.yaml is matched whole, is one line of printable text, and names are safe
to show: a trailing newline, an escape code or markup never reaches a certificate, a
config or a reviewer (issue 14)."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import pytest
from factories import (
    expect_problem,
    identity,
    make_mesh,
    node,
    policy,
    proxy,
    test_case,
    to_yaml,
    web_api_mesh,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from meshops.errors import ValidationFailed
from meshops.model import load_text
from meshops.model.loader import format_path

PathKey = tuple[str | int, ...]


def rich_mesh() -> dict[str, Any]:
    """A mesh using every string field of the model, each once."""
    data = web_api_mesh()
    data["nodes"]["node-1"] = node(
        1, labels={"role": "web"}, dns=["web-1.example.com"], ips=["192.0.2.200"]
    )
    data["identities"]["web"] = identity(
        "node-1",
        proxy=proxy(
            "caddy", 8443, config="/etc/caddy/web.caddy", reload=["systemctl", "reload", "caddy"]
        ),
        outputs={"dir": "/srv/tls/web", "p12": True},
        on_renew=[["touch", "/run/renewed"]],
        dns=["web.example.com"],
        ttl="24h",
        renew_before="8h",
    )
    data["tests"][0]["name"] = "web reads users"
    data["identities"]["db"]["ports"] = ["5432/tcp"]
    data["policies"].append({"name": "api-db-sql", "from": "api", "to": "db",
                             "allow": [{"ports": ["5432/tcp"]}]})  # fmt: skip
    data["tests"].append({"from": "api", "to": "db", "request": "tcp/5432", "expect": "allow"})
    data["wireguard"]["network6"] = "fd42::/64"
    data["wireguard"]["keepalive"] = "25s"
    data["mtls"] = {"mode": "strict", "min_tls": "1.3"}
    data["secrets"] = {"format": "age"}
    return data


def string_leaves(value: Any, prefix: PathKey = ()) -> list[PathKey]:
    """Every path to a string value, and (marked with a trailing None) every map key."""
    found: list[PathKey] = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((*prefix, key, None))  # type: ignore[arg-type]
            found += string_leaves(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += string_leaves(child, (*prefix, i))
    elif isinstance(value, str):
        found.append(prefix)
    return found


@cache
def leaves() -> list[PathKey]:
    return string_leaves(rich_mesh())


def test_the_rich_mesh_is_valid() -> None:
    load_text(to_yaml(rich_mesh()))


def with_text(data: dict[str, Any], path: PathKey, text: str) -> tuple[dict[str, Any], PathKey]:
    """`data` with the string (or the map key, for a path ending in None) at `path`
    replaced by `text`; the path of the changed value."""
    data = copy.deepcopy(data)
    if path[-1] is None:
        parent: Any = data
        for part in path[:-2]:
            parent = parent[part]
        old = path[-2]
        parent[text] = parent.pop(old)
        return data, (*path[:-2], text)
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = text
    return data, path


HOSTILE = ["\n", "\r", "\t", "\x1b[2J", "\x00", "\x7f", "\x85", "\u202e", "\u2028", "\ufeff"]


@settings(max_examples=150, deadline=None)
@given(
    where=st.sampled_from(range(10_000)),
    bad=st.sampled_from(HOSTILE),
    at=st.sampled_from(["start", "end", "middle"]),
)
def test_a_control_or_format_character_in_any_string_is_a_located_error(
    where: int, bad: str, at: str
) -> None:
    path = leaves()[where % len(leaves())]
    data = rich_mesh()
    parent: Any = data
    for part in path[:-2] if path[-1] is None else path[:-1]:
        parent = parent[part]
    old = path[-2] if path[-1] is None else parent[path[-1]]
    half = len(old) // 2
    text = {"start": bad + old, "end": old + bad, "middle": old[:half] + bad + old[half:]}[at]
    changed, new_path = with_text(data, path, text)
    with pytest.raises(ValidationFailed) as caught:
        load_text(to_yaml(changed))
    problems = caught.value.problems
    assert all(p.location is not None for p in problems)
    assert format_path(new_path) in [p.path for p in problems], [str(p) for p in problems]


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ("dns", '"web.example.com\\n"'),
        ("domain", '"mesh.test.internal\\n"'),
        ("trust_domain", '"test.internal\\n"'),
    ],
)
def test_a_trailing_newline_is_refused_not_carried_into_a_certificate(
    section: str, needle: str
) -> None:
    data = make_mesh()
    if section == "dns":
        data["nodes"]["node-1"]["dns"] = ["PLACEHOLDER"]
    else:
        data["mesh"][section] = "PLACEHOLDER"
    text = to_yaml(data).replace("PLACEHOLDER", needle)  # the escape, as people write it
    expect_problem(text, needle, "U+000A")


@pytest.mark.parametrize(
    "name",
    [
        "ok\n```\n<!--",
        "ok<!--",
        "ok`code`",
        "a b",
        "-leading",
        "[link](https://x)",
        "@team",
        "x" * 129,
    ],
)
def test_policy_names_are_restricted_at_validate_with_a_location(name: str) -> None:
    data = make_mesh(identities=1, policies=[policy(name, "id-1", "id-1")])
    text = to_yaml(data)
    with pytest.raises(ValidationFailed) as caught:
        load_text(text)
    assert [p.path for p in caught.value.problems] == ["policies[0].name"]
    assert all(p.location is not None for p in caught.value.problems)


def test_test_names_and_labels_are_restricted_too() -> None:
    data = make_mesh(
        nodes={"node-1": node(1, labels={"role": "<b>web</b>"})},
        identities={"a": identity("node-1")},
        tests=[test_case("a", "a", "GET /", "deny", name="`rm -rf`")],
    )
    with pytest.raises(ValidationFailed) as caught:
        load_text(to_yaml(data))
    assert sorted(p.path for p in caught.value.problems) == [
        "nodes.node-1.labels.role",
        "tests[0].name",
    ]


def test_reasonable_names_still_load() -> None:
    data = make_mesh(
        nodes={"node-1": node(1, labels={"app.kubernetes.io/name": "web", "tier": ""})},
        identities={"a": identity("node-1")},
        policies=[policy("Frontends_read.v2", "a", "a")],
        tests=[test_case("a", "a", "GET /", "allow", name="a reads /: health 2")],
    )
    loaded = load_text(to_yaml(data))
    assert loaded.mesh.policies[0].name == "Frontends_read.v2"


def test_an_unclosed_bracket_names_where_it_started_and_where_it_broke() -> None:
    text = to_yaml(make_mesh(identities=1)).replace("- node-1", "[node-1, node-2", 1)
    start_line, start_col = _find(text, "[node-1")
    with pytest.raises(ValidationFailed) as caught:
        load_text(text)
    (problem,) = caught.value.problems
    message = str(problem)
    assert "YAML syntax error" in message
    assert f"starts at line {start_line}, column {start_col}" in message
    assert problem.location.line > start_line  # where it broke, after the bracket


def _find(text: str, needle: str) -> tuple[int, int]:
    pos = text.index(needle)
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "\n\n"])
def test_an_empty_file_says_what_a_minimal_mesh_yaml_holds(text: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        load_text(text)
    message = str(caught.value.problems[0])
    assert message.startswith("mesh.yaml:1:1: the file is empty")
    for word in ("version: 1", "name", "trust_domain", "domain", "meshops init"):
        assert word in message


def test_init_refuses_a_name_with_a_trailing_newline(tmp_path: Any) -> None:
    from factories import meshops

    result = meshops("init", tmp_path / "m", "--name", "demo\n")
    assert result.returncode == 1
    assert "not a valid mesh name" in result.stderr
    assert not (tmp_path / "m" / "mesh.yaml").exists()
