"""`proxy.<kind>["<identity>"]`: the identity's mTLS sidecar config, and its reload."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshops.resources.host.scope import HostScope

if TYPE_CHECKING:
    from meshops.engine.resource import Resource


def proxy_resources(scope: HostScope, identity: str, follows: list[str]) -> list[Resource[Any]]:
    """The config file and reload hook of an identity's proxy (none without `proxy:`)."""
    return []
