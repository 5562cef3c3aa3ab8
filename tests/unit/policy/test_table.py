"""The access table: compiled from policies, default deny, grouped for proxies, diffed."""

from __future__ import annotations

from factories import identity, make_mesh, policy, proxy, to_yaml, web_api_mesh

from meshops.model import load_text
from meshops.policy import (
    AccessTable,
    CallerRule,
    Grant,
    access_diff,
    compile_policies,
    method_matches,
    path_matches,
)

# methods and paths need a proxy on the callee to mean anything
PROXIED_PAIR = {"id-1": identity("node-1"), "id-2": identity("node-2", proxy=proxy())}


def table_of(data: dict[str, object]) -> AccessTable:
    return load_text(to_yaml(data)).access


def test_no_policies_means_everything_is_denied() -> None:
    table = table_of(make_mesh(identities=3))
    assert table.grants == ()
    assert not table.allows("id-1", "id-2", "GET", "/")
    assert table.edges() == set()


def test_a_policy_allows_exactly_its_methods_and_paths() -> None:
    table = table_of(web_api_mesh())
    assert table.allows("web", "api", "GET", "/v1/users")
    assert table.allows("web", "api", "get", "/v1/")
    assert not table.allows("web", "api", "POST", "/v1/users")
    assert not table.allows("web", "api", "GET", "/v2/users")
    assert not table.allows("web", "api", "GET", "/v1")  # /v1/* needs the slash
    assert not table.allows("api", "web", "GET", "/v1/users")  # direction matters


def test_groups_expand_to_their_members() -> None:
    table = table_of(web_api_mesh())
    for member in ("web", "admin"):
        assert table.allows(member, "api", "GET", "/v1/x")
    assert not table.allows("db", "api", "GET", "/v1/x")


def test_star_principal_means_every_identity() -> None:
    data = make_mesh(identities=3, policies=[policy("all", "*", "id-1")])
    table = table_of(data)
    assert {caller for caller, _ in table.edges()} == {"id-1", "id-2", "id-3"}
    assert table.allows("id-3", "id-1", "DELETE", "/anything")


def test_omitted_allow_means_any_method_and_path() -> None:
    data = make_mesh(identities=2, policies=[{"name": "p", "from": "id-1", "to": "id-2"}])
    table = table_of(data)
    assert table.grants == (Grant("id-1", "id-2", "*", "*", "p"),)


def test_star_and_slash_star_paths_collapse_to_any() -> None:
    data = make_mesh(
        identities=PROXIED_PAIR,
        policies=[policy("p", "id-1", "id-2", methods=["GET"], paths=["/*", "/x"])],
    )
    assert table_of(data).grants == (Grant("id-1", "id-2", "GET", "*", "p"),)


def test_duplicate_grants_are_folded_and_keep_the_first_policy() -> None:
    data = make_mesh(
        identities=PROXIED_PAIR,
        policies=[
            policy("first", "id-1", "id-2", methods=["GET"], paths=["/a"]),
            policy("second", "id-1", "id-2", methods=["GET", "GET"], paths=["/a"]),
        ],
    )
    table = table_of(data)
    assert table.grants == (Grant("id-1", "id-2", "GET", "/a", "first"),)
    grant = table.decide("id-1", "id-2", "GET", "/a")
    assert grant is not None and grant.policy == "first"


def test_grants_are_sorted_and_deterministic() -> None:
    data = web_api_mesh()
    first = table_of(data).grants
    data["policies"].reverse()
    again = table_of(data).grants
    assert [g.key for g in first] == sorted(g.key for g in first)
    assert [g.key for g in first] == [g.key for g in again]


def test_rules_for_a_callee_group_methods_and_paths_per_caller() -> None:
    data = make_mesh(
        identities={
            "a": identity("node-1"),
            "b": identity("node-1"),
            "svc": identity("node-2", proxy=proxy()),
        },
        policies=[
            policy("p1", "a", "svc", methods=["GET", "HEAD"], paths=["/v1/*", "/health"]),
            policy("p2", "a", "svc", methods=["POST"], paths=["/v1/*"]),
            policy("p3", "b", "svc", methods=["*"], paths=["*"]),
        ],
    )
    rules = table_of(data).rules_for("svc")
    assert rules == [
        CallerRule("a", ("GET", "HEAD"), ("/health",)),
        CallerRule("a", ("GET", "HEAD", "POST"), ("/v1/*",)),
        CallerRule("b", ("*",), ("*",)),
    ]
    assert table_of(data).callees() == ["svc"]


def test_rules_for_agree_with_decide() -> None:
    table = table_of(web_api_mesh())
    for callee in table.callees():
        for rule in table.rules_for(callee):
            for method in ("GET", "POST", "DELETE", "HEAD"):
                for path in ("/v1/x", "/query", "/other"):
                    by_rule = any(method_matches(m, method) for m in rule.methods) and any(
                        path_matches(p, path) for p in rule.paths
                    )
                    if by_rule:
                        assert table.allows(rule.caller, callee, method, path)


def test_compile_policies_works_on_plain_objects() -> None:
    class Rule:
        methods = ("GET",)
        paths = ("/x",)

    class Pol:
        name = "p"
        from_ = ("group:g",)
        to = ("b",)
        allow = (Rule(),)

    table = compile_policies([Pol()], ["a", "b"], {"g": ["a"]})
    assert table.grants == (Grant("a", "b", "GET", "/x", "p"),)


def test_access_diff_names_gained_and_lost_grants() -> None:
    before = table_of(web_api_mesh())
    data = web_api_mesh()
    data["groups"]["frontends"] = ["web"]  # admin loses read access
    data["policies"].append(policy("web-health", "web", "db", methods=["GET"], paths=["/health"]))
    data["tests"] = []
    after = table_of(data)
    diff = access_diff(before, after)
    assert [g.key for g in diff.gained] == [("web", "db", "GET", "/health")]
    assert [g.key for g in diff.lost] == [("admin", "api", "GET", "/v1/*")]
    assert not diff.empty
    assert access_diff(after, after).empty
