"""Hostile or careless `policies:` through the whole loader: every outcome is a valid
access table that means what the policies say, or a located error, in bounded time
and memory; a policy whose table would explode is refused before it is built."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

from factories import identity, make_mesh, policy, to_yaml, where
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshops.errors import MeshError, ValidationFailed
from meshops.model import load_text
from meshops.policy import MAX_GRANTS, compile_policies, grant_count

IDENTITIES = ["a", "b", "c"]
GROUPS = {"g": ["a", "b"], "h": ["c"]}

# references a user could write, right or wrong
refs = st.one_of(
    st.sampled_from(["a", "b", "c", "*", "group:g", "group:h", "group:nope", "g", "zz", ""]),
    st.text(max_size=8),
    st.integers(),
    st.none(),
)
methods = st.one_of(
    st.sampled_from(["GET", "get", "Post", "*", "DELETE", "FETCH", ""]),
    st.text(max_size=6),
    st.integers(),
)
paths = st.one_of(
    st.sampled_from(["*", "/*", "/v1/*", "/healthz", "v1", "/a*b", "/x y", "/", ""]),
    st.text(max_size=10),
    st.none(),
)
one_or_many = lambda s: st.one_of(s, st.lists(s, max_size=3))  # noqa: E731
rule = st.fixed_dictionaries(
    {}, optional={"methods": one_or_many(methods), "paths": one_or_many(paths), "x": st.just(1)}
)
policy_entry = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["p", "q", "p"]), st.text(max_size=5), st.integers())},
    optional={
        "from": one_or_many(refs),
        "to": one_or_many(refs),
        "allow": st.one_of(st.lists(rule, max_size=3), rule, st.none()),
        "deny": st.just([]),
    },
)
hostile_sections = st.one_of(
    st.lists(policy_entry, max_size=4), policy_entry, st.none(), st.text(max_size=5)
)
good_refs = st.sampled_from(["a", "b", "c", "*", "group:g", "group:h"])
good_rule = st.fixed_dictionaries(
    {},
    optional={
        "methods": one_or_many(st.sampled_from(["GET", "get", "Post", "*", "DELETE"])),
        "paths": st.lists(st.sampled_from(["*", "/*", "/v1/*", "/healthz", "/"]), min_size=1),
    },
)
good_entry = st.fixed_dictionaries(
    {"from": one_or_many(good_refs), "to": one_or_many(good_refs)},
    optional={"allow": st.lists(good_rule, min_size=1, max_size=3)},
)
good_sections = st.lists(good_entry, max_size=4).map(
    lambda entries: [{"name": f"p{i}", **e} for i, e in enumerate(entries)]
)
policy_sections = st.one_of(good_sections, hostile_sections)


def base_mesh(policies: Any) -> dict[str, Any]:
    data = make_mesh(
        nodes=2,
        identities={name: identity("node-1") for name in IDENTITIES},
        groups=GROUPS,
    )
    data["policies"] = policies
    return data


def expand(ref: str) -> set[str]:
    if ref == "*":
        return set(IDENTITIES)
    if ref.startswith("group:"):
        return set(GROUPS.get(ref[len("group:") :], []))
    return {ref}


def reference_allows(policies: Any, caller: str, callee: str, method: str, path: str) -> bool:
    """What validated policies mean, read straight from the YAML data."""

    def listed(value: Any) -> list[Any]:
        return value if isinstance(value, list) else [value]

    def path_ok(pattern: str) -> bool:
        if pattern in ("*", "/*"):
            return True
        return path.startswith(pattern[:-1]) if pattern.endswith("*") else path == pattern

    for entry in listed(policies):
        callers = set().union(*(expand(r) for r in listed(entry["from"])))
        callees = set().union(*(expand(r) for r in listed(entry["to"])))
        rules = entry.get("allow", [{}])
        if caller not in callers or callee not in callees:
            continue
        for r in listed(rules):
            ms = [str(m).upper() for m in listed(r.get("methods", ["*"]))]
            if ("*" in ms or method in ms) and any(
                path_ok(p) for p in listed(r.get("paths", ["*"]))
            ):
                return True
    return False


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy_sections,
    st.sampled_from(IDENTITIES),
    st.sampled_from(IDENTITIES),
    st.sampled_from(["GET", "POST", "DELETE"]),
    st.sampled_from(["/", "/v1/x", "/healthz", "/a"]),
)
def test_any_policies_section_loads_to_what_it_says_or_a_located_error(
    section: Any, caller: str, callee: str, method: str, path: str
) -> None:
    try:
        loaded = load_text(to_yaml(base_mesh(section)))
    except ValidationFailed as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.location is not None, str(problem)
            assert str(problem).startswith("mesh.yaml:")
        return
    except MeshError as exc:  # pragma: no cover - the loader's other clean refusals
        assert str(exc)
        return
    expected = reference_allows(section or [], caller, callee, method, path)
    assert loaded.access.allows(caller, callee, method, path) == expected


class _Rule:
    def __init__(self, methods: list[str], paths: list[str]):
        self.methods, self.paths = methods, paths


class _Policy:
    def __init__(self, frm: list[str], to: list[str], allow: list[_Rule]):
        self.name, self.from_, self.to, self.allow = "p", frm, to, allow


@given(
    st.lists(st.sampled_from(["a", "b", "c", "*", "group:g", "group:h"]), min_size=1),
    st.lists(st.sampled_from(["a", "b", "c", "*", "group:g"]), min_size=1),
    st.lists(
        st.builds(
            _Rule,
            st.lists(st.sampled_from(["GET", "POST", "*"]), min_size=1, max_size=3),
            st.lists(st.sampled_from(["/x", "/y/*", "*", "/*"]), min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_grant_count_is_the_number_of_grants_a_single_rule_policy_builds(
    frm: list[str], to: list[str], rules: list[_Rule]
) -> None:
    pol = _Policy(frm, to, rules[:1])
    table = compile_policies([pol], IDENTITIES, GROUPS)
    assert grant_count(pol, IDENTITIES, GROUPS) == len(table.grants)
    several = _Policy(frm, to, rules)
    assert grant_count(several, IDENTITIES, GROUPS) >= len(
        compile_policies([several], IDENTITIES, GROUPS).grants
    )


def exploding_mesh(identities: int) -> str:
    data = make_mesh(
        nodes=1,
        identities={f"id-{i}": identity("node-1") for i in range(identities)},
        policies=[
            policy("health", "*", "*", methods=["GET"], paths=["/healthz"]),
            policy("everyone-everything", "*", "*", methods=["GET", "POST"], paths=["/a", "/b"]),
        ],
    )
    return to_yaml(data)


def test_a_policy_whose_table_would_explode_is_refused_quickly_in_little_memory() -> None:
    text = exploding_mesh(400)  # 160,000 + 640,000 grants: over MAX_GRANTS
    tracemalloc.start()
    start = time.perf_counter()
    try:
        load_text(text)
    except ValidationFailed as exc:
        problems = [str(p) for p in exc.problems]
    else:  # pragma: no cover
        raise AssertionError("an 800,000-grant mesh was accepted")
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert problems == [
        f"{where(text, 'name: everyone-everything')}: policies[1]: policy "
        f"'everyone-everything' brings the access table to 800,000 grants (callers x "
        f"callees x methods x paths), over the limit of {MAX_GRANTS:,}; narrow its "
        "from/to, methods or paths"
    ]
    assert elapsed < 3.0
    assert peak < 64 * 1024 * 1024


def test_a_table_just_under_the_limit_is_built() -> None:
    loaded = load_text(exploding_mesh(40))  # 1,600 + 6,400 grants
    assert len(loaded.access.grants) == 8_000
