"""What each rendered config lets through equals what the access table allows, per
(caller, issuing node CA): a caller counts only through the CA of a node it runs on.

The interpreters read the rendered text back (not the spec), so this pins every
renderer to the one access table for random policy sets, placements and tricky
requests, including raw paths a client could send to smuggle one past a rule.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import unquote

from hypothesis import given, settings
from hypothesis import strategies as st
from render_factories import DOMAIN, spec_for

from meshops.model.mesh import Policy
from meshops.policy import AccessTable, compile_policies
from meshops.render import render
from meshops.render.interpret import (
    INTERPRETERS,
    ClientCert,
    Request,
    evaluate,
    mesh_leaf,
    outcome,
    remove_dot_segments,
)

TRUST_DOMAIN = "demo.internal"
NAMES = ["api", "web", "batch", "db-1", "admin"]
NODES = ["n1", "n2", "n3"]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]
SEGMENTS = ["v1", "v1x", "a", "x.y", "r$", "(g)", "p+q", "a,b", "~c", "s=1", "u:v", "@w"]
KINDS = ["caddy", "envoy", "nginx"]

Placement = dict[str, tuple[str, ...]]


@st.composite
def path_patterns(draw: st.DrawFn) -> str:
    shape = draw(st.sampled_from(["any", "exact", "prefix", "dir-prefix", "root"]))
    if shape == "any":
        return draw(st.sampled_from(["*", "/*"]))
    if shape == "root":
        return "/"
    base = "/" + "/".join(draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3)))
    if shape == "exact":
        return base + draw(st.sampled_from(["", "/"]))
    return base + ("/*" if shape == "dir-prefix" else "*")


@st.composite
def policy_sets(draw: st.DrawFn) -> tuple[list[str], AccessTable, list[str], Placement]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    groups = {"g": draw(st.lists(st.sampled_from(names), max_size=3, unique=True))}
    refs = st.sampled_from([*names, "group:g", "*"])
    policies = [
        Policy.model_validate(
            {
                "name": f"p{index}",
                "from": draw(st.lists(refs, min_size=1, max_size=2)),
                "to": draw(st.lists(refs, min_size=1, max_size=2)),
                "allow": [
                    {
                        "methods": draw(
                            st.lists(st.sampled_from([*METHODS, "*"]), min_size=1, max_size=3)
                        ),
                        "paths": draw(st.lists(path_patterns(), min_size=1, max_size=3)),
                    }
                    for _ in range(draw(st.integers(1, 2)))
                ],
            }
        )
        for index in range(draw(st.integers(0, 4)))
    ]
    table = compile_policies(policies, names, groups)
    patterns = sorted({g.path for g in table.grants})
    placement = {
        name: tuple(draw(st.lists(st.sampled_from(NODES), min_size=1, max_size=2, unique=True)))
        for name in names
    }
    return names, table, patterns, placement


def edge_paths(patterns: list[str]) -> list[str]:
    """Paths next to every pattern: `/v1` vs `/v1/`, `/v1/*` vs `/v1x`, case, prefixes."""
    paths = {"/", "/v1", "/v1/", "/v1x", "/v1/a", "/V1/a"}
    for pattern in patterns:
        base = pattern.rstrip("*") if pattern not in ("*", "/*") else "/"
        for candidate in (base, base + "x", base + "/", base[:-1], base.upper(), base + "/z"):
            if candidate.startswith("/") and "//" not in candidate:
                paths.add(candidate)
    return sorted(paths)


def _spec(kind: str, table: AccessTable, callee: str, placement: Placement, **kw: object):  # type: ignore[no-untyped-def]
    callers = {rule.caller for rule in table.rules_for(callee)}
    nodes = {c: placement[c] for c in callers}
    return spec_for(kind, table, callee, caller_nodes=nodes, **kw)  # type: ignore[arg-type]


def hostile_leaf(caller: str, node: str) -> ClientCert:
    """What a thief of `node`'s CA key can mint for `caller`: the issuer and DNS names
    are the node's own (chain building and its name constraints), every URI SAN it likes,
    here the `<node>.<domain>` name of every node in the mesh."""
    leaf = mesh_leaf(TRUST_DOMAIN, DOMAIN, caller, node)
    return dataclasses.replace(leaf, more_uris=tuple(f"{n}.{DOMAIN}" for n in NODES))


@settings(max_examples=100, deadline=None)
@given(data=policy_sets(), kind=st.sampled_from(KINDS), pick=st.data())
def test_rendered_config_allows_exactly_what_the_table_allows_through_the_callers_nodes(
    data: tuple[list[str], AccessTable, list[str], Placement], kind: str, pick: st.DataObject
) -> None:
    names, table, patterns, placement = data
    callee = pick.draw(st.sampled_from(names))
    text = render(_spec(kind, table, callee, placement))
    decide = INTERPRETERS[kind](text)
    for caller in names:
        for node in NODES:
            issued_there = node in placement[caller]
            for leaf in (mesh_leaf(TRUST_DOMAIN, DOMAIN, caller, node), hostile_leaf(caller, node)):
                for method in METHODS:
                    for path in edge_paths(patterns):
                        expected = issued_there and table.allows(caller, callee, method, path)
                        got = decide(Request(leaf, method, path)).reached
                        assert got == expected, (kind, caller, node, callee, method, path, text)


# what a client can put in a path to make a proxy and its upstream disagree
RAW_PIECES = [
    "v1", "admin", "a", ".", "..", "%2e", "%2E%2e", "%2f", "%2F", "%5c", "\\", ";", "..;",
    "%3b", ";x=1", "", "%41", "x%20y", "#",
]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(RAW_PIECES), min_size=1, max_size=5),
    kind=st.sampled_from(KINDS),
)
def test_a_request_reaches_the_upstream_only_with_a_path_the_table_allows(
    pieces: list[str], kind: str
) -> None:
    """`web` may GET /v1/* only. Whatever raw path it sends, the path the upstream acts
    on (percent-decoded, dot segments resolved) is one the table allows, and `;` path
    parameters (`/v1/..;/admin` is /admin to Tomcat) never reach it."""
    table = compile_policies(
        [Policy.model_validate({"name": "p", "from": "web", "to": "api",
                                "allow": [{"methods": ["GET"], "paths": ["/v1/*"]}]})],
        ["web", "api"], {},
    )  # fmt: skip
    text = render(_spec(kind, table, "api", {"web": ("n1",)}))
    raw = "/" + "/".join(pieces)
    result = outcome(kind, text, Request(mesh_leaf(TRUST_DOMAIN, DOMAIN, "web", "n1"), "GET", raw))
    if result.forwarded is None:
        return
    seen = unquote(result.forwarded)
    assert ";" not in seen and "\\" not in seen and "#" not in seen, (kind, raw, result)
    acted_on = remove_dot_segments(seen)
    assert table.allows("web", "api", "GET", acted_on), (kind, raw, result)
    if kind != "envoy":  # Caddy and nginx forward the path as it came: it must be canonical
        assert acted_on == seen and "//" not in seen, (kind, raw, result)


@settings(max_examples=40, deadline=None)
@given(data=policy_sets(), kind=st.sampled_from(KINDS), pick=st.data())
def test_request_without_client_certificate_passes_only_in_permissive_mode(
    data: tuple[list[str], AccessTable, list[str], Placement], kind: str, pick: st.DataObject
) -> None:
    names, table, _, placement = data
    callee = pick.draw(st.sampled_from(names))
    request = Request(None, pick.draw(st.sampled_from(METHODS)), "/v1/a")
    strict = render(_spec(kind, table, callee, placement))
    permissive = render(
        _spec(kind, table, callee, placement, mode="permissive", plaintext_listen=8080)
    )
    assert evaluate(kind, strict, request) is False
    assert evaluate(kind, permissive, request) is True


def test_foreign_trust_domain_uri_is_not_a_caller() -> None:
    policy = Policy.model_validate({"name": "p", "from": ["web"], "to": ["api"]})
    table = compile_policies([policy], ["web", "api"], {})
    for kind in ("caddy", "envoy"):
        text = render(_spec(kind, table, "api", {"web": ("n1",)}))
        web = mesh_leaf(TRUST_DOMAIN, DOMAIN, "web", "n1")
        outsider = dataclasses.replace(web, uri="spiffe://evil.example/web")
        assert evaluate(kind, text, Request(web, "GET", "/x"))
        assert not evaluate(kind, text, Request(outsider, "GET", "/x"))


@given(kind=st.sampled_from(KINDS))
def test_a_leaf_minted_by_another_nodes_ca_is_refused(kind: str) -> None:
    """web runs only on n2. A thief of n1's CA key mints a leaf for web (issuer n1, DNS
    names n1 may carry, URI SANs naming n2): refused; the real web on n2 passes."""
    policy = Policy.model_validate({"name": "p", "from": ["web"], "to": ["api"]})
    table = compile_policies([policy], ["web", "api"], {})
    text = render(_spec(kind, table, "api", {"web": ("n2",)}))
    assert evaluate(kind, text, Request(mesh_leaf(TRUST_DOMAIN, DOMAIN, "web", "n2"), "GET", "/x"))
    assert not evaluate(kind, text, Request(hostile_leaf("web", "n1"), "GET", "/x"))
