"""Caddy, Envoy and nginx configs from the one access table (pure: values in, text out).

`render(spec)` picks the renderer for `spec.kind` and `spec.run` (a whole config, or a
fragment to import). The interpreters in `meshops.render.interpret` read rendered text
back for property tests (who may call, through which node CA, with which raw path); the
proxies' own checks (`caddy validate`, `nginx -t`, Envoy API types) live in
`meshops.providers.proxies`.
"""

from __future__ import annotations

from meshops.render.caddy import render_caddy, render_caddy_site
from meshops.render.envoy import render_envoy
from meshops.render.nginx import render_nginx
from meshops.render.spec import ProxyKind, ProxySpec, proxy_spec, spiffe_id


def render(spec: ProxySpec) -> str:
    """The config text for `spec.kind`, whole (standalone) or importable (import)."""
    if spec.kind == "caddy":
        return render_caddy(spec)
    if spec.kind == "envoy":
        return render_envoy(spec)
    return render_nginx(spec)


__all__ = [
    "ProxyKind",
    "ProxySpec",
    "proxy_spec",
    "render",
    "render_caddy",
    "render_caddy_site",
    "render_envoy",
    "render_nginx",
    "spiffe_id",
]
