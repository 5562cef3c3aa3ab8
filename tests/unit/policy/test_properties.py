"""Property tests: matching agrees with a simple reference model; diffs are consistent."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshops.policy import (
    AccessTable,
    Grant,
    access_diff,
    compile_policies,
    method_matches,
    path_matches,
)

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
segment = st.text(alphabet="abc/", max_size=6)
paths = st.builds(lambda s: "/" + s, segment)
patterns = st.one_of(
    st.just("*"),
    st.just("/*"),
    paths,  # exact
    st.builds(lambda p: p + "*", paths),  # prefix
)


def reference_path_match(pattern: str, path: str) -> bool:
    """The documented meaning, written the slow obvious way."""
    if pattern in ("*", "/*"):
        return True
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        return any(path[:i] == prefix for i in range(len(path) + 1))
    return pattern == path


@given(patterns, paths)
def test_path_matches_agrees_with_the_reference(pattern: str, path: str) -> None:
    assert path_matches(pattern, path) == reference_path_match(pattern, path)


@given(paths)
def test_a_path_matches_itself_and_its_own_prefix_pattern(path: str) -> None:
    assert path_matches(path, path)
    assert path_matches(path + "*", path)
    assert path_matches(path + "*", path + "/more")


@given(st.sampled_from([*METHODS, "*"]), st.sampled_from(METHODS), st.booleans())
def test_method_matches_agrees_with_the_reference(pattern: str, method: str, lower: bool) -> None:
    asked = method.lower() if lower else method
    assert method_matches(pattern, asked) == (pattern == "*" or pattern == method)


names = st.sampled_from(["a", "b", "c", "d"])
grants = st.builds(Grant, names, names, st.sampled_from([*METHODS, "*"]), patterns, names)
tables = st.lists(grants, max_size=12).map(lambda gs: AccessTable(tuple(sorted(set(gs)))))


@settings(max_examples=60)
@given(tables, tables)
def test_applying_the_diff_to_the_old_keys_gives_the_new_keys(
    before: AccessTable, after: AccessTable
) -> None:
    diff = access_diff(before, after)
    gained = {g.key for g in diff.gained}
    lost = {g.key for g in diff.lost}
    assert (before.keys() - lost) | gained == after.keys()
    assert not gained & lost
    assert gained.isdisjoint(before.keys()) and lost <= before.keys()
    assert diff.empty == (before.keys() == after.keys())


@settings(max_examples=60)
@given(tables, tables)
def test_the_reverse_diff_swaps_gained_and_lost(before: AccessTable, after: AccessTable) -> None:
    forward, backward = access_diff(before, after), access_diff(after, before)
    assert {g.key for g in forward.gained} == {g.key for g in backward.lost}
    assert {g.key for g in forward.lost} == {g.key for g in backward.gained}


class _Rule:
    def __init__(self, methods: list[str], paths: list[str]):
        self.methods = methods
        self.paths = paths


class _Policy:
    def __init__(self, name: str, frm: list[str], to: list[str], allow: list[_Rule]):
        self.name, self.from_, self.to, self.allow = name, frm, to, allow


rules = st.builds(
    _Rule,
    st.lists(st.sampled_from([*METHODS, "*"]), min_size=1, max_size=3),
    st.lists(patterns, min_size=1, max_size=3),
)
policies = st.lists(
    st.builds(
        _Policy,
        names,
        st.lists(st.sampled_from(["a", "b", "c", "group:g", "*"]), min_size=1, max_size=2),
        st.lists(st.sampled_from(["a", "b", "c", "group:g", "*"]), min_size=1, max_size=2),
        st.lists(rules, min_size=1, max_size=2),
    ),
    max_size=4,
)


def _expand(ref: str) -> set[str]:
    return {"a", "b", "c"} if ref == "*" else ({"a", "b"} if ref == "group:g" else {ref})


@settings(max_examples=60)
@given(policies, names, names, st.sampled_from(METHODS), paths)
def test_decide_agrees_with_reading_the_policies_directly(
    pols: list[_Policy], caller: str, callee: str, method: str, path: str
) -> None:
    table = compile_policies(pols, ["a", "b", "c"], {"g": ["a", "b"]})
    expected = any(
        caller in set().union(*map(_expand, p.from_))
        and callee in set().union(*map(_expand, p.to))
        and any(m in ("*", method) for m in r.methods)
        and any(reference_path_match(pat, path) for pat in r.paths)
        for p in pols
        for r in p.allow
    )
    assert table.allows(caller, callee, method, path) == expected
