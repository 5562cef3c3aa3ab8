"""Whatever `validate` accepts, every proxy accepts what meshops renders for it.

Hostile or careless `policies:` (long paths, hundreds of paths, every punctuation a
path pattern may hold, callers on dozens of long-named nodes, and junk) go through the
loader; when it accepts the mesh, the configs rendered for its Caddy, nginx and Envoy
sidecars must pass `caddy validate` (Debian's 2.6 and a current release), `nginx -t`
and Envoy's API types. A refusal must be a located error. Each example batches a few
meshes into one config per proxy, so a few dozen meshes cost a few proxy runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from factories import identity, make_mesh, node, proxy, to_yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxy_binaries import CADDY_RELEASES, caddy, nginx
from render_pki import TlsFiles

from meshops.errors import ValidationFailed
from meshops.model import load_text
from meshops.providers.proxies import check_config, validate_envoy
from meshops.render import proxy_spec, render
from meshops.render.caddy import global_options, render_caddy_site
from meshops.render.nginx import render_nginx_include
from meshops.render.spec import ProxySpec, pem_ders

SIDECARS = {"a": "caddy", "b": "nginx", "c": "envoy"}
LONG = "x" * 52
CALLERS = ["caller", f"caller-{LONG[:54]}"]  # the longest name a name may be: 63
PATH_CHARS = "abcXYZ019/-._~!$&()+,=:@"


def base_mesh(nodes: int) -> dict[str, Any]:
    """Sidecars a (Caddy), b (nginx), c (Envoy) on node n0; callers on every node (long
    names: the nginx and Caddy node alternations grow past one parameter)."""
    names = [f"n{i}-{LONG}" for i in range(nodes)]
    data = make_mesh(nodes={name: node(i + 1) for i, name in enumerate(names)})
    data["identities"] = {
        **{s: identity(names[0], proxy=proxy(kind, 8000 + i)) for i, (s, kind) in
           enumerate(SIDECARS.items())},
        **{c: identity(names) for c in CALLERS},
    }  # fmt: skip
    return data


# long strings are built from short draws: hypothesis' own input budget stays small
bodies = st.one_of(
    st.text(alphabet=PATH_CHARS, max_size=30),
    st.builds(lambda piece, size: (piece * size)[:size], st.text(alphabet=PATH_CHARS,
              min_size=1, max_size=6), st.integers(900, 1023)),  # at the limit, escaped x2
)  # fmt: skip
valid_paths = st.one_of(
    st.sampled_from(["*", "/*", "/", "/v1/*", "/healthz"]),
    st.builds(lambda body, star: "/" + body + star, bodies, st.sampled_from(["", "*"])),
)
junk_paths = st.one_of(
    st.integers(1024, 1100).map(lambda size: "/" + "a" * size),
    st.text(max_size=12),
)
good_methods = st.one_of(
    st.lists(
        st.sampled_from(
            ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"]
        ),
        min_size=1,
        max_size=9,
    ),
    st.just(["*"]),
)
methods = st.one_of(good_methods, st.lists(st.text(max_size=5), min_size=1, max_size=2))
refs = st.sampled_from([*SIDECARS, *CALLERS, "*", "nobody"])
clean_paths = st.one_of(
    st.lists(valid_paths, min_size=1, max_size=4),
    st.builds(  # hundreds of paths in a rule
        lambda base, count, star: [f"/{base}{i}{star}" for i in range(count)],
        st.text(alphabet=PATH_CHARS, max_size=40), st.integers(100, 400),
        st.sampled_from(["", "*"]),
    ),
)  # fmt: skip


def _sections(rule: st.SearchStrategy[Any], callers: Any, callees: Any) -> Any:
    entry = st.fixed_dictionaries(
        {"from": st.lists(callers, min_size=1, max_size=3), "to": st.lists(callees, min_size=1)},
        optional={"allow": st.lists(rule, min_size=1, max_size=2)},
    )
    return st.lists(entry, min_size=1, max_size=3).map(
        lambda entries: [{"name": f"p{i}", **e} for i, e in enumerate(entries)]
    )


# policies that validate: callers into the sidecars, every shape of methods and paths
good_sections = _sections(
    st.fixed_dictionaries({"paths": clean_paths}, optional={"methods": good_methods}),
    st.sampled_from([*CALLERS, *SIDECARS]),
    st.sampled_from(list(SIDECARS)),
)
# and a careless or hostile mix, which mostly ends in located errors
hostile_sections = _sections(
    st.fixed_dictionaries(
        {},
        optional={
            "methods": methods,
            "paths": st.lists(st.one_of(valid_paths, junk_paths), min_size=1, max_size=4),
        },
    ),
    refs,
    refs,
)
policy_sections = st.integers(0, 3).flatmap(lambda i: hostile_sections if i == 0 else good_sections)


@dataclasses.dataclass
class Batch:
    """Specs of accepted meshes, renamed and re-ported so they share one config."""

    specs: list[ProxySpec] = dataclasses.field(default_factory=list)

    def add(self, spec: ProxySpec) -> None:
        index = len(self.specs)
        self.specs.append(
            dataclasses.replace(
                spec, identity=f"{spec.identity}{index}", listen=20000 + index,
                listen_address="127.0.0.1",
            )
        )  # fmt: skip


def _spec(loaded: Any, name: str, tls: TlsFiles, state: Path) -> ProxySpec:
    ders = pem_ders(tls.node_cas.read_bytes())
    spec = proxy_spec(loaded.mesh, loaded.access, name, tls_dir=str(tls.cert.parent),
                      state_dir=str(state), node_ca_ders=ders)  # fmt: skip
    return dataclasses.replace(spec, node_ca_file=str(tls.node_cas), crl_file=str(tls.crl))


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(
    sections=st.lists(policy_sections, min_size=6, max_size=6),
    nodes=st.sampled_from([3, 60]),
)
def test_whatever_validate_accepts_every_proxy_accepts(
    sections: list[Any], nodes: int, tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("fuzz")
    batches = {kind: Batch() for kind in SIDECARS.values()}
    for section in sections:
        data = base_mesh(nodes)
        data["policies"] = section
        try:
            loaded = load_text(to_yaml(data))
        except ValidationFailed as exc:
            assert all(p.location is not None for p in exc.problems), str(exc)
            continue
        for name, kind in SIDECARS.items():
            batches[kind].add(_spec(loaded, name, tls_files, work / "state"))
    for spec in batches["envoy"].specs:
        validate_envoy(render(spec))
    if batches["nginx"].specs:
        text = "".join(render_nginx_include(s) for s in batches["nginx"].specs)
        assert check_config("nginx", text, workdir=work / "nginx", binary=nginx()) is None
    for release in CADDY_RELEASES:
        binary, version = caddy(release)
        specs = [dataclasses.replace(s, caddy_version=version) for s in batches["caddy"].specs]
        if specs:
            text = "\n".join(global_options(specs[0])) + "".join(map(render_caddy_site, specs))
            checked = check_config("caddy", text, workdir=work / release, binary=binary)
            assert checked is None
