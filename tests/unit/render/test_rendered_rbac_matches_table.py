"""What each rendered config lets through equals what the access table allows.

The interpreters read the rendered text back (not the spec), so this pins every
renderer to the one access table for random policy sets and tricky requests.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from render_factories import spec_for

from meshops.model.mesh import Policy
from meshops.policy import AccessTable, compile_policies
from meshops.render import render
from meshops.render.interpret import INTERPRETERS, ClientCert, Request, evaluate
from meshops.render.spec import spiffe_id

NAMES = ["api", "web", "batch", "db-1", "admin"]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]
SEGMENTS = ["v1", "v1x", "a", "x.y", "r$", "(g)", "p+q", "a|b", "^c", "[s]", "%41", "é"]
KINDS = ["caddy", "envoy", "nginx"]


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
def policy_sets(draw: st.DrawFn) -> tuple[list[str], AccessTable, list[str]]:
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
    return names, table, patterns


def edge_paths(patterns: list[str]) -> list[str]:
    """Paths next to every pattern: `/v1` vs `/v1/`, `/v1/*` vs `/v1x`, case, prefixes."""
    paths = {"/", "/v1", "/v1/", "/v1x", "/v1/a", "/V1/a"}
    for pattern in patterns:
        base = pattern.rstrip("*") if pattern not in ("*", "/*") else "/"
        for candidate in (base, base + "x", base + "/", base[:-1], base.upper(), base + "/z"):
            if candidate.startswith("/") and "//" not in candidate:
                paths.add(candidate)
    return sorted(paths)  # canonical paths only: non-canonical ones are refused (see e2e)


def _cert(name: str) -> ClientCert:
    return ClientCert(uri=spiffe_id("demo.internal", name), cn=name)


@settings(max_examples=100, deadline=None)
@given(data=policy_sets(), kind=st.sampled_from(KINDS), pick=st.data())
def test_rendered_config_allows_exactly_what_the_access_table_allows(
    data: tuple[list[str], AccessTable, list[str]], kind: str, pick: st.DataObject
) -> None:
    names, table, patterns = data
    callee = pick.draw(st.sampled_from(names))
    text = render(spec_for(kind, table, callee))  # type: ignore[arg-type]
    decide = INTERPRETERS[kind](text)
    for caller in names:
        for method in METHODS:
            for path in edge_paths(patterns):
                expected = table.allows(caller, callee, method, path)
                got = decide(Request(_cert(caller), method, path))
                assert got == expected, (kind, caller, callee, method, path, text)


@settings(max_examples=40, deadline=None)
@given(data=policy_sets(), kind=st.sampled_from(KINDS), pick=st.data())
def test_request_without_client_certificate_passes_only_in_permissive_mode(
    data: tuple[list[str], AccessTable, list[str]], kind: str, pick: st.DataObject
) -> None:
    names, table, _ = data
    callee = pick.draw(st.sampled_from(names))
    request = Request(None, pick.draw(st.sampled_from(METHODS)), "/v1/a")
    strict = render(spec_for(kind, table, callee))  # type: ignore[arg-type]
    permissive = render(
        spec_for(kind, table, callee, mode="permissive", plaintext_listen=8080)  # type: ignore[arg-type]
    )
    assert evaluate(kind, strict, request) is False
    assert evaluate(kind, permissive, request) is True


def test_foreign_trust_domain_uri_is_not_a_caller() -> None:
    policy = Policy.model_validate({"name": "p", "from": ["web"], "to": ["api"]})
    table = compile_policies([policy], ["web", "api"], {})
    for kind in ("caddy", "envoy"):
        text = render(spec_for(kind, table, "api"))
        outsider = ClientCert(uri="spiffe://evil.example/web", cn="web")
        assert evaluate(kind, text, Request(_cert("web"), "GET", "/x"))
        assert not evaluate(kind, text, Request(outsider, "GET", "/x"))
