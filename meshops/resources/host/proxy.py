"""`proxy.<kind>["<identity>"]`: the identity's mTLS sidecar config, rendered from the
access table, checked by the proxy itself before it replaces the old file; and
`hook.reload["<identity>"]`, run once after the config or the certificates changed."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshops.engine.plan import Action, Change, Impact
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.providers.files import read_bytes, write_atomic
from meshops.resources.host.hooks import HookResource
from meshops.resources.host.scope import HostScope

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime

EXTENSIONS = {"caddy": "caddy", "envoy": "yaml", "nginx": "conf"}


def config_path(scope: HostScope, identity: str) -> Path:
    proxy = scope.mesh.identities[identity].proxy
    assert proxy is not None
    default = f"/etc/meshops/proxy/{identity}.{EXTENSIONS[proxy.kind]}"
    return scope.host_path(proxy.config or default)


class ProxyConfigResource(Resource[bytes]):
    def __init__(self, scope: HostScope, identity: str, follows: list[str]):
        from meshops.render import proxy_spec, render

        proxy = scope.mesh.identities[identity].proxy
        assert proxy is not None
        self.kind = proxy.kind
        self.address = f'proxy.{proxy.kind}["{identity}"]'
        self.depends_on = tuple(follows)  # certs must exist for the proxy's own check
        self.path = config_path(scope, identity)
        self.owns = (self.path,)
        self.owned = scope.owned
        plaintext = proxy.listen + 1 if scope.mesh.mtls.mode == "permissive" else None
        spec = proxy_spec(
            scope.mesh,
            scope.loaded.access,
            identity,
            tls_dir=str(scope.tls_dir(identity)),
            state_dir=str(scope.host_path(f"/var/lib/meshops/proxy/{identity}")),
            plaintext_listen=plaintext,
        )
        self.text = render(spec)

    def read(self, rt: Runtime) -> Observed[bytes]:
        data = read_bytes(self.path)
        return Observed(data, fingerprint_of(data or b""))

    def plan(self, observed: Observed[bytes], rt: Runtime) -> Change:
        want = self.text.encode()
        after = {"path": str(self.path), "sha256": hashlib.sha256(want).hexdigest()[:16]}
        if observed.value is None:
            return Change(self.address, Action.CREATE, "no config yet", None, after,
                          impact=Impact.RESTART)  # fmt: skip
        before = {"path": str(self.path), "sha256": hashlib.sha256(observed.value).hexdigest()[:16]}
        if observed.value == want:
            return Change(self.address, Action.NOOP, "", before, before)
        return Change(self.address, Action.UPDATE, "rendered config changed (policy, "
                      "certificates paths or proxy settings)", before, after,
                      impact=Impact.RESTART)  # fmt: skip

    def apply(self, change: Change, rt: Runtime) -> None:
        from meshops.providers.proxies import check_config

        data = self.text.encode()
        self.owned.claim({self.path: data})  # never someone else's file
        with tempfile.TemporaryDirectory(prefix="meshops-check-") as work:
            check_config(self.kind, self.text, workdir=Path(work), target=self.path)
        write_atomic(self.path, data, mode=0o644)


def proxy_resources(scope: HostScope, identity: str, follows: list[str]) -> list[Resource[Any]]:
    """The config file and reload hook of an identity's proxy (none without `proxy:`)."""
    from meshops.resources.host import hook_facts

    proxy = scope.mesh.identities[identity].proxy
    if proxy is None:
        return []
    config = ProxyConfigResource(scope, identity, follows)
    out: list[Resource[Any]] = [config]
    if proxy.reload:
        out.append(
            HookResource(
                f'hook.reload["{identity}"]',
                [proxy.reload],
                [config.address, *follows],
                env={**hook_facts(scope, identity), "MESHOPS_PROXY_CONFIG": str(config.path)},
            )
        )
    return out
