"""Factories for proxy render tests: a ProxySpec from an access table."""

from __future__ import annotations

from collections.abc import Mapping

from render_pki import NODE, TlsFiles

from meshops.policy import AccessTable
from meshops.render.spec import (
    CADDY_LATEST,
    CaddyVersion,
    ProxyKind,
    ProxySpec,
    Run,
    pem_ders,
)

DOMAIN = "mesh.demo.internal"


def spec_for(
    kind: ProxyKind,
    table: AccessTable,
    callee: str,
    *,
    tls: TlsFiles | None = None,
    listen: int = 8443,
    upstream: str = "127.0.0.1:8080",
    mode: str = "strict",
    plaintext_listen: int | None = None,
    state_dir: str | None = None,
    run_dir: str | None = None,
    caller_nodes: Mapping[str, tuple[str, ...]] | None = None,
    run: Run | None = None,
    caddy_version: CaddyVersion = CADDY_LATEST,
) -> ProxySpec:
    """A spec for `callee`'s proxy; every caller runs on `web-1` unless `caller_nodes`
    says where; `run` defaults as mesh.yaml's does (import for nginx)."""
    base = "/etc/meshops/tls/" + callee
    rules = tuple(table.rules_for(callee))
    if caller_nodes is None:
        caller_nodes = {rule.caller: (NODE,) for rule in rules}
    return ProxySpec(
        identity=callee,
        kind=kind,
        trust_domain="demo.internal",
        listen=listen,
        listen_address="127.0.0.1",
        upstream=upstream,
        cert_file=str(tls.cert) if tls else f"{base}/cert.pem",
        key_file=str(tls.key) if tls else f"{base}/key.pem",
        ca_file=str(tls.ca) if tls else f"{base}/ca.pem",
        crl_file=str(tls.crl) if tls else f"{base}/crl.pem",
        rules=rules,
        mode=mode,  # type: ignore[arg-type]
        plaintext_listen=plaintext_listen,
        state_dir=state_dir,
        run_dir=run_dir,
        domain=DOMAIN,
        caller_nodes=caller_nodes,
        node_ca_file=str(tls.node_cas) if tls else f"{base}/node-cas.pem",
        node_ca_ders=pem_ders(tls.node_cas.read_bytes()) if tls else (),
        run=run or ("import" if kind == "nginx" else "standalone"),
        caddy_version=caddy_version,
    )
