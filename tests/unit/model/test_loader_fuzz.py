"""Random edits of a valid mesh never crash the loader: only located MeshErrors come out."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from factories import to_yaml, web_api_mesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshops.errors import MeshError, ValidationFailed
from meshops.model import load_text

Path = tuple[str | int, ...]


@cache
def base_data() -> dict[str, Any]:
    data = web_api_mesh()
    data["nodes"]["node-1"]["address"] = "10.42.0.11"
    data["nodes"]["node-1"]["labels"] = {"role": "web"}
    data["wireguard"]["network6"] = "fd42::/64"
    return data


@cache
def base_text() -> str:
    return to_yaml(base_data())


def all_paths(value: Any, prefix: Path = ()) -> list[Path]:
    paths: list[Path] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            paths += all_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            paths += all_paths(child, (*prefix, i))
    return paths


def parent_and_key(data: Any, path: Path) -> tuple[Any, str | int]:
    for part in path[:-1]:
        data = data[part]
    return data, path[-1]


def must_not_crash(text: str | bytes) -> None:
    try:
        load_text(text)
    except ValidationFailed as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.location is not None, str(problem)
            assert str(problem).startswith("mesh.yaml:")
    except MeshError as exc:
        assert str(exc)


scalars = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(st.data())
def test_deleting_any_key_never_crashes(data: st.DataObject) -> None:
    mesh = copy.deepcopy(base_data())
    path = data.draw(st.sampled_from(all_paths(mesh)))
    parent, key = parent_and_key(mesh, path)
    del parent[key]
    must_not_crash(to_yaml(mesh))


@fuzz
@given(st.data(), scalars)
def test_replacing_any_value_never_crashes(data: st.DataObject, value: Any) -> None:
    mesh = copy.deepcopy(base_data())
    path = data.draw(st.sampled_from(all_paths(mesh)))
    parent, key = parent_and_key(mesh, path)
    parent[key] = value
    must_not_crash(to_yaml(mesh))


@fuzz
@given(st.data(), st.integers(min_value=1, max_value=300))
def test_nesting_any_value_deeply_never_crashes(data: st.DataObject, depth: int) -> None:
    mesh = copy.deepcopy(base_data())
    path = data.draw(st.sampled_from(all_paths(mesh)))
    parent, key = parent_and_key(mesh, path)
    value = parent[key]
    as_list = data.draw(st.booleans())
    for _ in range(depth):
        value = [value] if as_list else {"k": value}
    parent[key] = value
    must_not_crash(to_yaml(mesh))


@fuzz
@given(st.data())
def test_duplicating_any_line_never_crashes(data: st.DataObject) -> None:
    lines = base_text().splitlines(keepends=True)
    i = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
    must_not_crash("".join([*lines[: i + 1], lines[i], *lines[i + 1 :]]))


@fuzz
@given(st.data(), st.binary(min_size=1, max_size=20))
def test_inserting_random_bytes_never_crashes(data: st.DataObject, junk: bytes) -> None:
    raw = base_text().encode()
    at = data.draw(st.integers(min_value=0, max_value=len(raw)))
    must_not_crash(raw[:at] + junk + raw[at:])


@fuzz
@given(st.data(), st.text(min_size=1, max_size=20))
def test_inserting_random_text_never_crashes(data: st.DataObject, junk: str) -> None:
    text = base_text()
    at = data.draw(st.integers(min_value=0, max_value=len(text)))
    must_not_crash(text[:at] + junk + text[at:])


@fuzz
@given(st.data())
def test_truncating_the_text_anywhere_never_crashes(data: st.DataObject) -> None:
    text = base_text()
    must_not_crash(text[: data.draw(st.integers(min_value=0, max_value=len(text)))])


@fuzz
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(text: str) -> None:
    must_not_crash(text)


def test_the_unedited_base_mesh_is_valid() -> None:
    load_text(base_text())
