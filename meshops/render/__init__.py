"""Caddy, Envoy and nginx configs from the one access table (pure: values in, text out).

`render(spec)` picks the renderer for `spec.kind` and `spec.run` (a whole config, or a
fragment to import). The interpreters in `meshops.render.interpret` read rendered text
back for property tests (who may call, through which node CA, with which raw path); the
proxies' own checks (`caddy validate`, `nginx -t`, Envoy API types) live in
`meshops.providers.proxies`.

The renderers are imported when first used: a host plan that only needs the packet
filter's table (`meshops.render.nftables`) does not load the three proxy renderers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshops.render.caddy import render_caddy, render_caddy_site
    from meshops.render.envoy import render_envoy
    from meshops.render.nginx import render_nginx
    from meshops.render.spec import ProxyKind, ProxySpec, proxy_spec, spiffe_id

_LAZY = {
    "render_caddy": "meshops.render.caddy",
    "render_caddy_site": "meshops.render.caddy",
    "render_envoy": "meshops.render.envoy",
    "render_nginx": "meshops.render.nginx",
    "ProxyKind": "meshops.render.spec",
    "ProxySpec": "meshops.render.spec",
    "proxy_spec": "meshops.render.spec",
    "spiffe_id": "meshops.render.spec",
}


def render(spec: ProxySpec) -> str:
    """The config text for `spec.kind`, whole (standalone) or importable (import)."""
    if spec.kind == "caddy":
        from meshops.render.caddy import render_caddy

        return render_caddy(spec)
    if spec.kind == "envoy":
        from meshops.render.envoy import render_envoy

        return render_envoy(spec)
    from meshops.render.nginx import render_nginx

    return render_nginx(spec)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
