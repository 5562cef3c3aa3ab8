"""What a proxy renderer needs to know, as one frozen value.

Renderers are pure: a `ProxySpec` in, config text out. The caller-facing RBAC comes
from the one access table (`AccessTable.rules_for(identity)`), never re-derived here,
and each caller is bound to the nodes it runs on (`caller_nodes`): a caller's
certificate counts only when one of those nodes' CAs issued it. All file paths are
absolute and already carry the `--root` prefix: the host scope writes the certificate
files first, then renders and checks the proxy config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from meshops.pki.specs import node_ca_subject
from meshops.policy.table import CallerRule

if TYPE_CHECKING:
    from meshops.model.mesh import Mesh
    from meshops.policy.table import AccessTable

ProxyKind = Literal["caddy", "envoy", "nginx"]
Mode = Literal["strict", "permissive"]
MinTls = Literal["1.2", "1.3"]
# standalone: the file is the proxy's whole config (one process per sidecar);
# import: a fragment for the operator's own config (Caddyfile `import`, nginx `include`)
Run = Literal["standalone", "import"]
CaddyVersion = tuple[int, int, int]
CADDY_LATEST: CaddyVersion = (2, 11, 0)


def spiffe_id(trust_domain: str, identity: str) -> str:
    """`spiffe://<trust_domain>/<identity>`: what every proxy authorizes on (docs/layout.md)."""
    return f"spiffe://{trust_domain}/{identity}"


@dataclass(frozen=True)
class ProxySpec:
    """One identity's sidecar: where it listens, where it forwards, whom it lets in."""

    identity: str
    kind: ProxyKind
    trust_domain: str
    listen: int
    upstream: str  # "host:port", "[v6]:port" for IPv6 literals
    cert_file: str  # leaf + node CA chain
    key_file: str
    ca_file: str  # trust bundle: the root(s)
    crl_file: str | None
    rules: tuple[CallerRule, ...]
    mode: Mode = "strict"
    min_tls: MinTls = "1.3"
    listen_address: str = "0.0.0.0"
    plaintext_listen: int | None = None  # permissive mode only: a plaintext port
    state_dir: str | None = None  # the proxy's own files (Caddy storage, nginx temp files)
    run_dir: str | None = None  # standalone: Caddy's admin socket, nginx's pid file
    domain: str = ""  # the mesh domain: every leaf carries `<node>.<domain>`
    caller_nodes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    node_ca_file: str | None = None  # the current node CAs: Caddy's client trust pool
    # the same certificates as base64 DER: Caddy before 2.8 reads only the first
    # certificate of a file, so its Caddyfile lists each one
    node_ca_ders: tuple[str, ...] = ()
    run: Run = "standalone"
    caddy_version: CaddyVersion = CADDY_LATEST

    def __post_init__(self) -> None:
        if self.mode == "permissive" and self.plaintext_listen == self.listen:
            raise ValueError("plaintext_listen must differ from listen")
        if self.kind == "envoy" and self.run == "import":
            raise ValueError("an Envoy bootstrap cannot be imported into another config")

    @property
    def spiffe_id(self) -> str:
        return spiffe_id(self.trust_domain, self.identity)

    def caller_id(self, caller: str) -> str:
        return spiffe_id(self.trust_domain, caller)

    def caller_issuers(self, caller: str) -> tuple[str, ...]:
        """Subjects of the node CAs that may vouch for `caller`: its nodes' CAs only."""
        return tuple(node_ca_subject(node) for node in self.caller_nodes.get(caller, ()))

    def caller_node_names(self, caller: str) -> tuple[str, ...]:
        """`<node>.<domain>` of `caller`'s nodes: a DNS SAN only those nodes' CAs may
        put in a leaf (each node CA's DNS name constraints stop at its own names)."""
        return tuple(f"{node}.{self.domain}" for node in self.caller_nodes.get(caller, ()))

    @property
    def issuer_nodes(self) -> tuple[str, ...]:
        """Every node some caller runs on, sorted."""
        return tuple(sorted({n for nodes in self.caller_nodes.values() for n in nodes}))

    @property
    def upstream_host(self) -> str:
        host, _, _ = self.upstream.rpartition(":")
        return host[1:-1] if host.startswith("[") else host

    @property
    def upstream_port(self) -> int:
        return int(self.upstream.rpartition(":")[2])

    @property
    def plaintext(self) -> int | None:
        """The plaintext port actually rendered: only in permissive mode."""
        return self.plaintext_listen if self.mode == "permissive" else None


def host_port(host: str, port: int) -> str:
    """`host:port`, bracketing IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


NODE_CA_POOL = "node-cas.pem"


def pem_ders(pem: bytes) -> tuple[str, ...]:
    """The base64 DER of every certificate in a PEM bundle (its PEM bodies, unwrapped)."""
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    return tuple(b"".join(block.split(end)[0].split()).decode() for block in pem.split(begin)[1:])


def proxy_spec(
    mesh: Mesh,
    access: AccessTable,
    identity: str,
    *,
    tls_dir: str,
    state_dir: str | None = None,
    run_dir: str | None = None,
    plaintext_listen: int | None = None,
    caddy_version: CaddyVersion = CADDY_LATEST,
    node_ca_ders: tuple[str, ...] = (),
) -> ProxySpec:
    """The spec for `identity`'s `proxy:` from the mesh and its access table.

    `tls_dir` is the identity's root-prefixed TLS directory (docs/layout.md:
    cert.pem, key.pem, ca.pem, crl.pem, and node-cas.pem for Caddy), which the host
    scope writes before rendering.
    """
    proxy = mesh.identities[identity].proxy
    if proxy is None:
        raise ValueError(f"identity {identity!r} has no proxy")
    base = tls_dir.rstrip("/")
    rules = tuple(access.rules_for(identity))
    callers = {rule.caller for rule in rules}
    return ProxySpec(
        identity=identity,
        kind=proxy.kind,
        trust_domain=mesh.mesh.trust_domain,
        listen=proxy.listen,
        upstream=str(proxy.upstream),
        cert_file=f"{base}/cert.pem",
        key_file=f"{base}/key.pem",
        ca_file=f"{base}/ca.pem",
        crl_file=f"{base}/crl.pem",
        rules=rules,
        mode=mesh.mtls.mode,
        min_tls=mesh.mtls.min_tls,
        plaintext_listen=plaintext_listen,
        state_dir=state_dir,
        run_dir=run_dir,
        domain=mesh.mesh.domain,
        caller_nodes={c: tuple(mesh.identities[c].nodes) for c in sorted(callers)},
        node_ca_file=f"{base}/{NODE_CA_POOL}",
        run=mesh.proxy_run(identity),
        caddy_version=caddy_version,
        node_ca_ders=node_ca_ders,
    )
