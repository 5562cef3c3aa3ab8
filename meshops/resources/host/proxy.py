"""`proxy.<kind>["<identity>"]`: the identity's mTLS sidecar config, rendered from the
access table, checked by the proxy itself before it replaces the old file; and
`hook.reload["<identity>"]`, run once after the config, the certificates or the trust
pool changed."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshops.engine.plan import Action, Change, Impact
from meshops.engine.resource import Observed, Resource, fingerprint_of
from meshops.providers.files import ensure_dir, read_bytes, write_atomic
from meshops.resources.host.hooks import HookResource
from meshops.resources.host.scope import HostScope

if TYPE_CHECKING:
    from meshops.engine.runtime import Runtime
    from meshops.render.spec import ProxySpec

EXTENSIONS = {"caddy": "caddy", "envoy": "yaml", "nginx": "conf"}
# where a standalone proxy keeps its own files (Caddy storage, nginx temp files) and its
# runtime files (Caddy's admin socket, nginx's pid file): the example systemd units
# create them (StateDirectory=, RuntimeDirectory=) owned by the proxy's user
STATE_DIR = "/var/lib/meshops-{kind}/{identity}"
RUN_DIR = "/run/meshops-{kind}/{identity}"


def config_path(scope: HostScope, identity: str) -> Path:
    proxy = scope.mesh.identities[identity].proxy
    assert proxy is not None
    default = f"/etc/meshops/proxy/{identity}.{EXTENSIONS[proxy.kind]}"
    return scope.host_path(proxy.config or default)


def host_spec(scope: HostScope, identity: str, pool: bytes | None) -> ProxySpec:
    """The proxy spec of `identity` on this host: root-prefixed paths, the Caddy release
    installed here, the node CA pool."""
    from meshops.render import proxy_spec
    from meshops.render.spec import CADDY_LATEST, pem_ders

    proxy = scope.mesh.identities[identity].proxy
    assert proxy is not None
    version = CADDY_LATEST
    if proxy.kind == "caddy":
        from meshops.providers.proxies import caddy_version

        version = caddy_version() or CADDY_LATEST
    dirs = {"kind": proxy.kind, "identity": identity}
    return proxy_spec(
        scope.mesh,
        scope.loaded.access,
        identity,
        tls_dir=str(scope.tls_dir(identity)),
        state_dir=str(scope.host_path(STATE_DIR.format(**dirs))),
        run_dir=str(scope.host_path(RUN_DIR.format(**dirs))),
        plaintext_listen=proxy.listen + 1 if scope.mesh.mtls.mode == "permissive" else None,
        caddy_version=version,
        node_ca_ders=pem_ders(pool or b""),
    )


class ProxyConfigResource(Resource[bytes]):
    def __init__(self, scope: HostScope, identity: str, follows: list[str], pool: bytes | None):
        from meshops.render import render
        from meshops.render.nginx import render_nginx_include

        proxy = scope.mesh.identities[identity].proxy
        assert proxy is not None
        self.kind = proxy.kind
        self.address = f'proxy.{proxy.kind}["{identity}"]'
        self.depends_on = tuple(follows)  # certs must exist for the proxy's own check
        self.path = config_path(scope, identity)
        self.owns = (self.path,)
        self.owned = scope.owned
        spec = host_spec(scope, identity, pool)
        self.text = render(spec)
        self.dirs: list[tuple[Path, int]] = []  # what a standalone proxy writes into
        self.gid = scope.tls_gid(identity)
        if spec.run == "standalone" and proxy.kind != "envoy":
            assert spec.run_dir is not None and spec.state_dir is not None
            # Caddy may run as the group's user (0770); nginx's root master creates temp
            # directories below for its workers, who must pass through (0755)
            mode = (0o770 if self.gid is not None else 0o700) if proxy.kind == "caddy" else 0o755
            self.dirs = [(Path(spec.run_dir), mode), (Path(spec.state_dir), mode)]
        # nginx checks a standalone file's maps and server inside a wrapper of its own:
        # `nginx -t` would want the pid directory, which exists only where nginx runs
        self.checked = render_nginx_include(spec) if proxy.kind == "nginx" else self.text

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
            check_config(self.kind, self.checked, workdir=Path(work), target=self.path)
        for directory, mode in self.dirs:  # the example units make them too; by hand, here
            ensure_dir(directory, mode=mode, group=self.gid if self.kind == "caddy" else None)
        write_atomic(self.path, data, mode=0o644)


def proxy_resources(
    scope: HostScope, identity: str, follows: list[str], pool: bytes | None = None
) -> list[Resource[Any]]:
    """The config file and reload hook of an identity's proxy (none without `proxy:`).

    `pool` is the node CA trust pool written for a Caddy sidecar (node-cas.pem)."""
    from meshops.resources.host import hook_facts

    proxy = scope.mesh.identities[identity].proxy
    if proxy is None:
        return []
    config = ProxyConfigResource(scope, identity, follows, pool)
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
